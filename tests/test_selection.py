"""The exported candidate: the task's own prompt unless a candidate wins significantly more of the same dev
examples (paired sign test), or the best mean dev metric under --selection dev."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from autoprompt_search.errors import UserError
from autoprompt_search.search import Leaderboard, SearchOptions, run_pipeline
from autoprompt_search.search.predictions import SplitPredictions
from autoprompt_search.search.records import RankedCandidate
from autoprompt_search.search.predictions import gold_log_probabilities
from autoprompt_search.search.selection import select_final, sign_test_p, signed_rank_p
from autoprompt_search.tasks import get_task

SST2 = get_task("sst2")
STSB = get_task("sts-b")
LABELS = tuple(["0", "1"] * 16)  # 32 dev examples


def _predictions(correct: list[bool]) -> SplitPredictions:
    """Class scores that put each example right or wrong as asked."""
    scores = np.zeros((len(LABELS), 2))
    for i, (label, right) in enumerate(zip(LABELS, correct)):
        gold = int(label)
        scores[i, gold if right else 1 - gold] = 1.0
    return SplitPredictions(LABELS, scores)


def _entry(cid: str, correct: list[bool]) -> RankedCandidate:
    return RankedCandidate({"template": cid}, cid, sum(correct) / len(correct), 0.0, 1, None, 32,
                           dev_examples=(32,))


def _ranked(**correct_by_id):
    entries = sorted((_entry(cid, c) for cid, c in correct_by_id.items()), key=lambda e: -e.mean_dev)
    by_id = {cid: _predictions(c) for cid, c in correct_by_id.items()}
    return entries, (lambda cid, seed: by_id.get(cid))


def _correct(right: int, shift: int = 0) -> list[bool]:
    """`right` of 32 examples right, starting at example `shift`."""
    return [(i - shift) % 32 < right for i in range(32)]


def test_sign_test_p_values():
    assert sign_test_p(5, 4) == pytest.approx(0.5)
    assert sign_test_p(6, 3) == pytest.approx(130 / 512)
    assert sign_test_p(9, 0) == pytest.approx(1 / 512)
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(0, 3) == 1.0


def test_a_challenger_within_the_noise_does_not_replace_the_task_prompt():
    # incumbent right on 0..23 (24/32), challenger right on 3..27 (25/32): 4 wins, 3 losses.
    ranking, predictions = _ranked(task=_correct(24), challenger=_correct(25, shift=3))
    assert ranking[0].candidate_id == "challenger"
    chosen = select_final(ranking, SST2, rule="paired", incumbent_id="task", seeds=[13], dev_predictions=predictions)
    assert chosen.entry.candidate_id == "task" and chosen.rule == "paired"
    assert (chosen.wins, chosen.losses) == (4, 3) and chosen.p_value == pytest.approx(sign_test_p(4, 3))
    by_dev = select_final(ranking, SST2, rule="dev", incumbent_id="task", seeds=[13], dev_predictions=predictions)
    assert by_dev.entry.candidate_id == "challenger" and by_dev.rule == "dev"


def test_a_challenger_that_wins_clearly_is_exported():
    # incumbent right on 0..19 (20/32), challenger right on 0..29: 10 wins, 0 losses.
    ranking, predictions = _ranked(task=_correct(20), challenger=_correct(30))
    chosen = select_final(ranking, SST2, rule="paired", incumbent_id="task", seeds=[13], dev_predictions=predictions)
    assert chosen.entry.candidate_id == "challenger"
    assert (chosen.wins, chosen.losses) == (10, 0) and chosen.p_value <= 0.1


def test_the_best_ranked_significant_challenger_wins_and_unpaired_rows_are_skipped():
    ranking, predictions = _ranked(task=_correct(16), strong=_correct(28), stronger=_correct(30))
    ensemble = RankedCandidate({"ensemble": ["x"]}, "ensemble", 1.0, 0.0, 1, None, 32, dev_examples=(32,))
    chosen = select_final([ensemble, *ranking], SST2, rule="paired", incumbent_id="task", seeds=[13], dev_predictions=predictions)
    assert chosen.entry.candidate_id == "stronger"


def test_wins_are_pooled_over_seeds():
    # Per seed 3 wins and 0 losses (p = 0.125 > 0.1); over two seeds 6 - 0 (p = 0.016).
    task, challenger = _predictions(_correct(24)), _predictions(_correct(27))
    ranking = [_entry("challenger", _correct(27)), _entry("task", _correct(24))]
    one = select_final(ranking, SST2, rule="paired", incumbent_id="task", seeds=[13],
                       dev_predictions=lambda cid, seed: task if cid == "task" else challenger)
    two = select_final(ranking, SST2, rule="paired", incumbent_id="task", seeds=[13, 21],
                       dev_predictions=lambda cid, seed: task if cid == "task" else challenger)
    assert one.entry.candidate_id == "task" and two.entry.candidate_id == "challenger"
    assert (two.wins, two.losses) == (6, 0)


def test_the_dev_rule_applies_without_an_incumbent_or_for_regression():
    ranking, predictions = _ranked(task=_correct(24), challenger=_correct(25, shift=3))
    gone = select_final(ranking, SST2, rule="paired", incumbent_id="someone else", seeds=[13], dev_predictions=predictions)
    assert gone.entry.candidate_id == "challenger" and gone.rule == "dev"
    regression = select_final(ranking, STSB, rule="paired", incumbent_id="task", seeds=[13], dev_predictions=predictions)
    assert regression.entry.candidate_id == "challenger" and regression.rule == "dev"
    assert select_final([], SST2, rule="paired", incumbent_id="task", seeds=[13], dev_predictions=predictions) is None


@pytest.mark.parametrize("field, value", [("selection", "best"), ("selection_alpha", 0.0), ("selection_alpha", 1.5)])
def test_bad_selection_settings_are_one_line_errors(field, value):
    with pytest.raises(UserError, match=field):
        SearchOptions(task="sst2", **{field: value}).validate()


def test_the_search_records_its_selection_and_follows_the_rule(tiny_causal_folder, tmp_path):
    from test_search import search_options, write_toy_lmbff

    data = write_toy_lmbff(tmp_path / "data", seeds=(13,))
    out = tmp_path / "out"
    options = search_options(tiny_causal_folder, data, out, seeds=(13,), n_mappings=2, label_k=3)
    result = run_pipeline(options, say=lambda *_: None)
    paired = json.loads((out / "best.json").read_text())["found_by"]
    assert options.selection == "paired-loss"  # the default
    assert paired["selection"]["rule"] in ("paired-loss", "dev")
    board = Leaderboard(out / "leaderboard.sqlite")
    ranking = board.ranking(budget=options.max_steps, config_hash=paired["config_hash"])
    task_id = next(e.candidate_id for e in ranking if e.candidate["template"] == "*cls**sent_0*_It_was*mask*.*sep+*"
                   and e.candidate["label_words"] == dict(SST2.label_words))
    if paired["candidate_id"] != task_id:  # a challenger is exported only on a significant paired record
        assert paired["selection"]["p_value"] <= options.selection_alpha
    run_pipeline(options.__class__(**{**options.__dict__, "selection": "dev"}), say=lambda *_: None)
    by_dev = json.loads((out / "best.json").read_text())["found_by"]
    assert by_dev["config_hash"] == paired["config_hash"]  # the rule chooses among the same evaluations
    assert by_dev["candidate_id"] == result.ranking[0].candidate_id
    assert by_dev["selection"]["rule"] == "dev"


def test_ensemble_rows_store_their_dev_predictions_so_they_can_challenge(tiny_causal_folder, tmp_path):
    from autoprompt_search.search.predictions import load_predictions
    from autoprompt_search.search.selection import correct_per_example
    from test_search import search_options, write_toy_lmbff

    data = write_toy_lmbff(tmp_path / "data", seeds=(13,))
    out = tmp_path / "out"
    options = search_options(tiny_causal_folder, data, out, seeds=(13,), n_mappings=2, label_k=3, ensemble_size=2)
    run_pipeline(options, say=lambda *_: None)
    board = Leaderboard(out / "leaderboard.sqlite")
    rows = [r for r in board.rows(board.latest_config_hash()) if "ensemble" in r.candidate]
    assert rows
    for row in rows:
        dev = load_predictions(board, row.config_hash, row.candidate_id, row.seed, row.budget)["dev"]
        assert float(correct_per_example(SST2, dev).mean()) == pytest.approx(row.dev_metric)


def _gold_probabilities(p_gold: list[float]) -> SplitPredictions:
    """Two-class log-space scores giving the gold class of example i probability p_gold[i]."""
    scores = np.zeros((len(LABELS), 2))
    for i, (label, p) in enumerate(zip(LABELS, p_gold)):
        gold = int(label)
        scores[i, gold], scores[i, 1 - gold] = np.log(p), np.log(1 - p)
    return SplitPredictions(LABELS, scores)


def _two(challenger: SplitPredictions, task: SplitPredictions, dev=(0.75, 0.75)):
    """The challenger ranked first (as the dev metric and its continuous tie-break would put it)."""
    ranking = [RankedCandidate({"template": "challenger"}, "challenger", dev[0], 0.0, 1, None, 32, dev_examples=(32,)),
               RankedCandidate({"template": "task"}, "task", dev[1], 0.0, 1, None, 32, dev_examples=(32,))]
    return ranking, (lambda cid, seed: challenger if cid == "challenger" else task)


def test_signed_rank_p_values():
    assert signed_rank_p(np.array([0.5, 1.0, 1.5, 2.0, 2.5])) == pytest.approx(1 / 32)  # W+ = 15, its maximum
    assert signed_rank_p(np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 0.0])) == pytest.approx(1 / 32)  # zeros dropped
    assert signed_rank_p(np.zeros(4)) == 1.0
    assert signed_rank_p(np.array([-1.0, -2.0, -3.0])) > 0.5


def test_gold_log_probabilities_are_the_log_softmax_at_the_gold_class():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(len(LABELS), 2)) * 3
    expected = torch.log_softmax(torch.tensor(scores), dim=1).numpy()[np.arange(len(LABELS)), [int(l) for l in LABELS]]
    np.testing.assert_allclose(gold_log_probabilities(SST2, scores, LABELS), expected, atol=1e-12)


def test_paired_loss_sees_a_difference_the_sign_test_cannot():
    # Both right on the same 24 examples: no discordant example for the sign test; the challenger gives the
    # gold class more probability on every one of the 32.
    right = _correct(24)
    task = _gold_probabilities([0.6 if r else 0.4 for r in right])
    challenger = _gold_probabilities([0.8 if r else 0.45 for r in right])
    ranking, predictions = _two(challenger, task)
    by_sign = select_final(ranking, SST2, rule="paired", incumbent_id="task", seeds=[13], dev_predictions=predictions)
    assert by_sign.entry.candidate_id == "task" and (by_sign.wins, by_sign.losses) == (0, 0)
    by_loss = select_final(ranking, SST2, rule="paired-loss", incumbent_id="task", seeds=[13],
                           dev_predictions=predictions)
    assert by_loss.entry.candidate_id == "challenger" and by_loss.rule == "paired-loss"
    assert (by_loss.wins, by_loss.losses) == (32, 0) and by_loss.p_value <= 0.1
    assert "signed-rank" in by_loss.reason


def test_paired_loss_keeps_the_task_prompt_when_the_differences_go_both_ways():
    # Same right/wrong; the challenger is more sure on half the examples and less sure on the other half.
    right = _correct(24)
    task = _gold_probabilities([0.7 if r else 0.4 for r in right])
    challenger = _gold_probabilities([(0.8 if i % 2 else 0.6) if r else (0.45 if i % 2 else 0.35)
                                      for i, r in enumerate(right)])
    ranking, predictions = _two(challenger, task)
    chosen = select_final(ranking, SST2, rule="paired-loss", incumbent_id="task", seeds=[13],
                          dev_predictions=predictions)
    assert chosen.entry.candidate_id == "task" and chosen.p_value > 0.1
    assert (chosen.wins, chosen.losses) == (16, 16)


def test_paired_loss_only_challenges_from_above_the_task_prompt():
    # Higher gold probabilities everywhere, but ranked below the task prompt on dev: not a challenger.
    right = _correct(24)
    task = _gold_probabilities([0.6 if r else 0.4 for r in right])
    challenger = _gold_probabilities([0.8 if r else 0.45 for r in right])
    ranking, predictions = _two(challenger, task)
    below = [ranking[1], ranking[0]]
    chosen = select_final(below, SST2, rule="paired-loss", incumbent_id="task", seeds=[13], dev_predictions=predictions)
    assert chosen.entry.candidate_id == "task" and "ranks first" in chosen.reason


def test_the_paired_loss_rule_reaches_the_options_from_a_flag_and_a_config_file(tmp_path):
    from autoprompt_search.cli.main import build_parser
    from autoprompt_search.cli.search import search_options_from

    args = build_parser().parse_args(["search", "--task", "sst2", "--out", str(tmp_path / "a"),
                                      "--selection", "paired-loss"])
    assert search_options_from(args)[0].selection == "paired-loss"
    config = tmp_path / "search.toml"
    config.write_text('task = "sst2"\nselection = "paired-log"\n', encoding="utf-8")
    with pytest.raises(UserError, match="search.toml, line 2.*selection.*paired-loss"):
        search_options_from(build_parser().parse_args(["search", "--config", str(config)]))


def _version(cid: str, candidate: dict, correct: list[bool]) -> RankedCandidate:
    return RankedCandidate(candidate, cid, sum(correct) / len(correct), 0.0, 1, None, 32, dev_examples=(32,))


PROMPT = {"template": "*cls**sent_0*_It_was*mask*.*sep+*", "label_words": {"0": "terrible", "1": "great"}}


def test_the_task_prompts_better_ranked_version_with_demonstrations_is_the_incumbent():
    # task prompt 20/32; with demonstrations 24/32 (0..23); challenger 26/32 (2..27): against the version with
    # demonstrations 4 wins, 2 losses (p 0.34); against the plain prompt 8 wins, 2 losses (p 0.055).
    correct = {"task": _correct(20), "task+demos": _correct(24), "challenger": _correct(26, shift=2)}
    candidates = {"task": {**PROMPT, "demonstrations": "off"}, "task+demos": {**PROMPT, "demonstrations": "random"},
                  "challenger": {**PROMPT, "template": "*cls**sent_0*_A*mask*.*sep+*", "demonstrations": "off"}}
    ranking = sorted((_version(cid, candidates[cid], c) for cid, c in correct.items()), key=lambda e: -e.mean_dev)
    predictions = {cid: _predictions(c) for cid, c in correct.items()}
    chosen = select_final(ranking, SST2, rule="paired", incumbent_id="task", seeds=[13],
                          dev_predictions=lambda cid, seed: predictions[cid])
    assert chosen.entry.candidate_id == "task+demos" and (chosen.wins, chosen.losses) == (4, 2)
    assert "with random demonstrations" in chosen.reason
    # Where the version with demonstrations ranks below the prompt itself, the prompt defends as before.
    correct["task+demos"] = _correct(16)
    ranking = sorted((_version(cid, candidates[cid], c) for cid, c in correct.items()), key=lambda e: -e.mean_dev)
    predictions = {cid: _predictions(c) for cid, c in correct.items()}
    chosen = select_final(ranking, SST2, rule="paired", incumbent_id="task", seeds=[13],
                          dev_predictions=lambda cid, seed: predictions[cid])
    assert chosen.entry.candidate_id == "challenger" and (chosen.wins, chosen.losses) == (8, 2)


def test_only_the_same_template_and_words_count_as_a_version_of_the_task_prompt():
    from autoprompt_search.search.selection import is_version_of

    assert is_version_of({**PROMPT, "demonstrations": "filtered"}, {**PROMPT, "demonstrations": "off"})
    assert not is_version_of({**PROMPT, "label_words": {"0": "bad", "1": "great"}}, PROMPT)
    assert not is_version_of({"ensemble": ["a", "b"]}, PROMPT)
