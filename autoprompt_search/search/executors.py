"""Executors: where evaluations run. An executor (`SerialExecutor`, `JoblibExecutor`,
`DaskExecutor`, `RayExecutor`) only runs picklable calls and yields results as they finish.

Items may be a lazy iterable, and every executor pulls them only as it has room to run them (serial:
one at a time; joblib: its pre-dispatch queue; Dask: one per worker thread). The search claims an
evaluation when its item is pulled, so a process never holds claims on work it is not running and
concurrent searches on one folder share the work at the grain of single evaluations.

Parallel workers on one machine share its cores: each evaluation runs with at most
`cores // concurrent evaluations` torch threads (`ThreadLimited`), so that jobs x threads never exceeds
the cores (over-subscribed threads slow every job down). The serial executor keeps torch's default.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, TypeVar

from ..errors import UserError

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    def map_unordered(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Apply `function` to every item, yielding each result as soon as it is ready."""


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform says, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_per_job(n_jobs: int, cores: int | None = None) -> int:
    """Torch threads for each of `n_jobs` concurrent evaluations (n_jobs < 1: one per core)."""
    cores = cores or available_cores()
    jobs = cores if n_jobs < 1 else n_jobs
    return max(1, cores // jobs)


def _concurrent_here(n_jobs: int) -> int:
    """Evaluations running at once in this worker's machine: the Dask worker's thread count when this
    is a Dask worker, else `n_jobs`."""
    if "distributed" in sys.modules:
        try:
            from distributed import get_worker

            worker = get_worker()
            return getattr(getattr(worker, "state", worker), "nthreads", n_jobs)
        except (ImportError, ValueError, AttributeError):
            pass
    return n_jobs


@dataclass
class ThreadLimited:
    """`function`, run in a worker process with `threads_per_job` torch threads. Picklable."""

    function: Callable
    n_jobs: int

    def __call__(self, item):
        threads = threads_per_job(_concurrent_here(self.n_jobs))
        if "torch" in sys.modules:
            import torch

            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        else:  # read by torch when the evaluation first imports it
            for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[name] = str(threads)
        return self.function(item)


@dataclass
class SerialExecutor:
    """Everything in this process, in order. The evaluator's state is loaded once here."""

    def map_unordered(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        for item in items:
            yield function(item)


def _joblib_generator(function: Callable[[T], R], items: Iterable[T], n_jobs: int,
                      backend: str, backend_params: Mapping[str, Any]) -> Iterator[R]:
    import joblib

    if isinstance(items, (list, tuple)) and not items:
        return
    # The backend is bound when Parallel is built, so the config context can end before we
    # start yielding (and never leaks into the caller while this generator is suspended).
    with joblib.parallel_config(backend=backend, n_jobs=n_jobs, **backend_params):
        parallel = joblib.Parallel(return_as="generator_unordered", batch_size=1,
                                   pre_dispatch="2*n_jobs")
    limited = ThreadLimited(function, n_jobs) if n_jobs != 1 else function  # n_jobs=1 runs in this process
    yield from parallel(joblib.delayed(limited)(item) for item in items)


@dataclass
class JoblibExecutor:
    """Local worker processes through joblib (loky by default). Each worker process keeps its
    `LazyEvaluator` state across tasks, so a model is loaded once per worker."""

    n_jobs: int = -1
    backend: str = "loky"

    def map_unordered(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        return _joblib_generator(function, items, self.n_jobs, self.backend, {})


def _dask_generator(client, function: Callable[[T], R], items: Iterable[T], in_flight: int) -> Iterator[R]:
    """Keep `in_flight` items running on the cluster, submitting the next as each finishes, and yield
    results as they finish. (joblib's Dask backend would run everything in this process when the
    cluster has a single worker thread.)"""
    from distributed import as_completed

    iterator = iter(items)
    futures = []
    limited = ThreadLimited(function, in_flight)

    def submit_next():
        for item in iterator:
            futures.append(client.submit(limited, item, pure=False))
            return futures[-1]
        return None

    try:
        first = [future for future in (submit_next() for _ in range(max(1, in_flight))) if future is not None]
        if not first:
            return
        with client.as_current():
            completed = as_completed(first)
        for future in completed:
            result = future.result()
            following = submit_next()
            if following is not None:
                completed.add(following)
            yield result
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

    def map_unordered(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
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
            # One item per worker thread of the cluster (more when n_jobs asks for more).
            in_flight = max(self.n_jobs, sum(client.nthreads().values()), 1)
            yield from _dask_generator(client, function, items, in_flight)
        finally:
            if own_client:
                client.close()


@dataclass
class RayExecutor:
    """A Ray cluster through ray's joblib backend (ray is optional and imported only here)."""

    address: str | None = None
    n_jobs: int = -1

    def map_unordered(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
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
