"""Ensembles: the top-m candidates' averaged class probabilities as one more final candidate, scored from the
stored per-example predictions, ranked with the rest, exported (prompt file schema 3) and run by predict."""
from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from benchmark_scripts import load_benchmark
from conftest import TEST_DEVICE
from synthetic import SyntheticEvaluator, _unit_hash, write_version_1_database
from test_search import MAPPINGS, SEEDS, search_options, write_mapping_file, write_toy_lmbff
from autoprompt_search.cli import main
from autoprompt_search.errors import UserError
from autoprompt_search.prompts import Verbalizer, read_document
from autoprompt_search.search import (EvalOutcome, EvaluatorSettings, Leaderboard, SearchOptions, Study, SuccessiveHalving,
                                      build_ensemble, candidate_id, fine_tuned_classifier, is_ensemble,
                                      load_predictions, race_order, rank_key, run_pipeline, stored_config)
from autoprompt_search.search import ensemble as search_ensemble
from autoprompt_search.search.candidates import make_candidate
from autoprompt_search.search.ensemble import forward_selection, with_ensemble
from autoprompt_search.search.selection import select_final
from autoprompt_search.tasks import Example, get_task
from autoprompt_search.training import EnsembleClassifier, PromptClassifier, load_prompt

TASK = get_task("SST-2")
TEXTS = ["A wonderful and charming film.", "The plot was dull and the acting awful.",
         "It is a movie about a dog.", "Superb music, brilliant cast."]


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# The classifier


def test_ensemble_probabilities_are_the_mean_of_its_members(tiny_causal):
    members = [PromptClassifier.build(tiny_causal, TASK, template, words) for template, words in (
        (TASK.template, TASK.label_words), ("*cls**sent_0*_A*mask*_movie.*sep+*", MAPPINGS[0]),
        (TASK.template, MAPPINGS[1]))]
    ensemble = EnsembleClassifier(members)
    examples = [Example((text,), label) for text, label in zip(TEXTS, ("1", "0", "0", "1"))]
    expected = np.mean([member.probabilities(examples) for member in members], axis=0)
    assert not np.allclose(expected, members[0].probabilities(examples))  # the members differ
    np.testing.assert_allclose(ensemble.probabilities(examples), expected, atol=1e-9)
    predicted = [label for label, _ in ensemble.predict(examples)]
    assert predicted == [TASK.labels[i] for i in expected.argmax(axis=1)]
    accuracy = np.mean([p == e.label for p, e in zip(predicted, examples)])
    assert ensemble.evaluate(examples).main == pytest.approx(accuracy)


def test_save_pretrained_then_from_pretrained_gives_the_same_ensemble(tiny_causal, tmp_path):
    members = [PromptClassifier.build(tiny_causal, TASK, TASK.template, words) for words in (TASK.label_words,
                                                                                            MAPPINGS[0])]
    examples = [Example((text,)) for text in TEXTS]
    folder = EnsembleClassifier(members).save_pretrained(tmp_path / "saved", backbone_name="tiny")
    assert sorted(p.name for p in folder.iterdir()) == ["member-0", "prompt.json"]  # one shared backbone, saved once
    loaded = load_prompt(folder, device=TEST_DEVICE)
    assert isinstance(loaded, EnsembleClassifier) and loaded.members[0].backbone is loaded.members[1].backbone
    np.testing.assert_allclose(loaded.probabilities(examples), EnsembleClassifier(members).probabilities(examples),
                               atol=1e-6)


def test_an_ensemble_of_different_tasks_is_refused(tiny_causal):
    members = [PromptClassifier.build(tiny_causal, TASK, TASK.template, TASK.label_words),
               PromptClassifier.build(tiny_causal, get_task("SST-5"), get_task("SST-5").template,
                                      get_task("SST-5").label_words)]
    with pytest.raises(UserError, match="labels"):
        EnsembleClassifier(members)


# ---------------------------------------------------------------------------------------------
# The search: synthetic evaluations that carry per-example predictions, as the real evaluator's do


@dataclass
class PredictingEvaluator(SyntheticEvaluator):
    """SyntheticEvaluator plus per-example dev/test class scores (a candidate-, seed- and step-dependent
    probability of class "1" per example), stored by the study like the real evaluator's."""

    sizes: tuple[int, int] = (12, 10)

    def evaluate_with(self, state, candidate, seed, steps):
        outcome = super().evaluate_with(state, candidate, seed, steps)
        predictions = {}
        for split, size in zip(("dev", "test"), self.sizes):
            labels = [TASK.labels[i % 2] for i in range(size)]
            p_one = [_unit_hash(self.salt, candidate_id(candidate), seed, steps, split, i) for i in range(size)]
            predictions[split] = {"labels": labels, "scores": np.log([[1 - p, p] for p in p_one]).tolist()}
        return EvalOutcome(outcome.dev_metric, outcome.test_metric, {**outcome.extra, "predictions": predictions})


def pool(n: int) -> list[dict]:
    return [{"template": f"*cls**sent_0*_It_was{i}*mask*.*sep+*", "label_words": dict(TASK.label_words),
             "demonstrations": "off"} for i in range(n)]


def synthetic_search(path: Path, evaluator, size: int = 3):
    board = Leaderboard(path)
    study = Study(board, {"search": "synthetic"}, SuccessiveHalving(2, 8, SEEDS, eta=3), evaluator)
    result = study.run(pool(9), progress=False)
    outcome = build_ensemble(study, result, pool(9), TASK, size, progress=False, say=lambda *_: None)
    return board, study, result, outcome


def test_the_ensemble_is_scored_from_its_members_stored_predictions_and_ranked_with_them(tmp_path):
    board, study, result, outcome = synthetic_search(tmp_path / "lb.sqlite", PredictingEvaluator())
    final = result.rungs[-1].rung
    assert len(result.ranking) < 3  # halving left fewer finalists than the ensemble has members
    members = race_order(result)[:3]
    assert [m.candidate_id for m in outcome.members] == members
    ensemble_id = outcome.ranked.candidate_id
    for seed in SEEDS:
        for member in members:  # each member brought to the final budget on every seed
            assert board.get(member, seed, final.steps, study.config_hash) is not None
        stored = [load_predictions(board, study.config_hash, member, seed, final.steps) for member in members]
        mean = np.mean([softmax(p["dev"].scores) for p in stored], axis=0)
        gold = [TASK.label_index(label) for label in stored[0]["dev"].labels]
        row = board.get(ensemble_id, seed, final.steps, study.config_hash)
        assert row.dev_metric == pytest.approx(np.mean(mean.argmax(axis=1) == gold))
        assert row.extra["members"] == members and row.extra["examples"] == {"dev": 12, "test": 10}
    at_final = [entry for entry in board.ranking(config_hash=study.config_hash) if entry.budget == final.steps]
    assert ensemble_id in [entry.candidate_id for entry in at_final] and len(at_final) == 4
    assert at_final == sorted(at_final, key=rank_key)
    merged = with_ensemble(result.ranking, outcome)
    assert [e.candidate_id for e in merged] == [e.candidate_id for e in at_final]
    assert "ensemble of 3" in board.to_table(config_hash=study.config_hash)


def test_a_resumed_search_reuses_the_ensemble_and_its_members(tmp_path, monkeypatch):
    log = tmp_path / "calls.jsonl"
    _, _, _, first = synthetic_search(tmp_path / "lb.sqlite", PredictingEvaluator(call_log=str(log)))
    calls = log.read_text().count('"call"')

    def no_scoring(*args, **kwargs):
        raise AssertionError("the stored ensemble was computed again")

    monkeypatch.setattr(search_ensemble, "score_ensemble", no_scoring)
    _, _, _, again = synthetic_search(tmp_path / "lb.sqlite", PredictingEvaluator(call_log=str(log)))
    assert log.read_text().count('"call"') == calls and again.n_evaluated == 0
    assert again.ranked == first.ranked


def test_without_stored_predictions_there_is_no_ensemble_and_a_reason(tmp_path):
    _, _, _, outcome = synthetic_search(tmp_path / "lb.sqlite", SyntheticEvaluator())
    assert outcome.ranked is None and "no stored predictions" in outcome.reason
    _, _, _, off = synthetic_search(tmp_path / "off.sqlite", PredictingEvaluator(), size=0)
    assert off.ranked is None and off.members == []


# ---------------------------------------------------------------------------------------------
# Rule "forward": the pick, then the members that raise its dev log-probability


def test_forward_selection_adds_the_best_raiser_and_stops_when_none_raises():
    values = {("s",): 1.0, ("s", "a"): 1.5, ("s", "b"): 2.0, ("s", "c"): 0.5,
              ("s", "b", "a"): 2.2, ("s", "b", "c"): 2.5, ("s", "b", "c", "a"): 2.4}

    def score(members):
        return values[tuple(members)]

    assert forward_selection("s", ["a", "b", "c"], score, 4) == ["s", "b", "c"]  # adding a would lower it
    assert forward_selection("s", ["a", "b", "c"], score, 2) == ["s", "b"]
    assert forward_selection("s", ["c"], score, 3) == ["s"]  # c lowers the start's score: the start alone
    assert forward_selection("s", ["b", "a"], lambda m: float(len(m)), 2) == ["s", "b"]  # a tie: the earlier
    assert forward_selection("s", ["a"], lambda m: None, 3) == ["s"]


def dev_log_probability(board, config_hash, ids, steps) -> float:
    """Mean over seeds and dev examples of log(mean over members of p(gold)), computed here from the stored
    predictions, independently of the package."""
    values = []
    for seed in SEEDS:
        stored = [load_predictions(board, config_hash, cid, seed, steps)["dev"] for cid in ids]
        mean = np.mean([softmax(p.scores) for p in stored], axis=0)
        gold = [TASK.label_index(label) for label in stored[0].labels]
        values.append(np.mean(np.log(mean[np.arange(len(gold)), gold])))
    return float(np.mean(values))


def test_rule_forward_keeps_the_pick_and_only_members_that_raise_its_dev_log_probability(tmp_path):
    seen = set()
    for salt in range(40):
        board = Leaderboard(tmp_path / f"lb{salt}.sqlite")
        study = Study(board, {"search": "synthetic"}, SuccessiveHalving(2, 8, SEEDS, eta=3),
                      PredictingEvaluator(salt=str(salt)))
        result = study.run(pool(9), progress=False)
        order = race_order(result)
        start = order[4]  # a pick outside the race's top 3, as the paired rule may export the task prompt
        outcome = build_ensemble(study, result, pool(9), TASK, 3, members_rule="forward", start=start,
                                 progress=False, say=lambda *_: None)
        steps = result.rungs[-1].rung.steps
        tried = [start, *order[:2]]
        assert [m.candidate_id for m in outcome.members] == tried  # brought to the final budget

        def score(ids):
            return dev_log_probability(board, study.config_hash, ids, steps)

        alone = score([start])
        if outcome.ranked is None:
            seen.add("pick alone")
            assert "no candidate raised" in outcome.reason
            assert all(score([start, other]) <= alone for other in tried[1:])
            continue
        members = [candidate_id(c) for c in outcome.ranked.candidate["ensemble"]]
        seen.add(len(members))
        assert members[0] == start
        assert members[1] == max(tried[1:], key=lambda other: score([start, other]))
        assert all(score(members[:n]) > score(members[:n - 1]) for n in range(2, len(members) + 1))
        if len(members) == 2:
            rest = next(other for other in tried if other not in members)
            assert score([*members, rest]) <= score(members)
        row = board.get(outcome.ranked.candidate_id, SEEDS[0], steps, study.config_hash)
        assert row.extra["members"] == members
        if {"pick alone", 2, 3} <= seen:
            break
    assert {"pick alone", 2, 3} <= seen, seen


def test_bad_ensemble_members_rule_is_a_one_line_error():
    with pytest.raises(UserError, match="ensemble_members"):
        SearchOptions(task="sst2", ensemble_members="best").validate()
    with pytest.raises(ValueError, match="members_rule"):
        build_ensemble(None, None, [], TASK, 3, members_rule="best")


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_leaderboard_opens_and_gains_the_predictions_table(tmp_path, version):
    path = tmp_path / "old.sqlite"
    if version == 1:
        ids = write_version_1_database(path, pool(3))
    else:  # a version-2 file: today's tables less the predictions table
        board = Leaderboard(path)
        for candidate in pool(3):
            board.record(config_hash="cfg", candidate=candidate, seed=13, budget=10, rung=0, dev_metric=0.5)
        board.close()
        connection = sqlite3.connect(path)
        connection.executescript("DROP TABLE predictions; PRAGMA user_version = 2;")
        connection.close()
        ids = [candidate_id(c) for c in pool(3)]
    board = Leaderboard(path)
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 3
    assert connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 0
    assert [row.candidate_id for row in board.rows()] == ids
    assert load_predictions(board, "cfg", ids[0], 13, 10) == {}


# ---------------------------------------------------------------------------------------------
# End to end on the tiny causal LM: search -> export -> predict


@pytest.fixture(scope="module")
def searched(tiny_causal_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ensemble")
    data = write_toy_lmbff(folder / "lmbff")
    mappings = write_mapping_file(folder / "mappings.txt", MAPPINGS[:2])
    out = folder / "out"
    options = search_options(tiny_causal_folder, data, out, mapping_files=(str(mappings),), ensemble_size=2)
    result = run_pipeline(options, say=lambda *_: None)
    return out, data, result, options


def _settings(out: Path, config_hash: str) -> EvaluatorSettings:
    return EvaluatorSettings(**stored_config(Leaderboard(out / "leaderboard.sqlite"), config_hash)["settings"])


def test_the_search_ranks_its_ensemble_and_export_then_predict_equals_the_in_memory_ensemble(searched, capsys,
                                                                                             tmp_path):
    out, data, result, _ = searched
    entry = next(e for e in result.ranking if is_ensemble(e.candidate))
    assert result.ranking == sorted(result.ranking, key=rank_key)
    assert main(["export", "--out", str(out), "--candidate", "ensemble", "--fine-tune"]) == 0
    capsys.readouterr()
    exported = out / "ensemble.json"
    document = read_document(exported).document
    assert (document["schema_version"], document["kind"], document["template"]) == (3, "ensemble", None)
    members = document["members"]
    assert [m["candidate_id"] for m in members] == [candidate_id(c) for c in entry.candidate["ensemble"]]
    assert [m["fine_tuned_model"] for m in members] == ["ensemble-model-0", "ensemble-model-1"]

    found_by = document["found_by"]
    seed, steps = found_by["seeds"][0], found_by["steps"]
    settings = _settings(out, found_by["config_hash"])
    in_memory = EnsembleClassifier([fine_tuned_classifier(settings, c, seed, steps) for c in entry.candidate["ensemble"]])
    from_file = load_prompt(exported, device=TEST_DEVICE)
    assert isinstance(from_file, EnsembleClassifier)
    examples = [Example((text,)) for text in TEXTS]
    expected = in_memory.probabilities(examples)
    np.testing.assert_allclose(from_file.probabilities(examples), expected, atol=1e-5)

    # The exported ensemble scores the dev split as the leaderboard's ensemble row says.
    from autoprompt_search.data import load_split

    row = Leaderboard(out / "leaderboard.sqlite").get(entry.candidate_id, seed, steps, found_by["config_hash"])
    dev = load_split(from_file.task, "dev", data_dir=data, seed=seed)
    assert from_file.evaluate(dev).main == pytest.approx(row.dev_metric)

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main(["predict", "--prompt", str(exported), "--input", str(inputs), "--format", "jsonl",
                 "--device", TEST_DEVICE]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["label"] for line in lines] == [label for label, _ in in_memory.predict(examples)]
    for line, row_probabilities in zip(lines, expected):
        assert [line["probabilities"][label] for label in TASK.labels] == pytest.approx(list(row_probabilities), abs=1e-5)


def test_the_search_grows_a_forward_ensemble_from_the_pick_it_would_export(searched, tmp_path):
    searched_out, _, result, options = searched
    out = tmp_path / "out"
    shutil.copytree(searched_out, out)  # a copy holds every member: only the forward ensemble is computed
    messages = []
    again = run_pipeline(SearchOptions(**{**options.__dict__, "out": str(out), "ensemble_members": "forward"}),
                         say=messages.append)
    assert again.n_evaluated == 0
    board = Leaderboard(out / "leaderboard.sqlite")
    config_hash = board.latest_config_hash()
    steps = result.rungs[-1].rung.steps
    singles = [e for e in again.ranking if not is_ensemble(e.candidate)]
    task_prompt = candidate_id(make_candidate(TASK.template, Verbalizer.for_task(TASK)))
    pick = select_final(singles, TASK, rule="paired-loss", incumbent_id=task_prompt, seeds=SEEDS,
                        dev_predictions=lambda cid, seed: load_predictions(board, config_hash, cid, seed,
                                                                           steps).get("dev")).entry
    ensembles = [e for e in again.ranking if is_ensemble(e.candidate)]
    forward = [e for e in ensembles if candidate_id(e.candidate["ensemble"][0]) == pick.candidate_id]
    built = [candidate_id(c) for c in forward[0].candidate["ensemble"]] if forward else [pick.candidate_id]
    # benchmarks/bench_ensemble_members.py replays the same choice from the stored evaluations
    replayed = load_benchmark("bench_ensemble_members").replay(out / "leaderboard.sqlite", "paired-loss", 0.1)
    assert replayed["forward"]["members"] == built and replayed["pick"]["candidate_id"] == pick.candidate_id
    if forward:
        assert dev_log_probability(board, config_hash, built, steps) > dev_log_probability(
            board, config_hash, [pick.candidate_id], steps)
    else:
        # The forward path ran from the pick (without one, rule forward makes the top ensemble).
        assert any("no candidate raised" in message and "rule forward" in message for message in messages), messages


def test_a_version_2_prompt_file_still_loads_and_predicts(searched, capsys, tmp_path):
    out, _, result, _ = searched
    single = next(e for e in result.ranking if not is_ensemble(e.candidate))
    assert main(["export", "--out", str(out), "--candidate", single.candidate_id[:12],
                 "--output", str(tmp_path / "v3.json")]) == 0
    capsys.readouterr()
    document = json.loads((tmp_path / "v3.json").read_text())
    assert (document["schema_version"], document["kind"]) == (3, "prompt")
    old = {key: value for key, value in document.items() if key != "kind"}
    (tmp_path / "v2.json").write_text(json.dumps({**old, "schema_version": 2}), encoding="utf-8")
    examples = [Example((text,)) for text in TEXTS]
    expected = PromptClassifier.from_pretrained(tmp_path / "v3.json", device=TEST_DEVICE).probabilities(examples)
    loaded = load_prompt(tmp_path / "v2.json", device=TEST_DEVICE)
    assert isinstance(loaded, PromptClassifier)
    np.testing.assert_allclose(loaded.probabilities(examples), expected, atol=1e-6)
    (tmp_path / "inputs.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main(["predict", "--prompt", str(tmp_path / "v2.json"), "--input", str(tmp_path / "inputs.txt"),
                 "--device", TEST_DEVICE]) == 0
    labels = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert labels == [TASK.labels[i] for i in expected.argmax(axis=1)]


def test_ensemble_files_are_checked_before_a_model_loads(searched, tmp_path, capsys):
    out, _, _, _ = searched
    assert main(["export", "--out", str(out), "--candidate", "ensemble", "--output", str(tmp_path / "e.json")]) == 0
    capsys.readouterr()
    document = json.loads((tmp_path / "e.json").read_text())
    document["members"] = document["members"][:1]
    (tmp_path / "bad.json").write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(UserError, match="members.*two or more"):
        read_document(tmp_path / "bad.json")
    document = json.loads((tmp_path / "e.json").read_text())
    document["members"][1]["template"] = {"lmbff": "*cls**sent_0*"}
    (tmp_path / "bad.json").write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(UserError, match=r"members\[1\].*template"):
        read_document(tmp_path / "bad.json")
    with pytest.raises(UserError, match="ensemble"):
        PromptClassifier.from_pretrained(tmp_path / "e.json")
    assert main(["export", "--out", str(out), "--candidate", "zz"]) != 0
    assert "--candidate" in capsys.readouterr().err
