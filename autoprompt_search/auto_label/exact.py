"""Step 2's public entry points: the exact top-n assignments, plain scoring, and the brute-force reference.

Order of results: higher score first; equal scores by the tuple of per-class candidate ranks,
lexicographically (rank 0 = a class's most likely candidate). `brute_force_top_assignments` uses the
same scoring and order and is the reference the tests and the benchmark compare against.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from ..errors import UserError
from .branch_and_bound import _AccuracyBranchAndBound
from .inputs import _as_gold_scores, _as_numpy_labels, _as_numpy_logprobs, _check_candidates
from .pearson import _pearson_scores, _top_pearson
from .results import Assignment

METRICS = ("acc", "pearson")


def _check_search_arguments(logprobs, labels, candidates, n: int, metric: str):
    if metric not in METRICS:
        raise UserError(f"unknown label-search metric {metric!r}; expected one of {METRICS}")
    if n < 1:
        raise UserError(f"n (assignments to keep) must be at least 1, got {n}")
    matrix = _as_numpy_logprobs(logprobs)
    checked = _check_candidates(candidates, matrix.shape[1])
    if metric == "pearson":
        if len(checked) != 2:
            raise UserError(f"the Pearson metric scores two poles (low, high); got {len(checked)} candidate lists")
        return matrix, _as_gold_scores(labels, matrix.shape[0]), checked
    return matrix, _as_numpy_labels(labels, matrix.shape[0], len(checked)), checked


def top_assignments(logprobs, labels, candidates: Sequence[Sequence[int]], n: int, metric: str = "acc", *,
                    progress: bool = False, stats: dict | None = None) -> list[Assignment]:
    """The exact top-n assignments (one candidate per class, no word shared by two classes).

    metric "acc": `labels` are class indices [N]; score = zero-shot training accuracy (a tie between
    the gold word and another class's word counts as wrong), found by branch and bound.
    metric "pearson": `labels` are gold scores [N] and `candidates` = [low pole, high pole]; score =
    Pearson correlation of p(high) with the gold scores, over all pairs (k^2, vectorised).
    Order: score descending, then per-class candidate ranks ascending. Fewer than n valid assignments:
    all of them. `stats`, if given, receives counts of the work done (nodes expanded, bounds or
    assignments scored)."""
    matrix, gold, checked = _check_search_arguments(logprobs, labels, candidates, n, metric)
    if metric == "pearson":
        result = _top_pearson(matrix, gold, checked, n)
        if stats is not None:
            stats.update(pairs_enumerated=len(checked[0]) * len(checked[1]))
        return result
    search = _AccuracyBranchAndBound(matrix, gold, checked)
    result = search.run(n, progress=progress)
    if stats is not None:
        stats.update(nodes_expanded=search.expanded, bounds_computed=search.bounded)
    return result


def _accuracy_of_rank_tuples(matrix: np.ndarray, gold: np.ndarray, candidates: list[list[int]],
                             rank_tuples: np.ndarray) -> np.ndarray:
    """Number of training examples right for each assignment, given as rows of ranks [P, C]."""
    token_table = [np.asarray(c, dtype=np.int64) for c in candidates]
    tokens = np.stack([token_table[c][rank_tuples[:, c]] for c in range(len(candidates))], axis=1)  # [P, C]
    values = matrix[:, tokens]  # [N, P, C]
    gold_values = np.take_along_axis(values, gold[:, None, None].repeat(values.shape[1], 1), axis=2)[..., 0]
    others = values.copy()
    np.put_along_axis(others, gold[:, None, None].repeat(values.shape[1], 1), -np.inf, axis=2)
    return (gold_values > others.max(axis=2)).sum(axis=0)


def score_assignments(logprobs, labels, candidates: Sequence[Sequence[int]], rank_tuples,
                      metric: str = "acc") -> np.ndarray:
    """Scores of the given assignments (rows of per-class ranks), by plain evaluation: the fraction of
    training examples right for "acc", the Pearson correlation for "pearson"."""
    matrix, gold, checked = _check_search_arguments(logprobs, labels, candidates, 1, metric)
    ranks = np.asarray(rank_tuples, dtype=np.int64).reshape(-1, len(checked))
    if metric == "pearson":
        return _pearson_scores(matrix, gold, checked, ranks)
    return _accuracy_of_rank_tuples(matrix, gold, checked, ranks) / matrix.shape[0]


def brute_force_top_assignments(logprobs, labels, candidates: Sequence[Sequence[int]], n: int,
                                metric: str = "acc", chunk: int = 2048) -> list[Assignment]:
    """Reference: score every assignment of the product (itertools.product, in chunks), keep the top n
    in the same order as `top_assignments`. Feasible only for small k^C."""
    matrix, gold, checked = _check_search_arguments(logprobs, labels, candidates, n, metric)
    best: list[tuple] = []  # (sort key, Assignment)
    product = itertools.product(*(range(len(c)) for c in checked))
    while raw := list(itertools.islice(product, chunk)):
        block = [r for r in raw if len({checked[c][rank] for c, rank in enumerate(r)}) == len(r)]
        if not block:
            continue
        ranks = np.asarray(block, dtype=np.int64)
        if metric == "pearson":
            scores = _pearson_scores(matrix, gold, checked, ranks)
            found = [Assignment((checked[0][r[0]], checked[1][r[1]]), float(s), tuple(r)) for r, s in zip(block, scores)]
        else:
            correct = _accuracy_of_rank_tuples(matrix, gold, checked, ranks)
            found = [Assignment(tuple(checked[c][rank] for c, rank in enumerate(r)), int(k) / matrix.shape[0],
                                tuple(r), int(k)) for r, k in zip(block, correct)]
        best.extend((-a.score, a.ranks, a) for a in found)
        best = sorted(best, key=lambda item: item[:2])[:n]
    return [a for _, _, a in best]
