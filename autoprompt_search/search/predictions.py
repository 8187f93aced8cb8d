"""Per-example predictions of stored evaluations: the leaderboard's `predictions` table (schema version 3).

The evaluator returns, with each result, the gold labels and the [N, C] log-space class scores of every
split it scored; they are stored beside the evaluation's row, in the transaction that stores the row, so
that an ensemble of candidates can be scored from what the search already computed (`ensemble.py`).
Rows written before version 3 have none.
"""
from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .leaderboard import Leaderboard
from .records import Evaluation


@dataclass(frozen=True)
class SplitPredictions:
    """One split of one evaluation: gold labels (class names, or floats for regression; None when
    unknown) and the class scores, in the order the examples were scored."""

    labels: tuple[Any, ...]
    scores: np.ndarray  # [N, C] log-space class scores

    def __post_init__(self) -> None:
        if self.scores.ndim != 2 or self.scores.shape[0] != len(self.labels):
            raise ValueError(f"predictions: expected [N, C] scores for {len(self.labels)} labels, "
                             f"got shape {self.scores.shape}")


def gold_log_probabilities(task, scores, labels: Sequence[Any]) -> np.ndarray:
    """log-softmax of each example's class scores [N, C] at its gold label: the per-example term of the
    continuous dev score and of the paired log-probability test (selection.py)."""
    scores = np.asarray(scores, dtype=np.float64)
    top = scores.max(axis=1, keepdims=True)
    log_probs = scores - (top + np.log(np.exp(scores - top).sum(axis=1, keepdims=True)))
    gold = np.asarray([task.label_index(label) for label in labels])
    return log_probs[np.arange(len(gold)), gold]


def predictions_payload(labels: Sequence[Any], scores: np.ndarray) -> dict[str, Any]:
    """What the evaluator puts in `EvalOutcome.extra["predictions"][split]`."""
    return {"labels": list(labels),
            "scores": np.asarray(scores, dtype=np.float64).tolist()}


def _plain_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def store_predictions(connection: sqlite3.Connection, evaluation: Evaluation) -> None:
    """Write `evaluation.predictions` (one row per split) inside the caller's transaction."""
    for split, payload in sorted((evaluation.predictions or {}).items()):
        scores = [[_plain_float(float(v)) for v in row] for row in payload["scores"]]
        connection.execute(
            "INSERT OR REPLACE INTO predictions (config_hash, candidate_id, seed, budget, split, labels_json, "
            "scores_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (evaluation.config_hash, evaluation.candidate_id, int(evaluation.seed), int(evaluation.budget), split,
             json.dumps(list(payload["labels"]), ensure_ascii=False, separators=(",", ":")),
             json.dumps(scores, separators=(",", ":"))))


def load_predictions(leaderboard: Leaderboard, config_hash: str, candidate_id: str, seed: int,
                     budget: int) -> dict[str, SplitPredictions]:
    """The stored predictions of one evaluation by split; {} when none were stored (older rows)."""
    with leaderboard.transaction() as connection:
        rows = connection.execute(
            "SELECT split, labels_json, scores_json FROM predictions WHERE config_hash = ? AND candidate_id = ? "
            "AND seed = ? AND budget = ?", (config_hash, candidate_id, int(seed), int(budget))).fetchall()
    found = {}
    for split, labels_json, scores_json in rows:
        scores = np.asarray([[math.nan if v is None else v for v in row] for row in json.loads(scores_json)],
                            dtype=np.float64)
        labels = json.loads(labels_json)
        found[split] = SplitPredictions(tuple(labels), scores.reshape(len(labels), -1))
    return found

