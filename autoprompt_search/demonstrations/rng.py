"""Deterministic randomness for demonstrations: generators that depend only on a seed and a query's
text, so a query's draws never depend on which other queries are processed, in which order or batches.

`inference_rng(seed, sample, query)` seeds the demonstration draw of one query's `sample`-th set at
evaluation; `shuffled` and `uniform_index` work with either `random.Random` or a numpy generator.
"""
from __future__ import annotations

import hashlib
import random
from typing import Sequence

import numpy as np

from ..tasks import Example

RandomSource = random.Random | np.random.Generator


def query_key(query: Example) -> str:
    """A stable identifier of a query's text (labels are not part of it)."""
    return hashlib.sha256("\x1f".join(query.texts).encode("utf-8")).hexdigest()


def query_rng(seed: int, query: Example, purpose: str = "inference") -> np.random.Generator:
    """A generator that depends only on (seed, the query's text, purpose), never on processing order."""
    digest = hashlib.sha256(f"{purpose}\x1e{query_key(query)}".encode("utf-8")).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *words])))


def inference_rng(seed: int, sample: int, query: Example) -> random.Random:
    """The generator for a query's `sample`-th demonstration set at evaluation: a function of
    (seed, sample, the query's text) only, so the set does not depend on which other queries are
    evaluated, in which order or batches."""
    return random.Random(f"{int(seed)}\x1e{int(sample)}\x1e{query_key(query)}")


def uniform_index(rng: RandomSource, size: int) -> int:
    if isinstance(rng, random.Random):
        return rng.randrange(size)
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(size))
    raise TypeError(f"rng must be random.Random or numpy.random.Generator, got {type(rng).__name__}")


def shuffled(items: Sequence[int], rng: RandomSource) -> list[int]:
    items = list(items)
    for position in range(len(items) - 1, 0, -1):  # Fisher-Yates, with either kind of generator
        other = uniform_index(rng, position + 1)
        items[position], items[other] = items[other], items[position]
    return items
