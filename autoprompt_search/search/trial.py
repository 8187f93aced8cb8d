"""The evaluation contract: what one evaluation gets (`Job`) and returns (`EvalOutcome`), how it is
run and timed (`run_job`), and `LazyEvaluator`, the base of picklable evaluators.

An evaluation that raises is a result too (`JobResult.error`), caught where it ran, so one bad
candidate (a label word the tokenizer cannot take, a template that does not fit) is recorded as a
failed row and the race goes on. Running out of memory is not the candidate's fault: it propagates,
nothing is recorded and a resumed search tries that evaluation again.

The evaluation itself is an abstract callable `evaluate(candidate, seed, steps) -> EvalOutcome`
(steps == 0 means zero-shot). For parallel executors it must be picklable; `LazyEvaluator` is a
base class whose heavy state (the model) is created once per worker process, not once per call.
"""
from __future__ import annotations

import threading
import time
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar

from ..training import release_freed_memory
from .records import package_versions, sha256_of

T = TypeVar("T")


@dataclass(frozen=True)
class EvalOutcome:
    """Result of evaluating one candidate on one seed after `steps` training steps.

    Recognised keys of `extra` go to their own leaderboard columns: "dev_metrics" and
    "test_metrics" (dicts of all metrics), "steps" (steps actually run, e.g. with early
    stopping). Everything else is stored as JSON as it is; the evaluator puts there "dev_score"
    (a continuous dev score, higher is better, that breaks ties of the dev metric), "dev_score_kind"
    and "examples" ({"dev": n, "test": n}: the split sizes the metrics were computed on), and
    "predictions" ({split: {"labels", "scores"}}), which goes to the leaderboard's predictions table.
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
    """What came back from one job: an outcome, or (outcome None) the error it raised."""

    job: Job
    outcome: EvalOutcome | None
    wall_time_s: float
    versions: dict[str, str]
    error: str | None = None        # "ExceptionType: message", one line
    traceback: str | None = None

    @property
    def failed(self) -> bool:
        return self.outcome is None


def is_resource_error(error: BaseException) -> bool:
    """Out of memory (host or accelerator): a property of the machine, not of the candidate."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def error_line(error: BaseException) -> str:
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def run_job(evaluate: EvaluateFn, job: Job) -> JobResult:
    """Run one evaluation (in whichever process the executor chose) and time it; an exception
    (other than running out of memory) becomes a failed result."""
    started = time.perf_counter()
    try:
        outcome = evaluate(job.candidate, job.seed, job.steps)
    except Exception as error:
        if is_resource_error(error):
            raise
        return JobResult(job, None, time.perf_counter() - started, package_versions(),
                         error=error_line(error), traceback=traceback.format_exc())
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

    Worker processes live across many tasks, so an evaluator's model is loaded once per worker. One state
    is held at a time: a different key drops the one held (and hands its freed memory back) before the new
    one loads. Two searches in one process (a benchmark over tasks, a notebook) held a model per task: a
    Gemma 3 270M process that had finished RTE (its model still held, its heap at 23.6 GB) was killed for
    memory as the next task's search began. Reloading a model costs seconds, an evaluation minutes.
    """
    with _PROCESS_STATE_LOCK:
        if key not in _PROCESS_STATE:
            if _PROCESS_STATE:
                _PROCESS_STATE.clear()
                release_freed_memory()
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
