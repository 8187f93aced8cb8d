"""Identity and ranking of evaluations: canonical JSON, the hashes that name candidates and
configurations, the `Evaluation` row, and the per-candidate aggregate that ranks them.

Ranking is by the dev metric, then by a continuous dev score (the mean log-probability of the gold
class, or minus the squared error for regression), then by candidate id. On a 32-example dev split
accuracies tie often; the continuous score separates such ties by how confidently each candidate is
right, where the id (a hash) would pick at random. Rows written before the score existed have none
and rank below those that have it on a tie.
"""
from __future__ import annotations

import hashlib
import json
import math
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from typing import Any, Iterable, Iterator, Mapping

from ..errors import UserError

_VERSIONED_PACKAGES = ("autoprompt_search", "torch", "transformers", "tokenizers", "numpy")

# Keys of `Evaluation.extra` (the row's extra_json) written by the evaluator.
PREDICTIONS = "predictions"        # per-example labels and class scores; moved to their own table, not stored here
DEV_SCORE = "dev_score"            # continuous dev score, higher is better
DEV_SCORE_KIND = "dev_score_kind"  # what it is: "mean_gold_logprob" or "neg_mse"
EXAMPLES = "examples"              # {"dev": n, "test": n}: how many examples each metric was computed on
RESIDENT_MB = "resident_mb"        # {"peak": MB, "end": MB}: the process's resident set during / after the evaluation


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
    # Per-example predictions {split: {"labels": [...], "scores": [[...]]}} of a result just computed, on
    # their way to the leaderboard's predictions table (not part of the row; None on rows read back).
    predictions: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def failed(self) -> bool:
        return self.state == "FAIL"

    @property
    def dev_score(self) -> float | None:
        """The continuous dev score stored with the row; None for rows without one (older files)."""
        return finite_or_none(self.extra.get(DEV_SCORE))

    def examples(self, split: str) -> int | None:
        """How many `split` ("dev"/"test") examples this row's metric was computed on, if recorded."""
        sizes = self.extra.get(EXAMPLES)
        value = sizes.get(split) if isinstance(sizes, Mapping) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def finite_or_none(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def mean_score(values: list[float | None]) -> float | None:
    """Mean of per-seed continuous scores; None when any is missing (a partial mean would not be
    comparable). `math.fsum` makes it independent of the order the rows came in."""
    if not values or any(v is None for v in values):
        return None
    return math.fsum(values) / len(values)


def score_sort_key(value: float | None) -> float:
    """Ascending sort key of a continuous score, best first; missing ranks last."""
    return math.inf if value is None else -value


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
    mean_dev_score: float | None = None   # mean continuous dev score over seeds; None if any row lacks it
    dev_examples: tuple[int, ...] = ()    # distinct dev split sizes the dev metric was computed on
    test_examples: tuple[int, ...] = ()   # likewise for the test metric

    def __iter__(self) -> Iterator[Any]:
        # Lets callers unpack (candidate, mean dev, std dev, n seeds, mean test).
        return iter((self.candidate, self.mean_dev, self.std_dev, self.n_seeds, self.mean_test))


def _metric_sort_key(value: float) -> float:
    """Higher is better for every metric we use; NaN (undefined metric) ranks last."""
    return -math.inf if value is None or math.isnan(value) else value


def rank_key(entry: RankedCandidate) -> tuple[float, float, str]:
    """Sort key, best first: higher mean dev metric, then higher continuous dev score (missing
    last), then candidate id (only when both tie, so the order is still deterministic)."""
    return (-_metric_sort_key(entry.mean_dev), score_sort_key(entry.mean_dev_score), entry.candidate_id)


def with_entries(ranking: Iterable[RankedCandidate], entries: Iterable[RankedCandidate]) -> list[RankedCandidate]:
    """A ranking with more entries (an entry replaces the one of the same candidate), best first."""
    by_id = {entry.candidate_id: entry for entry in ranking}
    for entry in entries:
        by_id[entry.candidate_id] = entry
    return sorted(by_id.values(), key=rank_key)


def aggregate(evaluations: list[Evaluation]) -> RankedCandidate:
    """Mean/std of the dev metric and mean test metric over the seeds of one candidate."""
    devs = [e.dev_metric for e in evaluations]
    tests = [e.test_metric for e in evaluations if e.test_metric is not None]
    first = evaluations[0]
    ordered = sorted(evaluations, key=lambda e: e.seed)
    return RankedCandidate(
        candidate=first.candidate,
        candidate_id=first.candidate_id,
        mean_dev=statistics.fmean(devs),
        # Population std over seeds, as LM-BFF reports it.
        std_dev=statistics.pstdev(devs) if len(devs) > 1 else 0.0,
        n_seeds=len({e.seed for e in evaluations}),
        mean_test=statistics.fmean(tests) if tests else None,
        budget=first.budget,
        mean_dev_score=mean_score([e.dev_score for e in ordered]),
        dev_examples=_sizes(evaluations, "dev"),
        test_examples=_sizes([e for e in evaluations if e.test_metric is not None], "test"),
    )


def _sizes(evaluations: list[Evaluation], split: str) -> tuple[int, ...]:
    return tuple(sorted({n for e in evaluations if (n := e.examples(split)) is not None}))


def describe_candidate(candidate: Mapping[str, Any]) -> str:
    """One-line summary: template, label words and any other fields, in that order; an ensemble
    (`{"ensemble": [members]}`) as its size and its members' ids."""
    members = candidate.get("ensemble")
    if isinstance(members, list):
        return f"ensemble of {len(members)}: " + " + ".join(
            candidate_id(m)[:10] if isinstance(m, Mapping) else "?" for m in members)
    parts = []
    if "template" in candidate:
        parts.append(str(candidate["template"]))
    words = candidate.get("label_words")
    if isinstance(words, Mapping):
        parts.append(" ".join(f"{label}:{'|'.join(map(str, word)) if isinstance(word, list) else word}"
                              for label, word in words.items()))  # several words per class: a|b
    elif words is not None:
        parts.append(canonical_json(words))
    rest = {k: v for k, v in candidate.items() if k not in ("template", "label_words")}
    if rest:
        parts.append(canonical_json(rest))
    return "  ".join(parts)
