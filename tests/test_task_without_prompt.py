"""A custom task file with no template and no label words: the generic start, label words read from
the label names (or searched when the names are no words), the whole search end to end on the tiny
causal LM, and where the winner's template and words came from. Also: generated templates screened
on the training examples never look at dev."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import TEST_DEVICE, toy_sentiment_examples
from autoprompt_search.data import load_split, load_task
from autoprompt_search.errors import UserError
from autoprompt_search.prompts import read_document
from autoprompt_search.search import SearchOptions, run_pipeline
from autoprompt_search.tasks import GENERIC_TEMPLATES, label_words_from_names, readable_label_word


def write_task(folder: Path, name: str, labels=("0", "1"), **fields) -> Path:
    """A task file with only data, text column and labels (plus `fields`); the toy sentiment data
    with its labels 0/1 written as `labels`."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", 8, 13), ("dev", 8, 14), ("test", 6, 7)):
        rows = [f"{e.texts[0]},{labels[int(e.label)]}" for e in toy_sentiment_examples(count, seed)]
        (folder / f"{split}.csv").write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    spec = {"name": name, "data": {s: f"{s}.csv" for s in ("train", "dev", "test")},
            "text_columns": ["text"], "label_column": "label", "labels": list(labels), **fields}
    path = folder / "task.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def tiny_search(model: Path, task_file: Path, out: Path, **overrides) -> SearchOptions:
    values = dict(task=str(task_file), model=str(model), generator="causal", n_templates=2, beam_width=4,
                  generator_steps=3, n_mappings=2, label_k=4, seeds=(13,), out=str(out), strategy="exhaustive",
                  min_steps=1, max_steps=1, lr=1e-3, batch_size=4, max_length=48, device=TEST_DEVICE,
                  progress=False, screening_split="train")
    values.update(overrides)
    return SearchOptions(**values)


# ---------------------------------------------------------------------------------------------
# Label words from label names


@pytest.mark.parametrize("name,word", [
    ("bug", "bug"), ("Question", "question"), ("not_entailment", "not entailment"), ("very-negative", "very negative"),
    ("0", None), ("1", None), ("4 stars", None), ("B-PER_X_Y", None), ("", None),
])
def test_a_label_name_reads_as_a_word_or_as_none(name, word):
    assert readable_label_word(name) == word


def test_label_words_come_from_the_names_when_every_name_is_a_distinct_word():
    assert label_words_from_names(("bug", "Question")) == {"bug": "bug", "Question": "question"}
    assert label_words_from_names(("0", "1"), ("negative", "positive")) == {"0": "negative", "1": "positive"}
    assert label_words_from_names(("entailment", "not_entailment")) == {"entailment": "entailment",
                                                                         "not_entailment": "not entailment"}
    assert label_words_from_names(("0", "1")) is None                   # symbolic: the search finds words
    assert label_words_from_names(("bug", "other", "2")) is None        # one symbolic name is enough
    assert label_words_from_names(("Bug", "bug")) is None               # two classes, one word


# ---------------------------------------------------------------------------------------------
# Task files without a prompt


def test_a_task_file_without_template_or_words_gets_a_generic_start(tmp_path):
    task = load_task(write_task(tmp_path / "a", "tickets-a", labels=("bug", "question")))
    assert (task.template, task.template_source) == (GENERIC_TEMPLATES[1], "generic")
    assert (task.label_words, task.label_words_source) == ({"bug": "bug", "question": "question"}, "label_names")
    assert not task.has_manual_prompt

    named = load_task(write_task(tmp_path / "b", "tickets-b", label_names=["negative", "positive"]))
    assert named.label_words == {"0": "negative", "1": "positive"} and named.label_words_source == "label_names"

    symbolic = load_task(write_task(tmp_path / "c", "tickets-c"))
    assert symbolic.label_words_source == "search" and symbolic.label_words == {"0": "0", "1": "1"}

    manual_words = load_task(write_task(tmp_path / "d", "tickets-d", label_words={"0": "bad", "1": "good"}))
    assert (manual_words.template_source, manual_words.label_words_source) == ("generic", "manual")
    manual = load_task(write_task(tmp_path / "e", "tickets-e", template="*cls**sent_0*_It_was*mask*.*sep+*",
                                  label_words={"0": "bad", "1": "good"}))
    assert manual.has_manual_prompt


def test_a_pair_task_without_template_gets_the_generic_pair_template(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"a": "x", "b": "y", "rel": "entailment"}\n'
                                        '{"a": "p", "b": "q", "rel": "not_entailment"}\n', encoding="utf-8")
    path = folder / "pairs.json"
    path.write_text(json.dumps({"name": "my-nli", "data": {"train": "train.jsonl"}, "text_columns": ["a", "b"],
                                "label_column": "rel", "labels": ["entailment", "not_entailment"]}), encoding="utf-8")
    task = load_task(path)
    assert task.template == GENERIC_TEMPLATES[2] and task.num_sentences == 2
    assert task.label_words == {"entailment": "entailment", "not_entailment": "not entailment"}


def test_searched_words_need_the_label_search_checked_before_any_model_loads(tiny_causal_folder, tmp_path):
    task_file = write_task(tmp_path / "t", "symbolic-labels")
    options = tiny_search(tiny_causal_folder, task_file, tmp_path / "out", n_mappings=0)
    with pytest.raises(UserError, match=r"field 'n_mappings': got 0, expected an integer >= 1: task symbolic-labels"):
        options.check_inputs()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("model", ["mlm", "causal"])
def test_label_names_that_are_not_one_token_fall_back_to_searched_words(tiny_mlm_folder, tiny_causal_folder,
                                                                        tmp_path, model):
    """Not an error: names that are no single token of the backbone (which a masked LM scores and the
    template generators place) become placeholders that the label search replaces."""
    folder = {"mlm": tiny_mlm_folder, "causal": tiny_causal_folder}[model]
    scored = write_task(tmp_path / "a", f"{model}-known", labels=("awful", "wonderful"))
    options = tiny_search(folder, scored, tmp_path / "out-a", generator="none", n_templates=0)
    assert options.check_inputs().label_words_source == "label_names"
    unknown = write_task(tmp_path / "b", f"{model}-unknown", labels=("zqxjv", "wvkpq"))
    task = tiny_search(folder, unknown, tmp_path / "out-b", generator="none", n_templates=0).check_inputs()
    assert task.label_words_source == "search" and task.label_words == {"zqxjv": "zqxjv", "wvkpq": "wvkpq"}


# ---------------------------------------------------------------------------------------------
# End to end


@pytest.mark.parametrize("labels", [("0", "1"), ("awful", "wonderful")])
def test_a_task_with_only_data_and_labels_runs_the_whole_search(tiny_causal_folder, tmp_path, labels):
    task_file = write_task(tmp_path / "task", f"no-prompt-{labels[0]}", labels=labels)
    messages: list[str] = []
    result = run_pipeline(tiny_search(tiny_causal_folder, task_file, tmp_path / "out"), say=messages.append)
    out = tmp_path / "out"
    task = load_task(task_file)
    searched = json.loads((out / "label_words.json").read_text())
    generated = json.loads((out / "generated_templates.json").read_text())
    candidates = json.loads((out / "candidates.json").read_text())
    document = read_document(out / "best.json").document

    assert any("gives no hand-written prompt" in m for m in messages)
    assert searched["key"]["template"] == GENERIC_TEMPLATES[1]  # the label search ran with the generic template
    searched_words = [m["label_words"] for m in searched["value"]]
    if task.label_words_source == "search":
        # placeholders are no candidate, and templates were generated around the best searched words
        assert all(c["label_words"] != {"0": "0", "1": "1"} for c in candidates)
        assert not any(c.get("task_prompt") for c in candidates)  # no prompt of its own to defend
        assert generated["key"]["label_words"] == searched_words[0]
    else:
        assert generated["key"]["label_words"] == {"awful": "awful", "wonderful": "wonderful"}
        assert {"template": GENERIC_TEMPLATES[1], "label_words": task.label_words, "demonstrations": "off",
                "template_source": ["generic"], "label_words_source": "label names", "task_prompt": True} in candidates
    assert generated["value"] and all(g["screening_split"] == "train" and "zero_shot_train" in g
                                      for g in generated["value"])
    generated_templates = {g["template"] for g in generated["value"]}
    for candidate in candidates:  # every candidate says where its template and words came from
        template_source = candidate["template_source"]
        if candidate["template"] == GENERIC_TEMPLATES[1]:
            assert "generic" in template_source
        if candidate["template"] in generated_templates:
            assert any(s.startswith("generated") and "zero-shot train" in s for s in template_source)
        words_source = candidate["label_words_source"]
        assert words_source.startswith("label search") == (candidate["label_words"] in searched_words)

    found_by = document["found_by"]
    exported = next(e.candidate for e in result.ranking if e.candidate_id == found_by["candidate_id"])
    assert (document["template"]["lmbff"], document["label_words"]) == (exported["template"], exported["label_words"])
    reported = next(c for c in candidates if {k: c[k] for k in exported} == exported)
    assert found_by["template_source"] == reported["template_source"]
    assert found_by["label_words_source"] == reported["label_words_source"]
    assert any(f"label words from: {found_by['label_words_source']}" in m for m in messages)
    # The starting prompt from label names is defended like a hand-written one; placeholders are no prompt.
    if task.label_words_source == "search":
        assert found_by["selection"]["rule"] == "dev"
    else:
        assert found_by["selection"]["rule"] == "paired-loss" and "own prompt" in found_by["selection"]["reason"]


# ---------------------------------------------------------------------------------------------
# Screening split


@pytest.mark.parametrize("split", ["train", "dev"])
def test_screening_scores_only_the_chosen_split(tiny_causal, tiny_causal_folder, tmp_path, monkeypatch, split):
    """With --screening-split train, every zero-shot evaluation of the screen gets the training examples
    and dev is never loaded; with dev, the dev examples."""
    import autoprompt_search.data as data_package
    from autoprompt_search.auto_template import screening
    from autoprompt_search.search import generate_templates

    task = load_task(write_task(tmp_path / "t", f"screen-{split}", labels=("awful", "wonderful")))
    train, dev = load_split(task, "train"), load_split(task, "dev")
    assert train != dev
    loaded, scored = [], []
    real_load_split, real_evaluate = data_package.load_split, screening.evaluate

    def spy_load_split(task, split_name, **kwargs):
        loaded.append(split_name)
        return real_load_split(task, split_name, **kwargs)

    def spy_evaluate(backbone, task, prompt, examples, **kwargs):
        scored.append(list(examples))
        return real_evaluate(backbone, task, prompt, examples, **kwargs)

    monkeypatch.setattr(data_package, "load_split", spy_load_split)
    monkeypatch.setattr(screening, "evaluate", spy_evaluate)
    options = tiny_search(tiny_causal_folder, tmp_path / "t" / "task.json", tmp_path / "out", n_templates=1,
                          beam_width=4, screening_split=split)
    kept = generate_templates(options, task, train, tiny_causal, say=lambda *_: None)
    assert len(scored) > 1 and all(examples == (train if split == "train" else dev) for examples in scored)
    assert ("dev" in loaded) == (split == "dev")
    assert kept[0]["screening_split"] == split and f"zero_shot_{split}" in kept[0]


def test_screening_split_is_validated(tiny_causal_folder, tmp_path):
    with pytest.raises(UserError, match="screening_split.*'dev' or 'train'"):
        replace(tiny_search(tiny_causal_folder, tmp_path / "t.json", tmp_path / "out"), screening_split="test").validate()


def test_screening_split_flag_reaches_the_options(tmp_path):
    from autoprompt_search.cli.main import build_parser
    from autoprompt_search.cli.search import search_options_from

    args = build_parser().parse_args(["search", "--task", "sst2", "--out", str(tmp_path), "--screening-split", "train"])
    assert search_options_from(args)[0].screening_split == "train"
    args = build_parser().parse_args(["search", "--task", "sst2", "--out", str(tmp_path)])
    assert search_options_from(args)[0].screening_split == "dev"
