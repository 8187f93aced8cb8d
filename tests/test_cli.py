"""`search-templates` end to end on a tiny random causal LM and a toy LM-BFF folder: search, resume
after SIGKILL, export with a fine-tuned model, predict, render, and one-line errors for bad input."""
from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TEST_DEVICE
from test_search import (
    MAPPINGS,
    SEEDS,
    metric_rows,
    search_cli_args,
    search_options,
    write_mapping_file,
    write_toy_lmbff,
)
from autoprompt_search.models import load_backbone
from autoprompt_search.cli import main
from autoprompt_search.errors import UserError
from autoprompt_search.search import Leaderboard
from autoprompt_search.export import read_inputs
from autoprompt_search.training import PromptClassifier
from autoprompt_search.prompts import read_document
from autoprompt_search.search import Exhaustive
from autoprompt_search.search import EvaluatorSettings, fine_tuned_classifier, run_pipeline
from autoprompt_search.tasks import Example

TEXTS = ["A wonderful and charming film.", "The plot was dull and the acting awful.",
         "It is a movie about a dog.", "Superb music, brilliant cast."]


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    return write_toy_lmbff(tmp_path_factory.mktemp("lmbff"))


@pytest.fixture(scope="module")
def searched(tiny_causal_folder, toy_data, tmp_path_factory) -> Path:
    """A finished CLI search (manual mapping + 2 from a file, 2 seeds) in its output folder."""
    folder = tmp_path_factory.mktemp("searched")
    mappings = write_mapping_file(folder / "mappings.txt", MAPPINGS[:2])
    out = folder / "out"
    assert main(search_cli_args(tiny_causal_folder, toy_data, out, "--mapping-file", str(mappings))) == 0
    return out


def one_line_error(capsys, code: int, *fragments: str) -> str:
    """Assert a non-zero exit with exactly one stderr line naming every fragment; return the line."""
    captured = capsys.readouterr()
    assert code != 0
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("search-templates: error: ")
    assert "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------------------------
# search / leaderboard


def test_search_command_writes_outputs_and_leaderboard_prints_them(searched, capsys):
    for name in ("leaderboard.sqlite", "candidates.json", "progress.png", "best.json"):
        assert (searched / name).is_file(), name
    document = read_document(searched / "best.json").document
    assert document["fine_tuned_model"] is None and sorted(map(int, document["dev"]["per_seed"])) == list(SEEDS)
    capsys.readouterr()
    plot = searched / "ranking.png"
    assert main(["leaderboard", "--out", str(searched), "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    assert plot.read_bytes()[:4] == b"\x89PNG"
    board = Leaderboard(searched / "leaderboard.sqlite")
    ranked = board.ranking()
    assert len(ranked) == 3 and ranked[0].candidate_id == document["found_by"]["candidate_id"]
    for entry in ranked:
        assert entry.candidate_id[:10] in printed


# ---------------------------------------------------------------------------------------------
# Resume after SIGKILL


def _stored(path: Path) -> dict[tuple, str]:
    """(candidate id, seed, budget) -> created time of every stored row; {} before the table exists."""
    if not path.is_file():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as connection:
            rows = connection.execute("SELECT candidate_id, seed, budget, created_at FROM evaluations").fetchall()
    except sqlite3.OperationalError:
        return {}
    return {(cid, seed, budget): created for cid, seed, budget, created in rows}


def _cli_process(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "autoprompt_search.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_killed_search_resumes_without_repeating_or_losing_evaluations(tiny_causal_folder, toy_data, tmp_path):
    templates = tmp_path / "templates.txt"
    templates.write_text("*cls**sent_0*_This_is*mask*.*sep+*\n*cls*_A*mask*_movie:*sent_0**sep+*\n")
    mappings = write_mapping_file(tmp_path / "mappings.txt")
    out = tmp_path / "killed"
    extra = ("--template-file", str(templates), "--mapping-file", str(mappings), "--strategy", "exhaustive",
             "--max-steps", "2", "--min-steps", "1")
    args = search_cli_args(tiny_causal_folder, toy_data, out, *extra)
    n_planned = 3 * (1 + len(MAPPINGS)) * len(SEEDS)
    board_file = out / "leaderboard.sqlite"

    first = _cli_process(args, tmp_path)
    deadline = time.monotonic() + 300
    while not _stored(board_file):
        assert first.poll() is None, f"search ended before it could be killed: {first.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    first.stderr.close()
    assert first.returncode == -signal.SIGKILL
    after_kill = _stored(board_file)
    assert 1 <= len(after_kill) < n_planned

    second = _cli_process(args, tmp_path)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    final = _stored(board_file)
    assert len(final) == n_planned
    # Nothing finished before the kill was lost or rewritten...
    assert {key: final[key] for key in after_kill} == after_kill
    # ...nor evaluated again: the resumed run ran exactly the rest.
    found_by = read_document(out / "best.json").document["found_by"]
    assert found_by["evaluations_reused"] == len(after_kill)
    assert found_by["evaluations_run"] == n_planned - len(after_kill)

    # Same leaderboard as an uninterrupted search with the same arguments.
    options = search_options(tiny_causal_folder, toy_data, tmp_path / "uninterrupted", strategy="exhaustive",
                             template_files=(str(templates),), mapping_files=(str(mappings),),
                             min_steps=1, max_steps=2)
    run_pipeline(options, say=lambda *_: None)
    assert metric_rows(Leaderboard(tmp_path / "uninterrupted" / "leaderboard.sqlite")) == \
        metric_rows(Leaderboard(board_file))
    assert Exhaustive(2, SEEDS).plan(n_planned // len(SEEDS))[0].evaluations == n_planned


# ---------------------------------------------------------------------------------------------
# export -> predict


@pytest.fixture(scope="module")
def exported(searched) -> Path:
    assert main(["export", "--out", str(searched), "--fine-tune"]) == 0
    return searched / "best.json"


def test_export_saves_a_fine_tuned_model_beside_best_json(exported):
    document = read_document(exported).document
    assert document["fine_tuned_model"] == "best-model"
    model_folder = exported.parent / "best-model"
    assert (model_folder / "config.json").is_file()
    assert any(model_folder.glob("*.safetensors")) or any(model_folder.glob("*.bin"))


def test_exported_classifier_matches_the_in_memory_fine_tuned_backbone(exported, tiny_causal_folder):
    document = read_document(exported).document
    found_by = document["found_by"]
    configs = json.loads((exported.parent / "search_config.json").read_text())
    settings = EvaluatorSettings(**configs[found_by["config_hash"]]["settings"])
    candidate = {"template": document["template"]["lmbff"], "label_words": document["label_words"],
                 "demonstrations": document["demonstrations"]["mode"]}
    classifier = fine_tuned_classifier(settings, candidate, found_by["seeds"][0], found_by["steps"])
    backbone, prompt, task = classifier.backbone, classifier.prompt, classifier.task
    examples = [Example((text,)) for text in TEXTS]

    from_file = PromptClassifier.from_pretrained(exported, device=TEST_DEVICE)
    in_memory = PromptClassifier(backbone, task, prompt)
    expected = in_memory.probabilities(examples)
    np.testing.assert_allclose(from_file.probabilities(examples), expected, atol=1e-5)
    assert [p[0] for p in from_file.predict(examples)] == [p[0] for p in in_memory.predict(examples)]
    # The saved model is the fine-tuned one, not the pretrained one.
    pretrained = PromptClassifier(load_backbone(str(tiny_causal_folder), device=TEST_DEVICE), task, prompt)
    assert not np.allclose(pretrained.probabilities(examples), expected, atol=1e-4)


def test_exported_model_reproduces_the_evaluated_dev_metric(exported, toy_data):
    """Export fine-tunes with the evaluation's settings, so the saved model scores what the leaderboard says."""
    from autoprompt_search.data import load_split
    from autoprompt_search.training import compute_metric

    found_by = read_document(exported).document["found_by"]
    seed = found_by["seeds"][0]
    row = Leaderboard(exported.parent / "leaderboard.sqlite").get(found_by["candidate_id"], seed, found_by["steps"],
                                                                  found_by["config_hash"])
    classifier = PromptClassifier.from_pretrained(exported, device=TEST_DEVICE)
    dev = load_split(classifier.task, "dev", data_dir=toy_data, seed=seed)
    predicted = [label for label, _ in classifier.predict(dev)]
    assert compute_metric(classifier.task, predicted, [e.label for e in dev]) == pytest.approx(row.dev_metric)


# ---------------------------------------------------------------------------------------------
# export -> predict with demonstrations: the pool travels in the JSON


@pytest.fixture(scope="module", params=["random", "filtered"])
def exported_with_demonstrations(request, tiny_causal_folder, tiny_encoder_folder, toy_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(f"demos-{request.param}") / "out"
    args = search_cli_args(tiny_causal_folder, toy_data, out, "--demonstrations", request.param,
                           "--inference-samples", "2", "--demo-encoder", str(tiny_encoder_folder))
    assert main(args) == 0
    assert main(["export", "--out", str(out), "--fine-tune"]) == 0
    return out / "best.json"


def test_exported_prompt_with_demonstrations_carries_its_training_pool(exported_with_demonstrations, toy_data):
    from autoprompt_search.data import load_split

    document = read_document(exported_with_demonstrations).document
    section = document["demonstrations"]
    assert document["schema_version"] == 3 and section["mode"] in ("random", "filtered")
    assert section["seed"] == SEEDS[0] and section["inference_samples"] == 2
    train = load_split("SST-2", "train", data_dir=toy_data, seed=SEEDS[0])
    assert [(tuple(item["texts"]), item["label"]) for item in section["pool"]] == [(e.texts, e.label) for e in train]


def test_exported_demonstration_prompt_scores_as_the_search_did(exported_with_demonstrations, toy_data):
    """Predict draws the same demonstrations as the search's evaluation of that seed: same class
    probabilities as the in-memory fine-tuned prompt, so the leaderboard's dev metric is reproduced."""
    from autoprompt_search.data import load_split
    from autoprompt_search.training import compute_metric
    from autoprompt_search.training import evaluate

    path = exported_with_demonstrations
    document = read_document(path).document
    found_by = document["found_by"]
    seed = found_by["seeds"][0]
    configs = json.loads((path.parent / "search_config.json").read_text())
    settings = EvaluatorSettings(**configs[found_by["config_hash"]]["settings"])
    candidate = {"template": document["template"]["lmbff"], "label_words": document["label_words"],
                 "demonstrations": document["demonstrations"]["mode"]}
    classifier = fine_tuned_classifier(settings, candidate, seed, found_by["steps"])
    backbone, prompt, task = classifier.backbone, classifier.prompt, classifier.task
    dev = load_split(task, "dev", data_dir=toy_data, seed=seed)
    in_memory = evaluate(backbone, task, prompt, dev, seed=seed, max_length=settings.train["max_length"])
    other_seed = evaluate(backbone, task, prompt, dev, seed=seed + 1, max_length=settings.train["max_length"])
    assert not np.allclose(in_memory.scores, other_seed.scores, atol=1e-4)  # the draw matters

    classifier = PromptClassifier.from_pretrained(path, device=TEST_DEVICE)
    assert classifier.prompt.demonstrations is not None and classifier.prompt.inference_samples == 2
    expected = torch.softmax(torch.as_tensor(in_memory.scores), -1).numpy()
    np.testing.assert_allclose(classifier.probabilities(dev), expected, atol=1e-5)
    row = Leaderboard(path.parent / "leaderboard.sqlite").get(found_by["candidate_id"], seed, found_by["steps"],
                                                              found_by["config_hash"])
    predicted = [label for label, _ in classifier.predict(dev)]
    assert compute_metric(task, predicted, [e.label for e in dev]) == pytest.approx(row.dev_metric)


def test_predict_with_demonstrations_is_deterministic_on_new_texts(exported_with_demonstrations, monkeypatch, capsys):
    outputs = []
    for _ in range(2):
        monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(TEXTS) + "\n"))
        assert main(["predict", "--prompt", str(exported_with_demonstrations), "--device", TEST_DEVICE,
                     "--format", "jsonl"]) == 0
        outputs.append(capsys.readouterr().out)
    rows = [json.loads(line) for line in outputs[0].splitlines()]
    assert [row["text"] for row in rows] == [[t] for t in TEXTS]
    assert all(abs(sum(row["probabilities"].values()) - 1) < 1e-5 for row in rows)
    assert outputs[0] == outputs[1]


def test_export_restores_the_pool_of_a_prompt_written_without_it(exported_with_demonstrations, tmp_path):
    import shutil

    folder = shutil.copytree(exported_with_demonstrations.parent, tmp_path / "out")
    best = folder / "best.json"
    complete = json.loads(best.read_text())
    old = {**{k: v for k, v in complete.items() if k != "kind"}, "schema_version": 1,
           "demonstrations": {k: v for k, v in complete["demonstrations"].items() if k not in ("pool", "seed")}}
    best.write_text(json.dumps(old))
    with pytest.raises(UserError, match="demonstrations.pool is missing"):
        PromptClassifier.from_pretrained(best, device=TEST_DEVICE)
    assert main(["export", "--out", str(folder)]) == 0
    restored = json.loads(best.read_text())
    assert restored["schema_version"] == 3 and restored["demonstrations"] == complete["demonstrations"]
    assert restored["kind"] == "prompt"
    assert restored["fine_tuned_model"] == complete["fine_tuned_model"]


def _rewrite(source: Path, target: Path, change) -> Path:
    document = json.loads(source.read_text())
    change(document)
    target.write_text(json.dumps(document))
    return target


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d.update(schema_version=1), "demonstrations.pool is missing"),
    (lambda d: d["demonstrations"].update(pool=[]), "demonstrations.pool: expected a non-empty list"),
    (lambda d: d["demonstrations"]["pool"][1].update(label="7"), "demonstrations.pool[1].label: expected one of"),
    (lambda d: d["demonstrations"]["pool"][0].update(texts="just a string"), "demonstrations.pool[0].texts"),
    (lambda d: d["demonstrations"].update(inference_samples=0), "demonstrations.inference_samples"),
])
def test_bad_demonstration_section_is_a_one_line_error(exported_with_demonstrations, tmp_path, capsys, change,
                                                       fragment):
    bad = _rewrite(exported_with_demonstrations, tmp_path / "bad.json", change)
    code = main(["predict", "--prompt", str(bad), "--input", str(bad)])
    one_line_error(capsys, code, str(bad), fragment)


def _parse_tsv_predictions(text: str) -> list[tuple[str, dict[str, float], str]]:
    parsed = []
    for line in text.strip().splitlines():
        label, probabilities, sentence = line.split("\t")
        parsed.append((label, {k: float(v) for k, v in (p.split("=") for p in probabilities.split())}, sentence))
    return parsed


def test_predict_reads_stdin_and_prints_labels_with_probabilities(exported, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(TEXTS) + "\n\n"))
    capsys.readouterr()
    assert main(["predict", "--prompt", str(exported), "--device", TEST_DEVICE]) == 0
    parsed = _parse_tsv_predictions(capsys.readouterr().out)
    expected = PromptClassifier.from_pretrained(exported, device=TEST_DEVICE).predict([Example((t,)) for t in TEXTS])
    assert [p[2] for p in parsed] == TEXTS
    for (label, probabilities, _), (expected_label, expected_probabilities) in zip(parsed, expected):
        assert set(probabilities) == {"0", "1"} and sum(probabilities.values()) == pytest.approx(1, abs=1e-3)
        assert label == expected_label == max(probabilities, key=probabilities.get)
        assert probabilities == pytest.approx(expected_probabilities, abs=1e-4)


def test_predict_reads_a_file_and_writes_jsonl(exported, tmp_path, capsys):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("\n".join(TEXTS[:2]) + "\n")
    capsys.readouterr()
    assert main(["predict", "--prompt", str(exported), "--input", str(inputs), "--format", "jsonl",
                 "--device", TEST_DEVICE]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in records] == [[t] for t in TEXTS[:2]]
    for record in records:
        assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)


def test_read_inputs_rejects_a_line_without_the_pair_separator():
    from autoprompt_search.errors import UserError

    with pytest.raises(UserError, match="line 2"):
        read_inputs(io.StringIO("a\tb\nonly one\n"), 2, source="stdin")


# ---------------------------------------------------------------------------------------------
# render


def test_render_prints_text_and_tokens(tiny_causal_folder, toy_data, capsys):
    code = main(["render", "--task", "sst2", "--model", str(tiny_causal_folder), "--data-dir", str(toy_data),
                 "-n", "2", "--device", TEST_DEVICE])
    printed = capsys.readouterr().out
    assert code == 0
    first_sentence = (toy_data / "k-shot/SST-2/16-13/train.tsv").read_text().splitlines()[1].split("\t")[0]
    text_lines = [line for line in printed.splitlines() if line.strip().startswith("text")]
    token_lines = [line for line in printed.splitlines() if line.strip().startswith("tokens")]
    assert len(text_lines) == len(token_lines) == 2
    assert first_sentence in text_lines[0] and "It was" in text_lines[0]
    assert "*cls**sent_0*_It_was*mask*.*sep+*" in printed


def test_render_template_without_mask_is_a_one_line_error(tiny_causal_folder, toy_data, capsys):
    code = main(["render", "--task", "sst2", "--model", str(tiny_causal_folder), "--data-dir", str(toy_data),
                 "--template", "*cls**sent_0*_It_was_great.*sep+*"])
    one_line_error(capsys, code, "It_was_great", "mask")


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the file/line/field, non-zero exit, no traceback

BAD_TEMPLATE_FILES = {
    "unknown variable": ("*cls**sent_0*_It_was*mask*.*sep+*\n*cls**sent_0*_It_was*maskk*.*sep+*\n", "line 2"),
    "no mask": ("# a comment\n*cls**sent_0*_This_is*mask*.*sep+*\n*cls**sent_0*_It_was_great.*sep+*\n", "line 3"),
    "second sentence": ("*cls**sent_0*_*sent_1*_It_was*mask*.*sep+*\n", "line 1"),
}


@pytest.mark.parametrize("content,where", BAD_TEMPLATE_FILES.values(), ids=BAD_TEMPLATE_FILES)
def test_malformed_template_file(tiny_causal_folder, toy_data, tmp_path, capsys, content, where):
    path = tmp_path / "templates.txt"
    path.write_text(content)
    code = main(search_cli_args(tiny_causal_folder, toy_data, tmp_path / "out", "--template-file", str(path)))
    one_line_error(capsys, code, str(path), where)


BAD_MAPPING_FILES = {
    "not JSON": ('{"0": "terrible", "1": "great"}\n{"0": "bad", "1": \n', "line 2"),
    "unknown label": ('{"0": "bad", "7": "good"}\n', "line 1"),
    "shared word": ('{"0": "terrible", "1": "great"}\n\n{"0": "bad", "1": "bad"}\n', "line 3"),
}


@pytest.mark.parametrize("content,where", BAD_MAPPING_FILES.values(), ids=BAD_MAPPING_FILES)
def test_malformed_mapping_file(tiny_causal_folder, toy_data, tmp_path, capsys, content, where):
    path = tmp_path / "mappings.txt"
    path.write_text(content)
    code = main(search_cli_args(tiny_causal_folder, toy_data, tmp_path / "out", "--mapping-file", str(path)))
    one_line_error(capsys, code, str(path), where)


def test_corrupted_leaderboard(tiny_causal_folder, toy_data, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    board = out / "leaderboard.sqlite"
    board.write_bytes(b"this is not an sqlite database\n" * 64)
    one_line_error(capsys, main(["leaderboard", "--out", str(out)]), str(board))
    one_line_error(capsys, main(search_cli_args(tiny_causal_folder, toy_data, out)), str(board))


def test_unknown_task(tiny_causal_folder, toy_data, tmp_path, capsys):
    args = search_cli_args(tiny_causal_folder, toy_data, tmp_path / "out")
    args[args.index("sst2")] = "nosuchtask"
    one_line_error(capsys, main(args), "'nosuchtask'", "SST-2")
    assert not (tmp_path / "out").exists()


def test_missing_data_dir(tiny_causal_folder, tmp_path, capsys):
    missing = tmp_path / "no-data-here"
    one_line_error(capsys, main(search_cli_args(tiny_causal_folder, missing, tmp_path / "out")), str(missing))


def test_export_without_a_search(tmp_path, capsys):
    one_line_error(capsys, main(["export", "--out", str(tmp_path)]), str(tmp_path / "best.json"))


def test_errors_from_a_real_process_have_no_traceback(tiny_causal_folder, toy_data, tmp_path):
    args = search_cli_args(tiny_causal_folder, toy_data, tmp_path / "out")
    args[args.index("sst2")] = "nosuchtask"
    done = subprocess.run([sys.executable, "-m", "autoprompt_search.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nosuchtask" in lines[0] and "Traceback" not in done.stderr
