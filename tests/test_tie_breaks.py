"""Selection that a small dev split can bear: ties of the dev metric (common on 32 examples) are broken
by a continuous dev score, never by the candidate's hash, in the rungs and in the final ranking; rows
without the score (older files) rank below rows with it; the table names each split and its size.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import toy_sentiment_examples, toy_similarity_examples
from synthetic import SyntheticEvaluator, write_version_1_database
from autoprompt_search.search import (EvalOutcome, Leaderboard, SerialExecutor, SuccessiveHalving, candidate_id,
                                      run_search, top_candidates)
from autoprompt_search.search.evaluator import continuous_score
from autoprompt_search.tasks import get_task
from autoprompt_search.training import PromptClassifier


def make_candidate(name: str) -> dict:
    return {"template": f"*cls**sent_0*_{name}*mask*.*sep+*", "label_words": {"0": "bad", "1": "good"},
            "demonstrations": "off"}


class TableEvaluator:
    """Dev metric and continuous score looked up by template word; no score for words in `unscored`."""

    def __init__(self, table: dict[str, tuple[float, float]], unscored: tuple[str, ...] = ()):
        self.table, self.unscored = table, unscored

    def __call__(self, candidate, seed, steps) -> EvalOutcome:
        name = candidate["template"].split("*_")[1].split("*")[0]
        metric, score = self.table[name]
        extra = {"examples": {"dev": 32}}
        if name not in self.unscored:
            extra["dev_score"] = score
        return EvalOutcome(metric, None, extra)


def ordered_by_id(*names: str) -> list[str]:
    return sorted(names, key=lambda n: candidate_id(make_candidate(n)))


def race(tmp_path, table, unscored=(), name="board"):
    pool = [make_candidate(n) for n in table]
    strategy = SuccessiveHalving(min_steps=2, max_steps=4, seeds=(13,), eta=2)
    board = Leaderboard(tmp_path / f"{name}.sqlite")
    return run_search(pool, strategy, TableEvaluator(table, unscored), board, "cfg", SerialExecutor(),
                      progress=False), board


def test_top_candidates_orders_ties_by_the_continuous_score_whatever_the_ids():
    scores = {"a": 0.5, "b": 0.5, "c": 0.9, "d": math.nan}
    assert top_candidates(scores, 4, {"a": -0.9, "b": -0.1, "c": -2.0, "d": 0.0}) == ["c", "b", "a", "d"]
    assert top_candidates(scores, 4, {"a": -0.1, "b": -0.9, "c": -2.0, "d": 0.0}) == ["c", "a", "b", "d"]
    # A missing (or NaN) continuous score ranks lowest among the tied; without scores the id decides.
    assert top_candidates(scores, 2, {"a": None, "b": -5.0}) == ["c", "b"]
    assert top_candidates(scores, 2, {"a": math.nan, "b": -5.0}) == ["c", "b"]
    assert top_candidates(scores, 2) == ["c", "a"]


@pytest.mark.parametrize("swap", [False, True])
def test_halving_promotes_the_tied_candidate_with_the_higher_continuous_score(tmp_path, swap):
    # low id / high id: the candidate the hash would promote and the one it would not.
    low, high = ordered_by_id("tieA", "tieB")
    winner, loser = (low, high) if swap else (high, low)
    table = {"best": (0.75, -0.2), winner: (0.5, -0.4), loser: (0.5, -0.6), "worst": (0.25, -0.1)}
    result, _ = race(tmp_path, table)
    first = result.rungs[0]
    assert first.scores[candidate_id(make_candidate(winner))] == first.scores[candidate_id(make_candidate(loser))]
    assert first.survivors == [candidate_id(make_candidate("best")), candidate_id(make_candidate(winner))]
    assert first.tie_scores[candidate_id(make_candidate(winner))] == pytest.approx(-0.4)


@pytest.mark.parametrize("swap", [False, True])
def test_final_ranking_orders_ties_by_the_continuous_score(tmp_path, swap):
    low, high = ordered_by_id("tieA", "tieB")
    winner, loser = (low, high) if swap else (high, low)
    table = {winner: (0.5, -0.3), loser: (0.5, -0.7)}
    pool = [make_candidate(n) for n in table]
    board = Leaderboard(tmp_path)
    strategy = SuccessiveHalving(min_steps=2, max_steps=2, seeds=(13, 21), eta=3, first_rung="short")
    result = run_search(pool, strategy, TableEvaluator(table), board, "cfg", progress=False)
    expected = [candidate_id(make_candidate(winner)), candidate_id(make_candidate(loser))]
    assert [r.candidate_id for r in result.ranking] == expected
    assert [r.candidate_id for r in board.ranking()] == expected
    assert result.ranking[0].mean_dev_score == pytest.approx(-0.3)


def test_rows_without_the_score_rank_below_rows_with_it_on_ties(tmp_path):
    low, high = ordered_by_id("old", "new")
    board = Leaderboard(tmp_path)
    # The row without a score has the smaller id, so the old tie-break alone would put it first.
    for name, extra in ((low, {}), (high, {"dev_score": -3.0})):
        board.record(config_hash="cfg", candidate=make_candidate(name), seed=13, budget=4, rung=0,
                     dev_metric=0.5, extra=extra)
    board.record(config_hash="cfg", candidate=make_candidate("top"), seed=13, budget=4, rung=0, dev_metric=0.9)
    ranking = board.ranking()
    assert [r.candidate_id for r in ranking] == [candidate_id(make_candidate(n)) for n in ("top", high, low)]
    assert ranking[2].mean_dev_score is None
    # In the race as well: the unscored candidate loses the tie.
    result, _ = race(tmp_path, {"best": (0.75, -1.0), low: (0.5, 0.0), high: (0.5, -9.0), "worst": (0.25, 0.0)},
                     unscored=(low,), name="race")
    assert result.rungs[0].survivors[1] == candidate_id(make_candidate(high))


def test_a_candidate_missing_the_score_on_one_seed_has_no_mean_score(tmp_path):
    board = Leaderboard(tmp_path)
    for seed, extra in ((13, {"dev_score": -0.5}), (21, {})):
        board.record(config_hash="cfg", candidate=make_candidate("x"), seed=seed, budget=4, rung=0,
                     dev_metric=0.5, extra=extra)
    assert board.ranking()[0].mean_dev_score is None


def test_version_1_rows_still_load_and_rank(tmp_path):
    path = tmp_path / "old.sqlite"
    ids = write_version_1_database(path, [make_candidate(n) for n in ("p", "q", "r")])
    ranking = Leaderboard(path).ranking()
    assert [r.candidate_id for r in ranking] == ids[::-1]
    assert all(r.mean_dev_score is None and r.dev_examples == () for r in ranking)
    assert Leaderboard(path).to_table().splitlines()[0].split()[:3] == ["rank", "dev", "mean"]


def test_synthetic_ties_follow_the_score_and_the_search_stays_deterministic(tmp_path):
    pool = [make_candidate(f"c{i}") for i in range(12)]
    evaluate = SyntheticEvaluator(dev_examples=4)  # accuracies on 4 examples: many ties
    strategy = SuccessiveHalving(min_steps=2, max_steps=8, seeds=(13, 21), eta=2)
    first = run_search(pool, strategy, evaluate, Leaderboard(tmp_path / "a.sqlite"), "cfg", progress=False)
    zero_shot = first.rungs[0]
    assert len(set(zero_shot.scores.values())) < len(zero_shot.scores), "expected ties on a 4-example dev"
    expected = sorted(zero_shot.scores, key=lambda c: (-zero_shot.scores[c], -zero_shot.tie_scores[c]))
    assert zero_shot.survivors == expected[:len(zero_shot.survivors)]
    again = run_search(pool, strategy, evaluate, Leaderboard(tmp_path / "b.sqlite"), "cfg", progress=False)
    assert [r.survivors for r in again.rungs] == [r.survivors for r in first.rungs]
    assert [(r.candidate_id, r.mean_dev, r.mean_dev_score) for r in again.ranking] == \
        [(r.candidate_id, r.mean_dev, r.mean_dev_score) for r in first.ranking]


def test_the_table_states_each_split_and_its_size(tmp_path):
    board = Leaderboard(tmp_path)
    for i, dev in enumerate((0.5, 0.75)):
        board.record(config_hash="cfg", candidate=make_candidate(f"t{i}"), seed=13, budget=4, rung=0,
                     dev_metric=dev, test_metric=0.6,
                     extra={"dev_score": -0.25 * (i + 1), "examples": {"dev": 32, "test": 872}})
    lines = board.to_table().splitlines()
    assert "dev (32) mean" in lines[0] and "test (872) mean" in lines[0] and "dev score" in lines[0]
    assert "-0.5000" in lines[2] and "0.7500" in lines[2]  # best first, with its continuous score
    stored = board.rows("cfg")[0]
    assert (stored.examples("dev"), stored.examples("test")) == (32, 872)


def test_continuous_score_is_the_mean_gold_log_probability(tiny_causal):
    task = get_task("sst2")
    dev = toy_sentiment_examples(10, seed=3)
    classifier = PromptClassifier.build(tiny_causal, task, task.template, task.label_words)
    result = classifier.evaluate(dev)
    kind, value = continuous_score(task, result, dev)
    gold = torch.tensor([task.label_index(e.label) for e in dev])
    expected = torch.log_softmax(torch.as_tensor(result.scores, dtype=torch.float64), dim=-1)[
        torch.arange(len(dev)), gold].mean().item()
    assert kind == "mean_gold_logprob" and value == pytest.approx(expected, abs=1e-9) and value < 0
    # Scores shifted per example (unnormalised log-space) give the same value: it is a log-softmax.
    shifted = type(result)(result.metrics, result.predictions, result.scores + np.arange(len(dev))[:, None])
    assert continuous_score(task, shifted, dev)[1] == pytest.approx(value)
    # Unknown gold labels: no score.
    assert continuous_score(task, result, [type(e)(e.texts, None) for e in dev])[1] is None


def test_continuous_score_for_regression_is_minus_the_squared_error():
    task = get_task("stsb")
    examples = toy_similarity_examples(4, seed=0)
    predictions = [e.label + 0.5 for e in examples]
    result = type("Result", (), {"predictions": predictions, "scores": np.zeros((4, 2))})()
    assert continuous_score(task, result, examples) == ("neg_mse", pytest.approx(-0.25))
