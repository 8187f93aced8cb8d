"""The class a demonstration stands for, and the training examples grouped by class.

Regression (STS-B): LM-BFF splits the training examples into two poles at the task's "median",
2.5 for STS-B (score <= 2.5 -> class "0" / low, above -> class "1" / high). We use the midpoint of
the task's `regression_range` (2.5 for STS-B's 0..5), overridable with `regression_threshold`.
`class_index(task, example)` tells a renderer which label word a demonstration gets.
"""
from __future__ import annotations

from typing import Sequence

from ..errors import UserError
from ..tasks import Example, TaskSpec


def regression_threshold(task: TaskSpec) -> float:
    """Where a regression task splits into its low ("0") and high ("1") poles: the range's midpoint."""
    low, high = task.regression_range  # type: ignore[misc]
    return (low + high) / 2.0


def class_index(task: TaskSpec, example: Example, threshold: float | None = None) -> int:
    """The class a demonstration stands for; for regression the pole (score <= threshold -> 0)."""
    if example.label is None:
        raise UserError(f"task {task.name}: a demonstration needs a label, got an unlabelled example {example.texts!r}")
    if task.is_regression:
        cut = regression_threshold(task) if threshold is None else threshold
        try:
            return 0 if float(example.label) <= cut else 1
        except (TypeError, ValueError):
            raise UserError(f"task {task.name}: expected a numeric score, got {example.label!r}") from None
    return task.label_index(example.label)


def group_by_class(examples: Sequence[Example], task: TaskSpec, threshold: float | None = None) -> list[list[int]]:
    """Indices of the examples of each class, in class order (regression: low pole, high pole)."""
    groups: list[list[int]] = [[] for _ in range(task.num_classes)]
    for index, example in enumerate(examples):
        groups[class_index(task, example, threshold)].append(index)
    return groups
