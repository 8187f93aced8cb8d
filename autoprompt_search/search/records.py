"""Identity and ranking of evaluations: canonical JSON, the hashes that name candidates and
configurations, the `Evaluation` row, and the per-candidate aggregate that ranks them.
"""
from __future__ import annotations

import hashlib
import json
import math
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from typing import Any, Iterator, Mapping

from ..errors import UserError

_VERSIONED_PACKAGES = ("autoprompt_search", "torch", "transformers", "tokenizers", "numpy")


# ---------------------------------------------------------------------------------------------
# Hashing helpers


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values always give equal text."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError) as error:
        raise UserError(f"value is not plain JSON (dicts, lists, strings, finite numbers): {error}")


def sha256_of(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def candidate_id(candidate: Mapping[str, Any]) -> str:
    """Stable id of a candidate (template, label words, demonstration mode): sha256 of its JSON."""
    return sha256_of(candidate)


def config_hash(config: Mapping[str, Any]) -> str:
    """Hash of the full search configuration; results are only reused under the same hash."""
    return sha256_of(config)


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Versions of the packages that influence a result (read from metadata; nothing imported)."""
    import platform

    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


# ---------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True)
class Evaluation:
    """One stored evaluation of one candidate on one seed at one budget (training steps)."""

    config_hash: str
    candidate_id: str
    candidate: dict[str, Any]
    seed: int
    budget: int
    rung: int
    dev_metric: float
    test_metric: float | None = None
    dev_metrics: dict[str, Any] = field(default_factory=dict)
    test_metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    wall_time_s: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    # "COMPLETE", or "FAIL" when the evaluation raised: then `error` is its one-line message, the metrics
    # are empty and the row only says "do not try this again" (unless the search is told to retry).
    state: str = "COMPLETE"
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.state == "FAIL"


@dataclass(frozen=True)
class RankedCandidate:
    """A candidate's aggregate over seeds at one budget."""

    candidate: dict[str, Any]
    candidate_id: str
    mean_dev: float
    std_dev: float
    n_seeds: int
    mean_test: float | None
    budget: int

    def __iter__(self) -> Iterator[Any]:
        # Lets callers unpack (candidate, mean dev, std dev, n seeds, mean test).
        return iter((self.candidate, self.mean_dev, self.std_dev, self.n_seeds, self.mean_test))


def _metric_sort_key(value: float) -> float:
    """Higher is better for every metric we use; NaN (undefined metric) ranks last."""
    return -math.inf if value is None or math.isnan(value) else value


def rank_key(entry: RankedCandidate) -> tuple[float, str]:
    """Sort key, best first: higher mean dev metric, then candidate id (deterministic ties)."""
    return (-_metric_sort_key(entry.mean_dev), entry.candidate_id)


def aggregate(evaluations: list[Evaluation]) -> RankedCandidate:
    """Mean/std of the dev metric and mean test metric over the seeds of one candidate."""
    devs = [e.dev_metric for e in evaluations]
    tests = [e.test_metric for e in evaluations if e.test_metric is not None]
    first = evaluations[0]
    return RankedCandidate(
        candidate=first.candidate,
        candidate_id=first.candidate_id,
        mean_dev=statistics.fmean(devs),
        # Population std over seeds, as LM-BFF reports it.
        std_dev=statistics.pstdev(devs) if len(devs) > 1 else 0.0,
        n_seeds=len({e.seed for e in evaluations}),
        mean_test=statistics.fmean(tests) if tests else None,
        budget=first.budget,
    )


def describe_candidate(candidate: Mapping[str, Any]) -> str:
    """One-line summary: template, label words and any other fields, in that order."""
    parts = []
    if "template" in candidate:
        parts.append(str(candidate["template"]))
    words = candidate.get("label_words")
    if isinstance(words, Mapping):
        parts.append(" ".join(f"{label}:{word}" for label, word in words.items()))
    elif words is not None:
        parts.append(canonical_json(words))
    rest = {k: v for k, v in candidate.items() if k not in ("template", "label_words")}
    if rest:
        parts.append(canonical_json(rest))
    return "  ".join(parts)
