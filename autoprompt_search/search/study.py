"""The resumable search loop: `run_search` and `Study` tie a strategy, an executor and the
leaderboard together, and `SearchResult` holds the rungs' scores and the final ranking.

Survivors and the final ranking are ordered by the mean dev metric, then by the mean continuous
dev score (`Evaluation.dev_score`; see records.py), then by candidate id.

Kept apart in the spirit of Optuna:

* a *strategy* (`SuccessiveHalving`, `Exhaustive`) only plans rungs and picks survivors;
* an *executor* (`SerialExecutor`, `JoblibExecutor`, `DaskExecutor`, `RayExecutor`) only runs
  picklable calls and yields results as they finish;
* the *leaderboard* only stores evaluations;
* `run_search` ties them together: it skips evaluations the leaderboard already holds (resume),
  claims each evaluation in the leaderboard before it runs (so searches sharing a folder share the
  work, see `claims.py`), records each result in the parent process the moment it arrives (a kill
  loses only what was in flight) and feeds each rung's scores to the strategy.

An evaluation that raised is stored as a FAIL row (as Optuna records failed trials): its candidate
leaves the race at that rung, the others go on, and a rerun does not try it again unless asked
(`retry_failed`). Every process sharing a folder waits until each evaluation of a rung is stored,
by whichever process, before it selects survivors, so all of them select the same ones.
"""
from __future__ import annotations

import functools
import json
import logging
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

from tqdm.auto import tqdm

from ..errors import UserError
from .claims import Claims, ClaimSettings, now_iso
from .executors import Executor, SerialExecutor
from .leaderboard import Leaderboard
from .records import (PREDICTIONS, Evaluation, RankedCandidate, aggregate, canonical_json, candidate_id, mean_score,
                      rank_key, sha256_of)
from .strategies import Rung, Strategy, top_candidates
from .trial import EvaluateFn, Job, JobResult, run_job

logger = logging.getLogger(__name__)


@dataclass
class RungResult:
    rung: Rung
    scores: dict[str, float]           # candidate id -> mean dev metric over the rung's seeds
    survivors: list[str]               # ids promoted to the next rung (all ids at the last rung)
    failed: dict[str, str] = field(default_factory=dict)  # candidate id -> error (no score, not promoted)
    # candidate id -> mean continuous dev score over the rung's seeds (None if a row lacks it): breaks ties
    tie_scores: dict[str, float | None] = field(default_factory=dict)


@dataclass
class SearchResult:
    plan: list[Rung]
    rungs: list[RungResult]
    ranking: list[RankedCandidate]     # final rung, best first
    n_evaluated: int                   # evaluations run now (by this process)
    n_reused: int                      # evaluations found in the leaderboard or stored by other processes
    failures: list[Evaluation] = field(default_factory=list)  # FAIL rows met, new or stored before

    @property
    def n_failed(self) -> int:
        return len(self.failures)

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
    if result.failed:
        return Evaluation(
            config_hash=config_hash, candidate_id=result.job.candidate_id, candidate=result.job.candidate,
            seed=result.job.seed, budget=result.job.steps, rung=result.job.rung, dev_metric=float("nan"),
            extra={"traceback": result.traceback} if result.traceback else {}, steps=0,
            wall_time_s=result.wall_time_s, versions=result.versions, state="FAIL", error=result.error)
    extra = dict(result.outcome.extra)
    dev_metrics = extra.pop("dev_metrics", {"metric": result.outcome.dev_metric})
    test_metrics = extra.pop("test_metrics", {} if result.outcome.test_metric is None
                             else {"metric": result.outcome.test_metric})
    steps = int(extra.pop("steps", result.job.steps))
    predictions = extra.pop(PREDICTIONS, None)
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
        predictions=predictions,
    )


def _rung_jobs(rung: Rung, active: Sequence[str], candidates: Mapping[str, dict[str, Any]]) -> list[Job]:
    return [Job(cid, candidates[cid], seed, rung.steps, rung.index)
            for cid in active for seed in rung.seeds]


@dataclass
class _RungOutcome:
    done: dict[tuple[str, int], Evaluation] = field(default_factory=dict)      # (candidate, seed) -> row
    failed: dict[tuple[str, int], Evaluation] = field(default_factory=dict)    # (candidate, seed) -> FAIL row
    ran: int = 0                                                               # computed by this process


def _run_rung(rung: Rung, jobs: list[Job], evaluate: EvaluateFn, leaderboard: Leaderboard,
              config_hash: str, executor: Executor, progress: bool, claims: Claims) -> _RungOutcome:
    """Evaluate a rung's jobs: claim what nobody holds, run it, store it; take what others stored;
    wait (polling) for evaluations live others hold. Returns once every job has a stored row."""
    outcome = _RungOutcome()
    budget = "zero-shot" if rung.steps == 0 else f"{rung.steps} steps"
    with tqdm(total=len(jobs), desc=f"rung {rung.index} ({budget})", unit="eval", disable=not progress) as bar:
        while True:
            # Finished rows in one read; only the rest go through a claim (a write transaction each).
            stored = {(row.candidate_id, row.seed): row for row in leaderboard.rows(config_hash)
                      if row.budget == rung.steps}
            todo = []
            for job in jobs:
                key = (job.candidate_id, job.seed)
                if key in outcome.done or key in outcome.failed:
                    continue
                if key in stored:
                    _keep(outcome, stored[key])
                    bar.update(1)
                else:
                    todo.append(job)
            if not todo:
                return outcome
            found: list[tuple[Job, str]] = []  # filled as the executor pulls jobs (maybe in its own thread)

            def claimed(todo=todo, found=found):
                for job in todo:
                    status = claims.try_claim(job)
                    if status == "claimed":
                        yield job
                    else:
                        found.append((job, status))

            ran_now = 0
            for result in executor.map_unordered(functools.partial(run_job, evaluate), claimed()):
                evaluation = claims.finish(_evaluation_from_result(result, config_hash))
                if evaluation.failed:
                    logger.warning("evaluation failed: candidate %s seed %s at %s steps: %s",
                                   evaluation.candidate_id[:10], evaluation.seed, evaluation.budget, evaluation.error)
                _keep(outcome, evaluation)
                ran_now += 1
                bar.update(1)
            outcome.ran += ran_now
            waiting = False
            for job, status in found:
                if status == "busy":
                    waiting = True
                    continue
                row = leaderboard.get(job.candidate_id, job.seed, job.steps, config_hash, include_failed=True)
                if row is not None:
                    _keep(outcome, row)
                    bar.update(1)
            if waiting and not ran_now:
                time.sleep(claims.settings.poll_s)


def _keep(outcome: _RungOutcome, evaluation: Evaluation) -> None:
    key = (evaluation.candidate_id, evaluation.seed)
    (outcome.failed if evaluation.failed else outcome.done)[key] = evaluation


def run_search(
    candidates: Iterable[Mapping[str, Any]],
    strategy: Strategy,
    evaluate: EvaluateFn,
    leaderboard: Leaderboard,
    config_hash: str,
    executor: Executor | None = None,
    *,
    progress: bool = True,
    retry_failed: bool = False,
    claim_settings: ClaimSettings | None = None,
) -> SearchResult:
    """Run `strategy` over `candidates`, resuming from and recording into `leaderboard`.

    With `retry_failed`, evaluations stored as FAIL before this call are run again (once).
    `claim_settings` sets the lease and polling times of the claims that let several processes
    share the work of one configuration.
    """
    executor = executor or SerialExecutor()
    pool = unique_candidates(candidates)
    if not pool:
        raise UserError("no candidates to search: expected at least one template/label-word candidate")
    plan = strategy.plan(len(pool))
    claims = Claims(leaderboard, config_hash, claim_settings,
                    retry_failed_before=now_iso() if retry_failed else None)
    with claims:
        return _race(pool, plan, strategy, evaluate, leaderboard, config_hash, executor, progress, claims)


def _race(pool, plan, strategy, evaluate, leaderboard, config_hash, executor, progress, claims) -> SearchResult:
    active = list(pool)
    rung_results: list[RungResult] = []
    n_evaluated = n_reused = 0
    failures: list[Evaluation] = []
    final: dict[tuple[str, int], Evaluation] = {}
    for position, planned in enumerate(plan):
        rung = planned
        if len(active) != planned.n_candidates:
            if not failures:
                raise RuntimeError(f"strategy planned {planned.n_candidates} candidates for rung "
                                   f"{planned.index} but selected {len(active)}")
            rung = replace(planned, n_candidates=len(active))  # failed candidates left the race
        if not active:
            final = {}
            break
        jobs = _rung_jobs(rung, active, pool)
        outcome = _run_rung(rung, jobs, evaluate, leaderboard, config_hash, executor, progress, claims)
        n_evaluated += outcome.ran
        n_reused += len(jobs) - outcome.ran
        failures.extend(outcome.failed.values())
        failed = {cid: row.error or "failed" for (cid, _seed), row in sorted(outcome.failed.items())}
        healthy = [cid for cid in active if cid not in failed]
        final = {key: row for key, row in outcome.done.items() if key[0] not in failed}
        scores = {cid: statistics.fmean(final[(cid, seed)].dev_metric for seed in rung.seeds)
                  for cid in healthy}
        tie_scores = {cid: mean_score([final[(cid, seed)].dev_score for seed in rung.seeds])
                      for cid in healthy}
        is_last = position == len(plan) - 1
        if is_last or not scores:
            survivors = top_candidates(scores, len(scores), tie_scores)
        else:
            survivors = strategy.select(rung, scores, tie_scores)
        rung_results.append(RungResult(rung, scores, list(survivors), failed, tie_scores))
        active = list(survivors)
    ranking = _final_ranking(final)
    return SearchResult(plan, rung_results, ranking, n_evaluated, n_reused, failures)


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
    retry_failed: bool = False
    claim_settings: ClaimSettings | None = None

    @property
    def config_hash(self) -> str:
        return sha256_of(dict(self.config))

    def plan(self, n_candidates: int) -> list[Rung]:
        return self.strategy.plan(n_candidates)

    def run(self, candidates: Iterable[Mapping[str, Any]], *, progress: bool = True) -> SearchResult:
        return run_search(candidates, self.strategy, self.evaluate, self.leaderboard,
                          self.config_hash, self.executor, progress=progress, retry_failed=self.retry_failed,
                          claim_settings=self.claim_settings)
