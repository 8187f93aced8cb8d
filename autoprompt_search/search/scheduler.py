"""What to evaluate (strategies), where to run it (executors) and the resumable search loop.

Kept apart in the spirit of Optuna:

* a *strategy* (`SuccessiveHalving`, `Exhaustive`) only plans rungs and picks survivors;
* an *executor* (`SerialExecutor`, `JoblibExecutor`, `DaskExecutor`, `RayExecutor`) only runs
  picklable calls and yields results as they finish;
* the *leaderboard* only stores evaluations;
* `run_search` ties them together: it skips evaluations the leaderboard already holds (resume),
  records each result in the parent process the moment it arrives (a kill loses only what was in
  flight) and feeds each rung's scores to the strategy.

The evaluation itself is an abstract callable `evaluate(candidate, seed, steps) -> EvalOutcome`
(steps == 0 means zero-shot). For parallel executors it must be picklable; `LazyEvaluator` is a
base class whose heavy state (the model) is created once per worker process, not once per call.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import statistics
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence, TypeVar

from tqdm.auto import tqdm

from ..errors import UserError
from .leaderboard import (
    Evaluation,
    Leaderboard,
    RankedCandidate,
    aggregate,
    canonical_json,
    candidate_id,
    package_versions,
    rank_key,
    sha256_of,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

FIRST_RUNG_MODES = ("zero_shot", "short")


# ---------------------------------------------------------------------------------------------
# The evaluation contract


@dataclass(frozen=True)
class EvalOutcome:
    """Result of evaluating one candidate on one seed after `steps` training steps.

    Recognised keys of `extra` go to their own leaderboard columns: "dev_metrics" and
    "test_metrics" (dicts of all metrics), "steps" (steps actually run, e.g. with early
    stopping). Everything else is stored as JSON as it is.
    """

    dev_metric: float
    test_metric: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


EvaluateFn = Callable[[Mapping[str, Any], int, int], EvalOutcome]


@dataclass(frozen=True)
class Job:
    """One evaluation to run: a candidate, a seed and a training budget within a rung."""

    candidate_id: str
    candidate: dict[str, Any]
    seed: int
    steps: int
    rung: int


@dataclass(frozen=True)
class JobResult:
    job: Job
    outcome: EvalOutcome
    wall_time_s: float
    versions: dict[str, str]


def run_job(evaluate: EvaluateFn, job: Job) -> JobResult:
    """Run one evaluation (in whichever process the executor chose) and time it."""
    started = time.perf_counter()
    outcome = evaluate(job.candidate, job.seed, job.steps)
    wall_time_s = time.perf_counter() - started
    if isinstance(outcome, (int, float)):
        outcome = EvalOutcome(dev_metric=float(outcome))
    if not isinstance(outcome, EvalOutcome):
        raise TypeError(f"evaluate must return EvalOutcome, got {type(outcome).__name__}")
    return JobResult(job, outcome, wall_time_s, package_versions())


# ---------------------------------------------------------------------------------------------
# Per-process state for picklable evaluators

_PROCESS_STATE: dict[str, Any] = {}
_PROCESS_STATE_LOCK = threading.Lock()


def process_local(key: str, factory: Callable[[], T]) -> T:
    """The object cached in this process under `key`, created by `factory` on first use.

    Worker processes live across many tasks, so an evaluator's model is loaded once per worker.
    """
    with _PROCESS_STATE_LOCK:
        if key not in _PROCESS_STATE:
            _PROCESS_STATE[key] = factory()
        return _PROCESS_STATE[key]


def clear_process_state() -> None:
    with _PROCESS_STATE_LOCK:
        _PROCESS_STATE.clear()


class LazyEvaluator(ABC):
    """Picklable `evaluate` callable: instances carry only light configuration (pickled to each
    task); heavy state such as a loaded model is built by `load_state` once per process and then
    shared by every call in that process with the same `state_config`."""

    @abstractmethod
    def state_config(self) -> dict[str, Any]:
        """JSON-able settings that determine the heavy state (model name, device, ...)."""

    @abstractmethod
    def load_state(self) -> Any:
        """Build the heavy state; called at most once per process and state_config."""

    @abstractmethod
    def evaluate_with(self, state: Any, candidate: Mapping[str, Any], seed: int, steps: int) -> EvalOutcome:
        """Evaluate one candidate using the loaded state."""

    def state_key(self) -> str:
        return f"{type(self).__module__}.{type(self).__qualname__}:{sha256_of(self.state_config())}"

    def __call__(self, candidate: Mapping[str, Any], seed: int, steps: int) -> EvalOutcome:
        state = process_local(self.state_key(), self.load_state)
        return self.evaluate_with(state, candidate, seed, steps)


def _unit_hash(*parts: Any) -> float:
    """Deterministic number in [0, 1) from the parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class SyntheticEvaluator(LazyEvaluator):
    """A stand-in for training: a hidden quality per candidate, improving with steps, plus seed
    noise. Deterministic, cheap and picklable; for dry runs of a search plan, benchmarks of the
    executors and tests. `sleep_s` imitates training time; `call_log` (a file) gets one JSON
    line per state load and per finished call."""

    noise: float = 0.02
    sleep_s: float = 0.0
    call_log: str | None = None
    salt: str = ""

    def state_config(self) -> dict[str, Any]:
        return {"salt": self.salt}

    def load_state(self) -> dict[str, Any]:
        self._log({"event": "load"})
        return {"pid": os.getpid()}

    def quality(self, candidate: Mapping[str, Any]) -> float:
        return 0.5 + 0.4 * _unit_hash(self.salt, candidate_id(candidate))

    def evaluate_with(self, state: Any, candidate: Mapping[str, Any], seed: int, steps: int) -> EvalOutcome:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        cid = candidate_id(candidate)
        learning = 0.6 + 0.4 * steps / (steps + 10)
        noise = self.noise * (2 * _unit_hash(self.salt, cid, seed, steps) - 1)
        dev = self.quality(candidate) * learning + noise
        test = dev - 0.5 * self.noise * _unit_hash("test", self.salt, cid, seed, steps)
        self._log({"event": "call", "candidate_id": cid, "seed": seed, "steps": steps})
        return EvalOutcome(dev, test, {"dev_metrics": {"acc": dev}, "test_metrics": {"acc": test}})

    def _log(self, record: dict[str, Any]) -> None:
        if self.call_log is None:
            return
        line = json.dumps({**record, "pid": os.getpid(), "tag": os.environ.get("AUTOPROMPT_RUN_TAG", "")})
        # One short O_APPEND write per line: lines from concurrent processes never interleave.
        fd = os.open(self.call_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------
# Strategies


@dataclass(frozen=True)
class Rung:
    """One round of evaluations: `n_candidates` candidates, each on every seed at `steps`."""

    index: int
    steps: int
    seeds: tuple[int, ...]
    n_candidates: int

    @property
    def evaluations(self) -> int:
        return self.n_candidates * len(self.seeds)

    @property
    def training_steps(self) -> int:
        return self.evaluations * self.steps


class Strategy(Protocol):
    def plan(self, n_candidates: int) -> list[Rung]:
        """All rungs for this many candidates; the last one gives the final ranking."""

    def select(self, rung: Rung, scores: Mapping[str, float]) -> list[str]:
        """Candidate ids (from `scores`: mean dev metric per candidate) that go to the next rung."""


def top_candidates(scores: Mapping[str, float], keep: int) -> list[str]:
    """The `keep` best ids by score; NaN ranks last and ties go to the smaller candidate id."""
    def key(cid: str) -> tuple[float, str]:
        score = scores[cid]
        return (math.inf if score is None or math.isnan(score) else -score, cid)

    return sorted(scores, key=key)[:keep]


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise UserError("seeds: expected at least one seed, got an empty list")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds: expected distinct seeds, got {list(seeds)}")
    return seeds


@dataclass(frozen=True)
class Exhaustive:
    """Every candidate on every seed at the full budget (LM-BFF's own protocol)."""

    steps: int
    seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", _check_seeds(self.seeds))
        if self.steps < 0:
            raise UserError(f"steps: expected a number >= 0 (0 = zero-shot), got {self.steps}")

    def plan(self, n_candidates: int) -> list[Rung]:
        return [Rung(0, self.steps, self.seeds, n_candidates)] if n_candidates else []

    def select(self, rung: Rung, scores: Mapping[str, float]) -> list[str]:
        return top_candidates(scores, len(scores))


@dataclass(frozen=True)
class SuccessiveHalving:
    """Evaluate all candidates cheaply, keep the best 1/eta, give them eta times more, repeat.

    Rung 0 runs every candidate on the first `min_seeds` seeds, either zero-shot (steps = 0,
    `first_rung="zero_shot"`) or with a short fine-tune of `min_steps` (`first_rung="short"`).
    Each later rung keeps exactly ceil(n / eta) candidates (ties by candidate id), multiplies the
    steps by eta (the first fine-tuning rung after zero-shot uses `min_steps`), capped at
    `max_steps`, and multiplies the number of seeds by eta. The last rung is always `max_steps`
    on all seeds; when one candidate is left the plan jumps straight to it.
    """

    min_steps: int
    max_steps: int
    seeds: tuple[int, ...]
    eta: float = 3
    min_seeds: int = 1
    first_rung: str = "zero_shot"

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", _check_seeds(self.seeds))
        if self.first_rung not in FIRST_RUNG_MODES:
            raise UserError(f"first_rung: expected one of {FIRST_RUNG_MODES}, got {self.first_rung!r}")
        if not self.eta > 1:
            raise UserError(f"eta: expected a number > 1, got {self.eta}")
        if not 1 <= self.min_seeds <= len(self.seeds):
            raise UserError(f"min_seeds: expected 1..{len(self.seeds)} (the number of seeds), "
                            f"got {self.min_seeds}")
        if self.max_steps < 0 or self.min_steps < 0:
            raise UserError(f"min_steps/max_steps: expected numbers >= 0, got "
                            f"{self.min_steps}/{self.max_steps}")
        if self.max_steps > 0 and not 1 <= self.min_steps <= self.max_steps:
            raise UserError(f"min_steps: expected 1..max_steps ({self.max_steps}), got {self.min_steps}")
        if self.first_rung == "short" and self.max_steps == 0:
            raise UserError("first_rung 'short' needs max_steps > 0; use 'zero_shot' for a "
                            "zero-shot-only search")

    def step_schedule(self) -> list[int]:
        """Training steps per rung before the one-candidate shortcut."""
        schedule = [0] if self.first_rung == "zero_shot" else []
        if self.max_steps == 0:
            return schedule
        steps = self.min_steps
        while True:
            schedule.append(steps)
            if steps >= self.max_steps:
                return schedule
            steps = min(self.max_steps, max(steps + 1, int(round(steps * self.eta))))

    def plan(self, n_candidates: int) -> list[Rung]:
        schedule = self.step_schedule()
        rungs: list[Rung] = []
        n_active = n_candidates
        for index, steps in enumerate(schedule):
            if n_active == 0:
                break
            is_last = index == len(schedule) - 1 or n_active == 1
            if is_last:
                rungs.append(Rung(index, self.max_steps, self.seeds, n_active))
                break
            n_seeds = min(len(self.seeds), int(self.min_seeds * self.eta ** index))
            rungs.append(Rung(index, steps, self.seeds[:n_seeds], n_active))
            n_active = math.ceil(n_active / self.eta)
        return rungs

    def select(self, rung: Rung, scores: Mapping[str, float]) -> list[str]:
        return top_candidates(scores, math.ceil(len(scores) / self.eta))


def describe_plan(rungs: Sequence[Rung]) -> str:
    """Human-readable compute plan: evaluations and training steps per rung, and totals."""
    lines = []
    for rung in rungs:
        budget = "zero-shot" if rung.steps == 0 else f"{rung.steps} steps"
        lines.append(f"rung {rung.index}: {rung.n_candidates} candidate(s) x {len(rung.seeds)} seed(s) "
                     f"({budget}) = {rung.evaluations} evaluations, {rung.training_steps} training steps")
    total_evaluations = sum(r.evaluations for r in rungs)
    total_steps = sum(r.training_steps for r in rungs)
    lines.append(f"total: {total_evaluations} evaluations, {total_steps} training steps")
    return "\n".join(lines)


def total_training_steps(rungs: Sequence[Rung]) -> int:
    return sum(r.training_steps for r in rungs)


# ---------------------------------------------------------------------------------------------
# Executors


class Executor(Protocol):
    def map_unordered(self, function: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """Apply `function` to every item, yielding each result as soon as it is ready."""


@dataclass
class SerialExecutor:
    """Everything in this process, in order. The evaluator's state is loaded once here."""

    def map_unordered(self, function: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        for item in items:
            yield function(item)


def _joblib_generator(function: Callable[[T], R], items: Sequence[T], n_jobs: int,
                      backend: str, backend_params: Mapping[str, Any]) -> Iterator[R]:
    import joblib

    if not items:
        return
    # The backend is bound when Parallel is built, so the config context can end before we
    # start yielding (and never leaks into the caller while this generator is suspended).
    with joblib.parallel_config(backend=backend, n_jobs=n_jobs, **backend_params):
        parallel = joblib.Parallel(return_as="generator_unordered", batch_size=1,
                                   pre_dispatch="2*n_jobs")
    yield from parallel(joblib.delayed(function)(item) for item in items)


@dataclass
class JoblibExecutor:
    """Local worker processes through joblib (loky by default). Each worker process keeps its
    `LazyEvaluator` state across tasks, so a model is loaded once per worker."""

    n_jobs: int = -1
    backend: str = "loky"

    def map_unordered(self, function: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        return _joblib_generator(function, items, self.n_jobs, self.backend, {})


def _dask_generator(client, function: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
    """Submit every item to the cluster and yield results as they finish. (joblib's Dask backend
    would run everything in this process when the cluster has a single worker thread.)"""
    from distributed import as_completed

    futures = [client.submit(function, item, pure=False) for item in items]
    try:
        with client.as_current():
            completed = as_completed(futures)
        for future in completed:
            yield future.result()
    finally:
        for future in futures:
            future.cancel()


@dataclass
class DaskExecutor:
    """A Dask cluster: give a scheduler address ("tcp://host:8786") or an existing
    `distributed.Client`. Workers keep their `LazyEvaluator` state across tasks."""

    scheduler_address: str | None = None
    client: Any = None
    n_jobs: int = -1

    def map_unordered(self, function: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        try:
            from distributed import Client
        except ImportError as error:
            raise UserError("executor 'dask' needs dask.distributed; install "
                            "autoprompt_search[dask] (pip install 'dask[distributed]')") from error
        if self.client is None and not self.scheduler_address:
            raise UserError("executor 'dask': expected a scheduler address such as "
                            "tcp://127.0.0.1:8786 (start one with `dask scheduler`)")
        return self._run(Client, function, items)

    def _run(self, client_class, function, items) -> Iterator[R]:
        own_client = self.client is None
        try:
            client = self.client or client_class(self.scheduler_address, set_as_default=False)
        except OSError as error:
            raise UserError(f"executor 'dask': cannot reach scheduler {self.scheduler_address}: "
                            f"{error}") from error
        try:
            yield from _dask_generator(client, function, items)
        finally:
            if own_client:
                client.close()


@dataclass
class RayExecutor:
    """A Ray cluster through ray's joblib backend (ray is optional and imported only here)."""

    address: str | None = None
    n_jobs: int = -1

    def map_unordered(self, function: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError as error:
            raise UserError("executor 'ray' needs ray, which is not installed; install "
                            "autoprompt_search[ray] (pip install ray) or use 'joblib' or 'dask'") from error
        if not ray.is_initialized():
            ray.init(address=self.address, ignore_reinit_error=True)
        register_ray()
        return _joblib_generator(function, items, self.n_jobs, "ray", {})


EXECUTORS = ("serial", "joblib", "dask", "ray")


def make_executor(name: str, *, n_jobs: int = -1, scheduler_address: str | None = None) -> Executor:
    """Executor by name, for configuration files and the command line."""
    if name == "serial":
        return SerialExecutor()
    if name == "joblib":
        return JoblibExecutor(n_jobs=n_jobs)
    if name == "dask":
        return DaskExecutor(scheduler_address=scheduler_address, n_jobs=n_jobs)
    if name == "ray":
        return RayExecutor(address=scheduler_address, n_jobs=n_jobs)
    raise UserError(f"executor: expected one of {EXECUTORS}, got {name!r}")


# ---------------------------------------------------------------------------------------------
# The search loop


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
