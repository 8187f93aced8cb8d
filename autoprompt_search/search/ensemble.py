"""The ensemble candidate: the top-m candidates of a finished race, their class probabilities averaged.

Members are the first m candidates in the order the race left them (the final ranking, then those
eliminated at each earlier rung, later rungs first): rule "top", as LM-BFF. Rule "forward" starts from
the candidate the export rule picked and adds, one at a time, the one of those m whose averaging-in
raises the ensemble's continuous dev score most (mean gold log-probability; Caruana et al., 2004,
"ensemble selection", without replacement), stopping when none raises it: averaging in a weaker prompt
can only make the pick worse, and a member that does not help on dev is left out. Each member must have
been fine-tuned at the final
budget on every seed, as the search trains a finalist; successive halving leaves few finalists, so the
members that lack it are evaluated now, through the same study (claimed, stored, resumed like any
evaluation). The ensemble is then scored per seed from the members' stored per-example predictions
(`predictions.py`), without training again, and stored as an ordinary leaderboard row at the final
budget, so it is ranked, tabled and plotted with the rest, and a resumed search reuses it.

Its candidate is `{"ensemble": [member candidates, best first]}`; its id is that dict's hash, like any
candidate's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import UserError
from ..tasks import Example, TaskSpec
from ..training import ensemble_result
from .evaluator import continuous_score
from .leaderboard import Leaderboard
from .predictions import SplitPredictions, load_predictions, predictions_payload, store_predictions
from .records import (DEV_SCORE, DEV_SCORE_KIND, EXAMPLES, Evaluation, RankedCandidate, aggregate, candidate_id,
                      package_versions, with_entries)
from .strategies import FinalRung, top_candidates
from .study import SearchResult, Study, run_search, unique_candidates

ENSEMBLE = "ensemble"
ENSEMBLE_MEMBERS = ("top", "forward")


def ensemble_candidate(members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {ENSEMBLE: [dict(member) for member in members]}


def is_ensemble(candidate: Mapping[str, Any]) -> bool:
    return isinstance(candidate, Mapping) and ENSEMBLE in candidate


def race_order(result: SearchResult) -> list[str]:
    """Candidate ids best first as the race left them: the final ranking, then each earlier rung's
    eliminated candidates by that rung's score (later rungs first). Failed candidates are left out."""
    order = [entry.candidate_id for entry in result.ranking]
    for rung_result in reversed(result.rungs):
        for cid in top_candidates(rung_result.scores, len(rung_result.scores), rung_result.tie_scores):
            if cid not in order:
                order.append(cid)
    return order


@dataclass
class EnsembleOutcome:
    ranked: RankedCandidate | None         # the ensemble's aggregate over seeds; None when none was made
    members: list[RankedCandidate]         # the candidates brought to the final budget for it, best first
    n_evaluated: int = 0                   # member evaluations run now to bring them to the final budget
    reason: str = ""                       # why there is no ensemble


def build_ensemble(study: Study, result: SearchResult, candidates: Iterable[Mapping[str, Any]], task: TaskSpec,
                   size: int, *, members_rule: str = "top", start: str | None = None, progress: bool = True,
                   say: Callable[[str], None] = print) -> EnsembleOutcome:
    """Bring the race's top `size` candidates (and `start`, the exported pick, under rule "forward") to the
    final budget, choose the members by `members_rule`, then score and store their ensemble. Rule "forward"
    without a `start` is rule "top"."""
    if members_rule not in ENSEMBLE_MEMBERS:
        raise ValueError(f"members_rule: got {members_rule!r}, expected one of {ENSEMBLE_MEMBERS}")
    if size < 2 or not result.rungs:
        return EnsembleOutcome(None, [], reason="ensembles are off" if size < 2 else "no race was run")
    final = result.rungs[-1].rung
    pool = unique_candidates(candidates)
    chosen = [cid for cid in race_order(result) if cid in pool][:size]
    forward = members_rule == "forward" and start is not None
    if forward and start in pool:
        chosen = forward_pool(chosen, start, size)
    if len(chosen) < 2:
        return EnsembleOutcome(None, [], reason=f"only {len(chosen)} candidate(s) finished the race")
    missing = sum(1 for cid in chosen for seed in final.seeds
                  if study.leaderboard.get(cid, seed, final.steps, study.config_hash) is None)
    if missing:
        say(f"ensemble: {missing} evaluation(s) bring its {len(chosen)} members to {final.steps} steps on every seed")
    finals = run_search([pool[cid] for cid in chosen], FinalRung(final.index, final.steps, tuple(final.seeds)),
                        study.evaluate, study.leaderboard, study.config_hash, study.executor, progress=progress,
                        retry_failed=False, claim_settings=study.claim_settings)
    members = sorted(finals.ranking, key=lambda entry: chosen.index(entry.candidate_id))
    outcome = EnsembleOutcome(None, members, finals.n_evaluated)
    if len(members) < 2:
        outcome.reason = f"only {len(members)} member(s) finished at {final.steps} steps"
        return outcome
    try:
        if forward and start in {m.candidate_id for m in members}:
            picked = forward_members(study.leaderboard, study.config_hash, task, start,
                                     [m.candidate_id for m in members], final.seeds, final.steps, size)
            if len(picked) < 2:
                outcome.reason = (f"no candidate raised the pick's mean dev gold log-probability when averaged in "
                                  f"(rule forward, {len(members) - 1} tried)")
                return outcome
            by_id = {m.candidate_id: m for m in members}
            members = [by_id[cid] for cid in picked]
        rows = ensemble_rows(study.leaderboard, study.config_hash, [m.candidate for m in members], task,
                             final.seeds, final.steps, final.index)
    except UserError as error:
        outcome.reason = str(error)
        return outcome
    outcome.ranked = aggregate(rows)
    return outcome


def forward_pool(top: Sequence[str], start: str, size: int) -> list[str]:
    """The candidates rule "forward" chooses from: the race's top `size`, with `start` in place of the last
    where it is not among them."""
    return list(top) if start in top else [start, *top[:size - 1]]


def forward_selection(start: str, pool: Sequence[str], score: Callable[[list[str]], float | None],
                      size: int) -> list[str]:
    """Members chosen forward from `start`: each round adds the `pool` candidate that raises `score(members)`
    most (the earlier in `pool` on a tie), until `size` members or until none raises it."""
    members = [start]
    best = score(members)
    if best is None:
        return members
    while len(members) < size:
        trials = [(value, -position, cid) for position, cid in enumerate(pool) if cid not in members
                  for value in [score([*members, cid])] if value is not None]
        if not trials:
            break
        value, _, cid = max(trials)
        if value <= best:
            break
        members.append(cid)
        best = value
    return members


def forward_members(leaderboard: Leaderboard, config_hash: str, task: TaskSpec, start: str, pool: Sequence[str],
                    seeds: Sequence[int], budget: int, size: int) -> list[str]:
    """`forward_selection` over stored evaluations: a member set's score is the mean over seeds of its averaged
    probabilities' continuous dev score (`continuous_score`, as the evaluator computes a single prompt's).
    Raises UserError when a candidate's dev predictions are missing."""
    dev = {(cid, seed): _stored_predictions(leaderboard, config_hash, cid, seed, budget)["dev"]
           for cid in {start, *pool} for seed in seeds}

    def score(member_ids: list[str]) -> float | None:
        values = []
        for seed in seeds:
            parts = [dev[cid, seed] for cid in member_ids]
            if any(part.labels != parts[0].labels for part in parts):
                raise UserError(f"no ensemble: the candidates' dev predictions for seed {seed} are not over the "
                                f"same examples")
            combined = ensemble_result(task, [part.scores for part in parts], parts[0].labels)
            _, value = continuous_score(task, combined, [Example((), label) for label in parts[0].labels])
            if value is None:
                return None
            values.append(value)
        return float(np.mean(values))

    return forward_selection(start, [cid for cid in pool if cid != start], score, size)


def ensemble_rows(leaderboard: Leaderboard, config_hash: str, members: Sequence[Mapping[str, Any]], task: TaskSpec,
                  seeds: Sequence[int], budget: int, rung: int) -> list[Evaluation]:
    """The ensemble's row per seed: read back when stored, else computed from the members' stored
    predictions and stored. Raises UserError when a member's predictions are missing or disagree."""
    candidate = ensemble_candidate(members)
    cid = candidate_id(candidate)
    rows = []
    for seed in seeds:
        row = leaderboard.get(cid, seed, budget, config_hash)
        if row is None:
            row = score_ensemble(leaderboard, config_hash, members, task, seed, budget, rung)
            if leaderboard.record_evaluation(row):
                with leaderboard.transaction() as connection:
                    store_predictions(connection, row)
            row = leaderboard.get(cid, seed, budget, config_hash) or row
        rows.append(row)
    return rows


def _stored_predictions(leaderboard: Leaderboard, config_hash: str, cid: str, seed: int,
                        budget: int) -> dict[str, SplitPredictions]:
    predictions = load_predictions(leaderboard, config_hash, cid, seed, budget)
    if "dev" not in predictions:
        raise UserError(f"no ensemble: candidate {cid[:10]} has no stored predictions for seed {seed} at {budget} "
                        f"steps (evaluated before predictions were stored; search into a new output folder to get one)")
    return predictions


def score_ensemble(leaderboard: Leaderboard, config_hash: str, members: Sequence[Mapping[str, Any]], task: TaskSpec,
                   seed: int, budget: int, rung: int) -> Evaluation:
    """The ensemble's evaluation on one seed from its members' stored predictions, not stored (`ensemble_rows`
    stores it). Raises UserError when a member's predictions are missing or disagree."""
    candidate = ensemble_candidate(members)
    per_member = [_stored_predictions(leaderboard, config_hash, candidate_id(member), seed, budget)
                  for member in members]
    results = {}
    for split in ("dev", "test"):
        if not all(split in predictions for predictions in per_member):
            continue
        parts = [predictions[split] for predictions in per_member]
        if any(part.labels != parts[0].labels for part in parts):
            raise UserError(f"no ensemble: the members' {split} predictions for seed {seed} are not over the same "
                            f"examples")
        results[split] = (parts[0].labels, ensemble_result(task, [part.scores for part in parts], parts[0].labels))
    dev_labels, dev = results["dev"]
    extra: dict[str, Any] = {"members": [candidate_id(member) for member in members], "steps": budget,
                             EXAMPLES: {split: len(labels) for split, (labels, _) in results.items()}}
    kind, score = continuous_score(task, dev, [Example((), label) for label in dev_labels])
    if score is not None:
        extra[DEV_SCORE], extra[DEV_SCORE_KIND] = score, kind
    test = results.get("test", (None, None))[1]
    return Evaluation(
        config_hash=config_hash, candidate_id=candidate_id(candidate), candidate=candidate, seed=seed,
        budget=budget, rung=rung, dev_metric=dev.main if dev.metrics else float("nan"),
        test_metric=test.main if test is not None and test.metrics else None,
        dev_metrics=dict(dev.metrics), test_metrics=dict(test.metrics) if test is not None else {},
        extra=extra, steps=budget, versions=package_versions(),
        # Stored like any evaluation's, so the ensemble can challenge the task prompt example by example.
        predictions={split: predictions_payload(labels, result.scores) for split, (labels, result) in results.items()})


def with_ensemble(ranking: Sequence[RankedCandidate], outcome: EnsembleOutcome) -> list[RankedCandidate]:
    """The final ranking with the members brought to the final budget and the ensemble, best first."""
    return with_entries(ranking, [*outcome.members, *([outcome.ranked] if outcome.ranked else [])])
