"""Step 2, Pearson (regression, two poles): vectorised enumeration and scoring of all pairs."""
from __future__ import annotations

import numpy as np

from .results import Assignment


def _pearson_rows(predictions: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of `predictions` [P, N] with `gold` [N]; 0.0 where undefined
    (a constant row or constant gold), as in metrics.pearson."""
    centred = predictions - predictions.mean(axis=1, keepdims=True)
    gold_centred = gold - gold.mean()
    numerator = centred @ gold_centred
    denominator = np.sqrt((centred ** 2).sum(axis=1) * (gold_centred ** 2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = numerator / denominator
    return np.where(denominator > 0, correlation, 0.0)


def _high_pole_probability(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """p(high) under a softmax over the two words' log-probabilities (inputs [..., N])."""
    with np.errstate(invalid="ignore", over="ignore"):
        p = 1.0 / (1.0 + np.exp(low - high))
    return np.nan_to_num(p, nan=0.5)  # both words at -inf: no preference


def _pearson_scores(logprobs: np.ndarray, gold: np.ndarray, candidates: list[list[int]],
                    pairs: np.ndarray) -> np.ndarray:
    low = logprobs[:, np.asarray(candidates[0])[pairs[:, 0]]].T  # [P, N]
    high = logprobs[:, np.asarray(candidates[1])[pairs[:, 1]]].T
    return _pearson_rows(_high_pole_probability(low, high), gold)


def _top_pearson(logprobs: np.ndarray, gold: np.ndarray, candidates: list[list[int]], n: int,
                 chunk: int = 4096) -> list[Assignment]:
    low_ids, high_ids = (np.asarray(c, dtype=np.int64) for c in candidates)
    grid = np.stack(np.meshgrid(np.arange(len(low_ids)), np.arange(len(high_ids)), indexing="ij"), -1).reshape(-1, 2)
    grid = grid[low_ids[grid[:, 0]] != high_ids[grid[:, 1]]]
    scores = np.concatenate([_pearson_scores(logprobs, gold, candidates, grid[s:s + chunk])
                             for s in range(0, len(grid), chunk)]) if len(grid) else np.zeros(0)
    order = np.lexsort((grid[:, 1], grid[:, 0], -scores))[:n]
    return [Assignment((int(low_ids[grid[j, 0]]), int(high_ids[grid[j, 1]])), float(scores[j]),
                       (int(grid[j, 0]), int(grid[j, 1])))
            for j in order]
