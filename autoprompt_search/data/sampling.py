"""LM-BFF's k-shot sampler and the seeded random subset of a split.

The sampler reproduces LM-BFF's `tools/generate_k_shot_data.py`: numpy's legacy global RNG is seeded,
the original training rows are shuffled, rows are grouped by label in order of first appearance,
the first k of each group form `train` and the next k form `dev`; `test` is the original
test file (GLUE: the original dev file).
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np

from ..errors import UserError
from ..tasks import Example, TaskSpec
from .layout import _layout

# LM-BFF's default --seed order. It matters for CoLA: its file has no header, so the script shuffles
# the loaded list itself in place and every seed's shuffle starts from the previous seed's order.
LMBFF_SEED_ORDER = (100, 13, 21, 42, 87)


def _sampling_group(task: TaskSpec, example: Example) -> str:
    if task.is_regression:  # LM-BFF balances STS-B on the score cut at 2.5
        return "0" if float(example.label) < 2.5 else "1"  # type: ignore[arg-type]
    return str(example.label)


def sample_balanced(task: TaskSpec, examples: Sequence[Example], k: int,
                    seeds: Sequence[int]) -> tuple[list[Example], list[Example]]:
    """LM-BFF's sampler: shuffle (once per seed, in order), then k per label for train, the next k for dev.

    Groups appear in the order their label first occurs in the shuffled rows, as in LM-BFF's output files.
    """
    if k < 1:
        raise UserError(f"k must be a positive number of examples per class, got {k}")
    rows = list(examples)
    for seed in seeds:
        np.random.RandomState(seed).shuffle(rows)  # same stream as np.random.seed(seed); np.random.shuffle
    groups: dict[str, list[Example]] = {}
    for example in rows:
        groups.setdefault(_sampling_group(task, example), []).append(example)
    train = [example for group in groups.values() for example in group[:k]]
    dev = [example for group in groups.values() for example in group[k:2 * k]]
    return train, dev


def lmbff_shuffle_seeds(task: TaskSpec, seed: int) -> tuple[int, ...]:
    """The shuffles LM-BFF applied for this seed: a chain of the default seeds for header-less tsv files."""
    layout = _layout(task)
    chained = layout.extension == "tsv" and not layout.has_header
    if chained and seed in LMBFF_SEED_ORDER:
        return LMBFF_SEED_ORDER[: LMBFF_SEED_ORDER.index(seed) + 1]
    return (seed,)


def limit_examples(examples: Sequence[Example], limit: int | None, *, seed: int = 0) -> list[Example]:
    """At most `limit` examples drawn at random (seeded), in their original order. The head of a file
    is no sample: LM-BFF's MR and CR test files, for instance, list every negative review first."""
    if limit is None or limit >= len(examples):
        return list(examples)
    if limit < 1:
        raise UserError(f"test limit must be at least 1, got {limit}")
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]
