"""Splitting a training batch into micro-batches of similar length, so that little compute goes to padding.

A batch of 8 random training prompts is padded to its longest prompt; on SST-2 about 44% of a step's
FLOPs went to padding (results/speed.md). The gradient of the batch's mean loss is the sum of the
micro-batches' gradients of (their summed loss / batch size), so splitting changes which tokens are
computed, not what is learned (up to floating-point rounding). Each extra micro-batch costs one more
pass through the layers, which `overhead_tokens` prices in padded-token equivalents.
"""
from __future__ import annotations

from typing import Sequence

# The cost of one more pass, in padded tokens. Chosen from `bench_speed.py --micro-batching --overheads
# off 0 24 64` (results/speed_micro_batches.md): 24 gave 0.86x without demonstrations and 1.05x (noise
# level) with them; a pass writes weight-sized gradients, so the true cost is larger on bigger models.
DEFAULT_OVERHEAD_TOKENS = 24
# Under bf16 autocast every pass also casts every weight to bf16 again (autocast's copies live for one
# context), while a token costs less: 24 and 64 were 1.09-1.30x slower than one padded batch, 128 was
# 0.87x / 0.93x (results/speed_micro_batches_bf16.md, measured on a shared CPU).
BF16_OVERHEAD_TOKENS = 128


def overhead_tokens_for(precision: str) -> float:
    """The split price for a resolved precision ("fp32" or "bf16")."""
    return BF16_OVERHEAD_TOKENS if precision == "bf16" else DEFAULT_OVERHEAD_TOKENS


def plan_micro_batches(lengths: Sequence[int], overhead_tokens: float | None = DEFAULT_OVERHEAD_TOKENS,
                       max_tokens: int | None = None) -> list[list[int]]:
    """Groups of indices into `lengths`, each group padded to its own longest member, that minimise
    sum(group size x longest length) + overhead_tokens x number of groups. Sorted by length, the best
    groups are contiguous runs, found exactly by dynamic programming (O(n^2), n = batch size).
    `max_tokens`: no group of two or more pads to more tokens than this (a prompt longer than it runs
    alone), which bounds the activations one pass keeps for the backward pass; swapping members between
    two sorted groups keeps their sizes and lowers neither longest length, so runs stay optimal.
    `overhead_tokens=None`: no splitting for speed: one group in the original order, or under
    `max_tokens` the fewest groups that respect it."""
    if not lengths:
        return []
    if overhead_tokens is None:
        if max_tokens is None or len(lengths) * max(lengths) <= max_tokens:
            return [list(range(len(lengths)))]
        # Fewest groups first, then the least padding: one more group costs more than any padding.
        overhead_tokens = len(lengths) * max(lengths) + 1
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    sorted_lengths = [lengths[i] for i in order]
    n = len(order)
    # best[j]: the least cost of grouping the j shortest prompts; cut[j]: where its last group starts.
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        longest = sorted_lengths[end - 1]
        for start in range(end):
            size = end - start
            if max_tokens is not None and size > 1 and size * longest > max_tokens:
                continue
            cost = best[start] + size * longest + overhead_tokens
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups = []
    end = n
    while end > 0:
        groups.append(order[cut[end]:end])
        end = cut[end]
    return groups[::-1]


def padded_tokens(lengths: Sequence[int], groups: Sequence[Sequence[int]]) -> int:
    """Tokens computed when each group is padded to its longest member."""
    return sum(len(group) * max(lengths[i] for i in group) for group in groups if group)
