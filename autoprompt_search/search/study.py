"""The resumable search loop: `run_search` and `Study` tie a strategy, an executor and the
leaderboard together, and `SearchResult` holds the rungs' scores and the final ranking.

Kept apart in the spirit of Optuna:

* a *strategy* (`SuccessiveHalving`, `Exhaustive`) only plans rungs and picks survivors;
* an *executor* (`SerialExecutor`, `JoblibExecutor`, `DaskExecutor`, `RayExecutor`) only runs
  picklable calls and yields results as they finish;
* the *leaderboard* only stores evaluations;
* `run_search` ties them together: it skips evaluations the leaderboard already holds (resume),
  records each result in the parent process the moment it arrives (a kill loses only what was in
  flight) and feeds each rung's scores to the strategy.
"""
from __future__ import annotations

import functools
import json
import logging
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from tqdm.auto import tqdm

from ..errors import UserError
from .executors import Executor, SerialExecutor
from .leaderboard import Leaderboard
from .records import Evaluation, RankedCandidate, aggregate, canonical_json, candidate_id, rank_key, sha256_of
from .strategies import Rung, Strategy, top_candidates
from .trial import EvaluateFn, Job, JobResult, run_job

logger = logging.getLogger(__name__)


@dataclass
class RungResult:
    rung: Rung
    scores: dict[str, float]           # candidate id -> mean dev metric over the rung's seeds
    survivors: list[str]               # ids promoted to the next rung (all ids at the last rung)


@dataclass
class SearchResult:
    plan: list[Rung]
    rungs: list[RungResult]
    ranking: list[RankedCandidate]     # final rung, best first
    n_evaluated: int                   # evaluations run now
    n_reused: int                      # evaluations found in the leaderboard

    @property
    def best(self) -> RankedCandidate | None:
        return self.ranking[0] if self.ranking else None


def unique_candidates(candidates: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Candidates by id in input order; exact duplicates are dropped (they would share results)."""
    unique: dict[str, dict[str, Any]] = {}
    for position, candidate in enumerate(candidates):
        if not isinstance(candidate, Mapping):
            raise UserError(f"candidate #{position}: expected a JSON object (dict), "
                            f"got {type(candidate).__name__}")
        plain = json.loads(canonical_json(dict(candidate)))
        cid = candidate_id(plain)
        if cid in unique:
            logger.info("candidate #%d duplicates an earlier one; evaluated once", position)
            continue
        unique[cid] = plain
    return unique


def _evaluation_from_result(result: JobResult, config_hash: str) -> Evaluation:
    extra = dict(result.outcome.extra)
    dev_metrics = extra.pop("dev_metrics", {"metric": result.outcome.dev_metric})
    test_metrics = extra.pop("test_metrics", {} if result.outcome.test_metric is None
                             else {"metric": result.outcome.test_metric})
    steps = int(extra.pop("steps", result.job.steps))
    return Evaluation(
        config_hash=config_hash,
        candidate_id=result.job.candidate_id,
        candidate=result.job.candidate,
        seed=result.job.seed,
        budget=result.job.steps,
        rung=result.job.rung,
        dev_metric=float(result.outcome.dev_metric),
        test_metric=None if result.outcome.test_metric is None else float(result.outcome.test_metric),
        dev_metrics=dev_metrics,
        test_metrics=test_metrics,
        extra=extra,
        steps=steps,
        wall_time_s=result.wall_time_s,
        versions=result.versions,
    )


def _rung_jobs(rung: Rung, active: Sequence[str], candidates: Mapping[str, dict[str, Any]]) -> list[Job]:
    return [Job(cid, candidates[cid], seed, rung.steps, rung.index)
            for cid in active for seed in rung.seeds]


def _run_rung(rung: Rung, jobs: list[Job], evaluate: EvaluateFn, leaderboard: Leaderboard,
              config_hash: str, executor: Executor, progress: bool) -> tuple[dict[tuple[str, int], Evaluation], int]:
    """Evaluate a rung's jobs, reusing stored results; returns the evaluations and how many ran."""
    done: dict[tuple[str, int], Evaluation] = {}
    pending: list[Job] = []
    for job in jobs:
        stored = leaderboard.get(job.candidate_id, job.seed, job.steps, config_hash)
        if stored is None:
            pending.append(job)
        else:
            done[(job.candidate_id, job.seed)] = stored
    budget = "zero-shot" if rung.steps == 0 else f"{rung.steps} steps"
    with tqdm(total=len(jobs), initial=len(done), desc=f"rung {rung.index} ({budget})",
              unit="eval", disable=not progress) as bar:
        for result in executor.map_unordered(functools.partial(run_job, evaluate), pending):
            evaluation = _evaluation_from_result(result, config_hash)
            if not leaderboard.record_evaluation(evaluation):
                # Another process stored this evaluation first; keep one answer everywhere.
                evaluation = leaderboard.get(evaluation.candidate_id, evaluation.seed,
                                             evaluation.budget, config_hash) or evaluation
            done[(evaluation.candidate_id, evaluation.seed)] = evaluation
            bar.update(1)
    return done, len(pending)


def run_search(
    candidates: Iterable[Mapping[str, Any]],
    strategy: Strategy,
    evaluate: EvaluateFn,
    leaderboard: Leaderboard,
    config_hash: str,
    executor: Executor | None = None,
    *,
    progress: bool = True,
) -> SearchResult:
    """Run `strategy` over `candidates`, resuming from and recording into `leaderboard`."""
    executor = executor or SerialExecutor()
    pool = unique_candidates(candidates)
    if not pool:
        raise UserError("no candidates to search: expected at least one template/label-word candidate")
    plan = strategy.plan(len(pool))
    active = list(pool)
    rung_results: list[RungResult] = []
    n_evaluated = n_reused = 0
    final: dict[tuple[str, int], Evaluation] = {}
    for position, rung in enumerate(plan):
        if len(active) != rung.n_candidates:
            raise RuntimeError(f"strategy planned {rung.n_candidates} candidates for rung "
                               f"{rung.index} but selected {len(active)}")
        jobs = _rung_jobs(rung, active, pool)
        final, ran = _run_rung(rung, jobs, evaluate, leaderboard, config_hash, executor, progress)
        n_evaluated += ran
        n_reused += len(jobs) - ran
        scores = {cid: statistics.fmean(final[(cid, seed)].dev_metric for seed in rung.seeds)
                  for cid in active}
        is_last = position == len(plan) - 1
        survivors = top_candidates(scores, len(scores)) if is_last else strategy.select(rung, scores)
        rung_results.append(RungResult(rung, scores, list(survivors)))
        active = list(survivors)
    ranking = _final_ranking(final)
    return SearchResult(plan, rung_results, ranking, n_evaluated, n_reused)


def _final_ranking(evaluations: Mapping[tuple[str, int], Evaluation]) -> list[RankedCandidate]:
    by_candidate: dict[str, list[Evaluation]] = {}
    for (cid, _seed), evaluation in evaluations.items():
        by_candidate.setdefault(cid, []).append(evaluation)
    return sorted((aggregate(group) for group in by_candidate.values()), key=rank_key)


@dataclass
class Study:
    """A search bound to its storage and configuration; `run` may be called again to resume."""

    leaderboard: Leaderboard
    config: Mapping[str, Any]
    strategy: Strategy
    evaluate: EvaluateFn
    executor: Executor = field(default_factory=SerialExecutor)

    @property
    def config_hash(self) -> str:
        return sha256_of(dict(self.config))

    def plan(self, n_candidates: int) -> list[Rung]:
        return self.strategy.plan(n_candidates)

    def run(self, candidates: Iterable[Mapping[str, Any]], *, progress: bool = True) -> SearchResult:
        return run_search(candidates, self.strategy, self.evaluate, self.leaderboard,
                          self.config_hash, self.executor, progress=progress)
