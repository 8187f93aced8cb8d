"""Evaluation metrics of the LM-BFF tasks: accuracy, binary F1, Matthews correlation, Pearson/Spearman.

Every function returns a plain float and never NaN: degenerate inputs (a constant prediction, a
single class) give 0.0, which is what "no correlation / no skill" means for these scores.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

from ..errors import UserError
from ..tasks import TaskSpec, get_task


def _check_lengths(predictions: Sequence, golds: Sequence) -> None:
    if len(predictions) != len(golds):
        raise UserError(f"got {len(predictions)} predictions for {len(golds)} gold labels; expected equal counts")
    if len(golds) == 0:
        raise UserError("cannot compute a metric over zero examples")


def accuracy(predictions: Sequence, golds: Sequence) -> float:
    _check_lengths(predictions, golds)
    return float(np.mean([p == g for p, g in zip(predictions, golds)]))


def f1(predictions: Sequence, golds: Sequence, positive=1) -> float:
    """Binary F1 of the positive class (LM-BFF: label index 1). 0.0 when there are no true positives."""
    _check_lengths(predictions, golds)
    predicted = np.array([p == positive for p in predictions])
    actual = np.array([g == positive for g in golds])
    true_positives = int(np.sum(predicted & actual))
    if true_positives == 0:
        return 0.0
    precision = true_positives / int(np.sum(predicted))
    recall = true_positives / int(np.sum(actual))
    return float(2 * precision * recall / (precision + recall))


def matthews_corrcoef(predictions: Sequence, golds: Sequence) -> float:
    """Multi-class Matthews correlation (Gorodkin's R_K, as in scikit-learn); 0.0 when undefined."""
    _check_lengths(predictions, golds)
    classes = sorted({*map(repr, predictions), *map(repr, golds)})
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    for p, g in zip(predictions, golds):
        confusion[index[repr(g)], index[repr(p)]] += 1
    total = confusion.sum()
    correct = np.trace(confusion)
    true_counts = confusion.sum(axis=1)
    predicted_counts = confusion.sum(axis=0)
    numerator = correct * total - true_counts @ predicted_counts
    denominator = np.sqrt((total**2 - predicted_counts @ predicted_counts) * (total**2 - true_counts @ true_counts))
    return float(numerator / denominator) if denominator > 0 else 0.0


def _as_floats(values: Sequence, what: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise UserError(f"{what} must be numbers for a correlation metric: {error}") from None


def _correlation(function, predictions: Sequence, golds: Sequence) -> float:
    _check_lengths(predictions, golds)
    x, y = _as_floats(predictions, "predictions"), _as_floats(golds, "gold labels")
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    value = function(x, y)[0]
    return 0.0 if np.isnan(value) else float(value)


def pearson(predictions: Sequence, golds: Sequence) -> float:
    return _correlation(stats.pearsonr, predictions, golds)


def spearman(predictions: Sequence, golds: Sequence) -> float:
    return _correlation(stats.spearmanr, predictions, golds)


def _class_indices(task: TaskSpec, values: Sequence, what: str) -> list[int]:
    """Accept label strings ("entailment", "1") or class indices; return class indices."""
    indices = []
    for value in values:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and str(value) not in task.labels:
            if not 0 <= int(value) < task.num_classes:
                raise UserError(f"{what}: class index {value} out of range for task {task.name} "
                                f"({task.num_classes} classes)")
            indices.append(int(value))
        else:
            indices.append(task.label_index(value))
    return indices


def compute_metrics(task: TaskSpec | str, predictions: Sequence, golds: Sequence) -> dict[str, float]:
    """All metrics relevant to the task; the task's main metric is under the key `task.metric`.

    Classification: predictions/golds are label strings or class indices; the dict always has "acc".
    Regression (STS-B): floats; the dict has "pearson" (main) and "spearman".
    """
    task = get_task(task)
    if task.is_regression:
        return {"pearson": pearson(predictions, golds), "spearman": spearman(predictions, golds)}
    predicted = _class_indices(task, predictions, "predictions")
    gold = _class_indices(task, golds, "gold labels")
    results = {"acc": accuracy(predicted, gold)}
    if task.metric == "f1":
        results["f1"] = f1(predicted, gold, positive=1)
    elif task.metric == "mcc":
        results["mcc"] = matthews_corrcoef(predicted, gold)
    elif task.metric == "pearson":
        results["pearson"] = pearson(predicted, gold)
    return results


def compute_metric(task: TaskSpec | str, predictions: Sequence, golds: Sequence) -> float:
    """The task's main metric only."""
    task = get_task(task)
    return compute_metrics(task, predictions, golds)[task.metric]
