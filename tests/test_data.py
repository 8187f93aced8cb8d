import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from autoprompt_search.data import folders as data
from autoprompt_search.data import (
    limit_examples,
    LMBFF_SEED_ORDER,
    lmbff_shuffle_seeds,
    load_hub_split,
    load_original,
    load_split,
    load_task_spec,
    resolve_data_dir,
    sample_balanced,
    sample_k_shot,
)
from autoprompt_search.errors import UserError
from autoprompt_search.tasks import Example, get_task

SHARED = Path(os.environ.get("AUTOPROMPT_DATA_DIR") or data.project_root().parent / "shared" / "data" / "lmbff")
needs_shared = pytest.mark.skipif(not (SHARED / "k-shot").is_dir(), reason="LM-BFF data copy not present")
SEEDS = (13, 21, 42, 87, 100)
TASKS_WITH_ORIGINALS = ("SST-2", "SST-5", "MR", "CR", "TREC", "CoLA", "MRPC", "RTE", "STS-B")
TASKS_WITH_KSHOT = TASKS_WITH_ORIGINALS + ("QNLI", "MNLI", "SNLI", "QQP")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ data folder


def test_resolve_data_dir_prefers_argument_then_environment(tmp_path, monkeypatch):
    from_env, from_arg = tmp_path / "env", tmp_path / "arg"
    from_env.mkdir()
    from_arg.mkdir()
    monkeypatch.setenv("AUTOPROMPT_DATA_DIR", str(from_env))
    assert resolve_data_dir(from_arg) == from_arg
    assert resolve_data_dir() == from_env


def test_resolve_data_dir_default_is_shared_folder_next_to_project(monkeypatch):
    monkeypatch.delenv("AUTOPROMPT_DATA_DIR", raising=False)
    default = data.project_root().parent / "shared" / "data" / "lmbff"  # not SHARED: that follows the variable
    if not default.is_dir():
        with pytest.raises(UserError):
            resolve_data_dir()
    else:
        assert resolve_data_dir().resolve() == default.resolve()


def test_resolve_data_dir_missing_folder_says_how_to_point_at_data(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOPROMPT_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="nowhere") as error:
        resolve_data_dir()
    assert "--data-dir" in str(error.value) and "AUTOPROMPT_DATA_DIR" in str(error.value)


# ------------------------------------------------------------------------------------------ shared data


@needs_shared
@pytest.mark.parametrize("name", TASKS_WITH_KSHOT)
def test_kshot_splits_are_balanced_with_task_labels(name):
    task = get_task(name)
    for split in ("train", "dev"):
        examples = load_split(task, split, data_dir=SHARED)
        assert all(len(e.texts) == task.num_sentences and all(isinstance(t, str) for t in e.texts)
                   for e in examples)
        if task.is_regression:
            assert all(isinstance(e.label, float) and 0.0 <= e.label <= 5.0 for e in examples)
            assert len(examples) == 32
        else:
            assert Counter(e.label for e in examples) == {label: 16 for label in task.labels}


@needs_shared
@pytest.mark.parametrize("name,size", [("SST-2", 872), ("SST-5", 2210), ("MR", 2000), ("CR", 2000),
                                       ("TREC", 500), ("CoLA", 1043), ("MRPC", 408), ("RTE", 277),
                                       ("QNLI", 5463), ("STS-B", 1500)])
def test_test_split_sizes_match_data_readme(name, size):
    assert len(load_split(name, "test", data_dir=SHARED)) == size


@needs_shared
@pytest.mark.parametrize("folder,name", [("sst-5", "SST-5"), ("mr", "MR"), ("cr", "CR"), ("trec", "TREC")])
def test_csv_files_parse_like_pandas(folder, name):
    pandas = pytest.importorskip("pandas")
    path = SHARED / "k-shot" / folder / "16-13" / "test.csv"
    frame = pandas.read_csv(path, header=None, keep_default_na=False)
    expected = [(str(label), text) for label, text in frame.itertuples(index=False)]
    assert [(e.label, e.texts[0]) for e in load_split(name, "test", data_dir=SHARED)] == expected


@needs_shared
def test_quoted_csv_field_keeps_its_commas():
    first = load_split("SST-5", "train", data_dir=SHARED)[0]
    assert "," in first.texts[0] and not first.texts[0].startswith('"')


@needs_shared
@pytest.mark.parametrize("name,folder,text_fields", [("RTE", "RTE", (1, 2)), ("QNLI", "QNLI", (1, 2)),
                                                     ("MRPC", "MRPC", (3, 4)), ("CoLA", "CoLA", (3,))])
def test_glue_tsv_texts_keep_quote_characters(name, folder, text_fields):
    path = SHARED / "k-shot" / folder / "16-13" / "test.tsv"
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if name != "CoLA":
        lines = lines[1:]
    expected = [tuple(line.split("\t")[i] for i in text_fields) for line in lines]
    loaded = [e.texts for e in load_split(name, "test", data_dir=SHARED)]
    assert loaded == expected
    assert any('"' in text for texts in loaded for text in texts) or name == "CoLA"


@needs_shared
def test_mrpc_header_with_byte_order_mark_is_recognised():
    examples = load_split("MRPC", "train", data_dir=SHARED)
    assert examples[0].label in ("0", "1")
    assert not examples[0].texts[0].startswith("\ufeff")


# ------------------------------------------------------------------------------------------ sampler


@needs_shared
@pytest.mark.parametrize("name", TASKS_WITH_ORIGINALS)
def test_sampler_reproduces_published_splits_for_all_seeds(name):
    for seed in SEEDS:
        sampled = sample_k_shot(name, 16, seed, SHARED)
        for split in ("train", "dev"):
            published = load_split(name, split, data_dir=SHARED, seed=seed)
            assert sampled[split] == published, f"{name} seed {seed} {split}"
        if seed == SEEDS[0]:
            assert sampled["test"] == load_split(name, "test", data_dir=SHARED, seed=seed)


def test_cola_shuffles_chain_in_lmbff_seed_order_other_tasks_do_not():
    cola, sst2 = get_task("CoLA"), get_task("SST-2")
    assert lmbff_shuffle_seeds(cola, 100) == (100,)
    assert lmbff_shuffle_seeds(cola, 21) == (100, 13, 21)
    assert lmbff_shuffle_seeds(cola, 7) == (7,)
    assert all(lmbff_shuffle_seeds(sst2, seed) == (seed,) for seed in LMBFF_SEED_ORDER)


def make_examples(counts: dict[str, int]) -> list[Example]:
    return [Example((f"{label}-{i}",), label) for label, n in counts.items() for i in range(n)]


def test_sample_balanced_takes_k_then_next_k_per_label_in_first_seen_order():
    task = get_task("SST-2")
    examples = make_examples({"0": 10, "1": 10})
    train, dev = sample_balanced(task, examples, 3, (5,))
    assert Counter(e.label for e in train) == {"0": 3, "1": 3}
    assert Counter(e.label for e in dev) == {"0": 3, "1": 3}
    assert not set(train) & set(dev)
    # groups come in blocks: all of the first label seen, then all of the next
    assert [e.label for e in train] in (["0"] * 3 + ["1"] * 3, ["1"] * 3 + ["0"] * 3)
    assert sample_balanced(task, examples, 3, (5,)) == (train, dev)
    assert sample_balanced(task, examples, 3, (6,)) != (train, dev)


def test_sample_balanced_keeps_what_a_small_class_has():
    train, dev = sample_balanced(get_task("SST-2"), make_examples({"0": 4, "1": 20}), 3, (1,))
    assert Counter(e.label for e in train) == {"0": 3, "1": 3}
    assert Counter(e.label for e in dev) == {"0": 1, "1": 3}


def test_sample_balanced_groups_regression_scores_at_two_and_a_half():
    task = get_task("STS-B")
    examples = [Example((f"s{i}", f"t{i}"), score) for i, score in enumerate([0.5, 1.0, 2.4, 2.5, 4.0, 5.0])]
    train, _ = sample_balanced(task, examples, 2, (3,))
    assert sorted(e.label < 2.5 for e in train) == [False, False, True, True]


def test_sample_balanced_rejects_non_positive_k():
    with pytest.raises(UserError, match="k must be"):
        sample_balanced(get_task("SST-2"), make_examples({"0": 2}), 0, (1,))


@pytest.fixture
def original_only(tmp_path):
    """A data folder with only original/SST-2 (no k-shot), built from a small synthetic file."""
    rows = [f"sentence number {i} , \"quoted\"\t{i % 2}" for i in range(60)]
    write(tmp_path / "original" / "SST-2" / "train.tsv", "sentence\tlabel\n" + "\n".join(rows) + "\n")
    write(tmp_path / "original" / "SST-2" / "dev.tsv", "sentence\tlabel\nheld out\t1\nother\t0\n")
    return tmp_path


def test_load_split_samples_from_original_when_kshot_folder_is_missing(original_only):
    train = load_split("SST-2", "train", data_dir=original_only, k=4, seed=7)
    dev = load_split("SST-2", "dev", data_dir=original_only, k=4, seed=7)
    assert Counter(e.label for e in train) == {"0": 4, "1": 4} == Counter(e.label for e in dev)
    assert not set(train) & set(dev)
    assert {e.texts[0] for e in train} <= {f'sentence number {i} , "quoted"' for i in range(60)}
    assert sample_k_shot("SST-2", 4, 7, original_only) == {
        "train": train, "dev": dev, "test": [Example(("held out",), "1"), Example(("other",), "0")]}
    assert load_split("SST-2", "test", data_dir=original_only, k=4, seed=7) == load_original(
        "SST-2", "test", original_only)
    assert load_split("SST-2", "train", data_dir=original_only, k=4, seed=8) != train


@needs_shared
def test_fallback_sampling_matches_the_published_folder(tmp_path):
    (tmp_path / "original").mkdir()
    (tmp_path / "original" / "mr").symlink_to(SHARED / "original" / "mr")
    assert load_split("MR", "dev", data_dir=tmp_path, seed=42) == load_split("MR", "dev", data_dir=SHARED, seed=42)


# ------------------------------------------------------------------------------------------ errors


def test_unknown_task_and_split_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="unknown task 'nope'"):
        load_split("nope", "train", data_dir=tmp_path)
    with pytest.raises(UserError, match="unknown split 'validation'"):
        load_split("SST-2", "validation", data_dir=tmp_path)


def test_missing_file_names_its_path(tmp_path):
    (tmp_path / "k-shot" / "SST-2" / "16-13").mkdir(parents=True)
    with pytest.raises(UserError, match=r"k-shot/SST-2/16-13/dev\.tsv"):
        load_split("SST-2", "dev", data_dir=tmp_path)


def test_missing_setting_without_original_lists_available_settings(tmp_path):
    write(tmp_path / "k-shot" / "SST-2" / "16-13" / "train.tsv", "sentence\tlabel\na\t0\n")
    with pytest.raises(UserError, match=r"16-99.*available settings: \['16-13'\]"):
        load_split("SST-2", "train", data_dir=tmp_path, seed=99)


def test_wrong_header_names_file_line_and_expected_columns(tmp_path):
    path = write(tmp_path / "k-shot" / "SST-2" / "16-13" / "train.tsv", "text\tlabel\na\t0\n")
    with pytest.raises(UserError, match=rf"{path}:1: header lacks column 'sentence'"):
        load_split("SST-2", "train", data_dir=tmp_path)


def test_empty_file_with_expected_header_is_reported(tmp_path):
    path = write(tmp_path / "k-shot" / "QNLI" / "16-13" / "dev.tsv", "")
    with pytest.raises(UserError, match=rf"{path} is empty"):
        load_split("QNLI", "dev", data_dir=tmp_path)


def test_too_few_columns_names_file_and_line(tmp_path):
    path = write(tmp_path / "k-shot" / "RTE" / "16-13" / "train.tsv",
                 "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly premise\n")
    with pytest.raises(UserError, match=rf"{path}:3: expected 4 tab-separated fields"):
        load_split("RTE", "train", data_dir=tmp_path)


def test_csv_row_with_unquoted_comma_names_line(tmp_path):
    path = write(tmp_path / "k-shot" / "mr" / "16-13" / "train.csv", '0,"fine, quoted"\n1,not, quoted\n')
    with pytest.raises(UserError, match=rf"{path}:2: expected 2 comma-separated fields"):
        load_split("MR", "train", data_dir=tmp_path)


def test_unknown_label_names_file_line_label_and_expected_labels(tmp_path):
    path = write(tmp_path / "k-shot" / "trec" / "16-13" / "train.csv", "0,a\n1,b\n9,c\n")
    with pytest.raises(UserError) as error:
        load_split("TREC", "train", data_dir=tmp_path)
    message = str(error.value)
    assert f"{path}:3" in message and "'9'" in message and "'5'" in message


def test_non_numeric_sts_score_is_reported(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    write(tmp_path / "k-shot" / "STS-B" / "16-13" / "train.tsv", header + "0\tg\tf\ty\to\ts\ts\ta\tb\thigh\n")
    with pytest.raises(UserError, match=r"train\.tsv:2: label 'high' is not a number"):
        load_split("STS-B", "train", data_dir=tmp_path)


# ------------------------------------------------------------------------------------------ custom tasks


def custom_task_file(tmp_path: Path, name: str, overrides: dict | None = None) -> Path:
    write(tmp_path / "d" / "train.csv", 'review,stars\n"great, really",pos\nawful,neg\n')
    write(tmp_path / "d" / "dev.tsv", 'review\tstars\nsays "hi"\tpos\n')
    write(tmp_path / "d" / "test.jsonl", '{"review": "meh"}\n\n{"review": "ok", "stars": "pos"}\n')
    spec = {"name": name, "data": {"train": "d/train.csv", "dev": "d/dev.tsv", "test": "d/test.jsonl"},
            "text_columns": ["review"], "label_column": "stars", "labels": ["neg", "pos"],
            "template": "*cls**sent_0*_It_was*mask*.*sep+*", "label_words": {"neg": "bad", "pos": "good"}}
    spec.update(overrides or {})
    return write(tmp_path / "task.json", json.dumps(spec, indent=1))


def test_custom_task_registers_and_loads_all_formats(tmp_path):
    task = load_task_spec(custom_task_file(tmp_path, "my-reviews"))
    assert get_task("my_reviews") is task
    assert (task.labels, task.num_sentences, task.metric) == (("neg", "pos"), 1, "acc")
    assert task.template == "*cls**sent_0*_It_was*mask*.*sep+*"
    assert load_split("my-reviews", "train") == [Example(("great, really",), "pos"), Example(("awful",), "neg")]
    assert load_split(task, "dev") == [Example(('says "hi"',), "pos")]
    assert load_split(task, "test") == [Example(("meh",), None), Example(("ok",), "pos")]


def test_custom_pair_task_with_f1_and_jsonl_integer_labels(tmp_path):
    write(tmp_path / "pairs.jsonl", '{"a": "x", "b": "y", "same": 1}\n{"a": "p", "b": "q", "same": 0}\n')
    path = write(tmp_path / "pairs.json", json.dumps({
        "name": "my-pairs", "data": {"train": "pairs.jsonl"}, "text_columns": ["a", "b"], "label_column": "same",
        "labels": [0, 1], "template": "{cls}{sent_0}{mask},{+sentl_1}{sep+}", "label_words": {"0": "No", "1": "Yes"},
        "metric": "f1"}))
    task = load_task_spec(path)
    assert task.template == "*cls**sent_0**mask*,*+sentl_1**sep+*"  # readable syntax stored as LM-BFF syntax
    assert load_split(task, "train") == [Example(("x", "y"), "1"), Example(("p", "q"), "0")]
    with pytest.raises(UserError, match="data.test"):
        load_split(task, "test")


@pytest.mark.parametrize("override,field", [
    ({"name": ""}, "name"),
    ({"name": "sst2"}, "name"),
    ({"data": {"dev": "d/dev.tsv"}}, "data"),
    ({"data": {"train": "d/missing.csv"}}, "data.train"),
    ({"data": {"train": "d/train.xlsx"}}, "data.train"),
    ({"data": {"train": "d/train.csv", "valid": "d/dev.tsv"}}, "data.valid"),
    ({"text_columns": []}, "text_columns"),
    ({"text_columns": ["a", "b", "c"]}, "text_columns"),
    ({"label_column": 3}, "label_column"),
    ({"labels": ["pos", "pos"]}, "labels"),
    ({"labels": ["pos"]}, "labels"),
    ({"template": "*cls**sent_0**sent_1**mask*"}, "template"),
    ({"template": "*cls**sent_0*"}, "template"),
    ({"label_words": {"pos": "good"}}, "label_words"),
    ({"metric": "auc"}, "metric"),
    ({"metric": "pearson"}, "regression_range"),
    ({"metric": "f1", "labels": ["a", "b", "c"], "label_words": {"a": "x", "b": "y", "c": "z"}}, "labels"),
])
def test_custom_task_file_errors_name_the_field(tmp_path, override, field):
    path = custom_task_file(tmp_path, "bad-task", override)
    with pytest.raises(UserError, match=rf"{path}: field '{field}'"):
        load_task_spec(path)


def test_custom_task_file_rejects_unknown_fields_and_bad_json(tmp_path):
    with pytest.raises(UserError, match=r"unknown field\(s\) \['lables'\]"):
        load_task_spec(custom_task_file(tmp_path, "typo-task", {"lables": ["a"]}))
    broken = write(tmp_path / "broken.json", '{\n "name": "x",\n}')
    with pytest.raises(UserError, match=rf"{broken}:3: invalid JSON"):
        load_task_spec(broken)


def test_custom_data_errors_name_the_data_file_line(tmp_path):
    task = load_task_spec(custom_task_file(tmp_path, "bad-data"))
    write(tmp_path / "d" / "train.csv", "review,stars\nfine,pos\nodd,meh\n")
    with pytest.raises(UserError, match=r"train\.csv:3: label 'meh'.*\['neg', 'pos'\]"):
        load_split(task, "train")
    write(tmp_path / "d" / "train.csv", "review,stars\nfine,pos\nno label,\n")
    with pytest.raises(UserError, match=r"train\.csv:3: missing label column 'stars'"):
        load_split(task, "train")
    write(tmp_path / "d" / "train.csv", "text,stars\nfine,pos\n")
    with pytest.raises(UserError, match=r"train\.csv:2: missing text column 'review'"):
        load_split(task, "train")


def test_custom_regression_task(tmp_path):
    write(tmp_path / "s.tsv", "s1\ts2\tscore\na\tb\t4.5\nc\td\t0.5\n")
    path = write(tmp_path / "sts.json", json.dumps({
        "name": "my-sts", "data": {"train": "s.tsv"}, "text_columns": ["s1", "s2"], "label_column": "score",
        "labels": ["low", "high"], "template": "*cls**sent_0**mask*,*+sentl_1**sep+*",
        "label_words": {"low": "No", "high": "Yes"}, "metric": "pearson", "regression_range": [0, 5]}))
    task = load_task_spec(path)
    assert task.is_regression and task.regression_range == (0.0, 5.0)
    assert [e.label for e in load_split(task, "train")] == [4.5, 0.5]


# ------------------------------------------------------------------------------------------ hub


def test_hub_offline_failure_says_to_use_data_dir(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError) as error:
        load_hub_split("SST-2", "train")
    message = str(error.value)
    assert "could not download data set glue/sst2" in message and "--data-dir" in message


def test_hub_without_the_datasets_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # what an install without the `hub` extra looks like
    with pytest.raises(UserError, match=r"autoprompt_search\[hub\]"):
        load_hub_split("SST-2", "train")


def test_hub_offline_mode_fails_with_user_error(tmp_path):
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    script = ("from autoprompt_search.data import load_hub_split\n"
              "from autoprompt_search.errors import UserError\n"
              "try:\n    load_hub_split('RTE', 'test', cache_dir=r'%s')\n"
              "except UserError as e:\n    print('USERERROR', e)\n") % tmp_path
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                            cwd=data.project_root())
    assert "USERERROR could not download data set glue/rte" in result.stdout, result.stderr[-2000:]


def fake_hub(monkeypatch, splits: dict):
    import datasets

    calls = []

    def load_dataset(path, name=None, split=None, cache_dir=None):
        calls.append((path, name, split))
        return splits[split]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_split_maps_class_names_and_samples_k_per_label(monkeypatch):
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"premise": Value("string"), "hypothesis": Value("string"),
                         "label": ClassLabel(names=["entailment", "neutral", "contradiction"])})
    rows = {"premise": [f"p{i}" for i in range(30)], "hypothesis": [f"h{i}" for i in range(30)],
            "label": [i % 3 for i in range(29)] + [-1]}
    calls = fake_hub(monkeypatch, {"train": Dataset.from_dict(rows, features=features)})
    examples = load_hub_split("MNLI", "train", k=4, seed=3)
    assert calls == [("glue", "mnli", "train")]
    assert Counter(e.label for e in examples) == {"entailment": 4, "neutral": 4, "contradiction": 4}
    assert load_hub_split("MNLI", "dev", k=4, seed=3) != examples
    assert all(e.texts[0].replace("p", "h") == e.texts[1] for e in examples)


def test_hub_class_names_follow_task_labels(monkeypatch):
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"text": Value("string"),
                         "coarse_label": ClassLabel(names=["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"])})
    test = Dataset.from_dict({"text": ["a", "b", "c"], "coarse_label": [0, 2, 5]}, features=features)
    fake_hub(monkeypatch, {"test": test})
    assert [e.label for e in load_hub_split("TREC", "test")] == ["2", "0", "5"]

    nli = Features({"sentence1": Value("string"), "sentence2": Value("string"),
                    "label": ClassLabel(names=["entailment", "not_entailment"])})
    validation = Dataset.from_dict({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0, 1]}, features=nli)
    fake_hub(monkeypatch, {"validation": validation})
    assert [e.label for e in load_hub_split("RTE", "test")] == ["entailment", "not_entailment"]


def test_limit_examples_is_a_seeded_sample_in_file_order_not_the_head():
    examples = [Example((f"s{i}",), "0" if i < 50 else "1") for i in range(100)]
    sample = limit_examples(examples, 20)
    assert len(sample) == 20 and sample == limit_examples(examples, 20)
    assert [int(e.texts[0][1:]) for e in sample] == sorted(int(e.texts[0][1:]) for e in sample)
    assert {e.label for e in sample} == {"0", "1"}  # a head of a label-sorted file would hold one class
    assert limit_examples(examples, None) == examples and limit_examples(examples, 500) == examples
    with pytest.raises(UserError):
        limit_examples(examples, 0)
