"""Step 2, accuracy: the last three classes of the branch and bound, where candidate lists that
overlap heavily make the per-group bound of `branch_and_bound` loose.

With two classes u, v left, every completion is scored exactly: one [k_u, k_v] table of popcounts.

With three classes u, v, w left, the bound keeps the conflicts between the open classes, which the
per-group bound drops (there, every open class may take its weakest word against the others'
examples and its strongest for its own). An example is right iff its class's word beats every
other word; with all but u, v, w fixed, that is an AND of conditions on pairs of open words:
  - an example of a fixed class (still right against the fixed words): a_u, a_v and a_w all lower
    than its word. The AND of three conditions is at most the mean of the three pairwise ANDs.
  - an example of class u (its word already beats the fixed words only where its bit is set in
    open_sets[u]): a_u beats a_v and a_w. The AND is at most the mean of (a_u beats a_v) and
    (a_u beats a_w).
Summing these gives phi_uv(a_u, a_v) + phi_uw + phi_vw >= the score of (a_u, a_v, a_w) (scaled by
_SCALE = 6 to stay in integers). The maximum of this triangle is in turn at most the sum of the
maxima of three chains, each holding half of every edge (a tree-reweighted bound, O(k^2)):
    phi_uv + phi_uw + phi_vw = 1/2 (phi_uv + phi_uw) + 1/2 (phi_uv + phi_vw) + 1/2 (phi_uw + phi_vw).
Clamping a_u in the three chains gives a bound for every word of u at once (the children's bounds).
Shared words (a_u == a_v) and words already taken by fixed classes are excluded in every phi.
"""
from __future__ import annotations

import numpy as np

_BITS = 64
_SCALE = 6  # phi is 6 x the relaxed count: fixed-class examples weigh 1/3 per pair, open-class ones 1/2
_EXCLUDED = -(1 << 40)  # phi of a pair that shares a word or uses a fixed class's word


def packed_columns(parts: list[np.ndarray], sizes: list[int]) -> list[np.ndarray]:
    """Per group of examples, its bit words (last axis); groups that fit in one word are packed together
    into shared words, so that later passes run over fewer words."""
    columns, shared, free_bits = [], None, 0
    for part, size in zip(parts, sizes):
        if part.shape[-1] > 1:
            columns.append(part)
        elif shared is not None and size <= free_bits:
            shared |= part << np.uint64(_BITS - free_bits)
            free_bits -= size
        else:
            shared = part.copy()
            columns.append(shared)
            free_bits = _BITS - size
    return columns


def _outer_popcount(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """[a, b] = number of set bits of left[a] & right[b] (left [A, W], right [B, W]), word by word:
    a reduction over a short last axis is far slower than W plain passes."""
    counts = np.zeros((left.shape[0], right.shape[0]), dtype=np.int64)
    for word in range(left.shape[1]):
        counts += np.bitwise_count(left[:, word, None] & right[None, :, word])
    return counts


def _fixed_bits(search, ranks, fixed, c: int) -> np.ndarray:
    """[k_c, sum of fixed groups' words]: for each candidate of open class c, the examples of the
    fixed classes still right that this candidate does not beat (concatenated over the groups)."""
    parts = [fixed[g][None, :] & search.beaten_by[g][c][ranks[g]] for g in range(len(ranks))]
    columns = packed_columns(parts, [search.group_sizes[g] for g in range(len(ranks))])
    return np.concatenate(columns, axis=1) if columns else np.zeros((len(search.candidates[c]), 0), dtype=np.uint64)


def _open_pair_table(search, u: int, v: int) -> tuple[np.ndarray, int | None]:
    """[k_u, k_v, W]: the examples of class u where a_u beats a_v and of class v where a_v beats a_u,
    in one bitset (class v's bits shifted above class u's when both fit in one word, else in words of
    their own), and the shift of class v's bits (None: own words). Built once per class pair."""
    tables = search.open_pair_tables
    if (u, v) not in tables:
        of_u, of_v = search.beaten_by[u][v], search.beats[v][u]
        if of_u.shape[2] == 1 and of_v.shape[2] == 1 and search.group_sizes[u] + search.group_sizes[v] <= _BITS:
            tables[(u, v)] = (of_u | (of_v << np.uint64(search.group_sizes[u])), search.group_sizes[u])
        else:
            tables[(u, v)] = (np.concatenate([of_u, of_v], axis=2), None)
    return tables[(u, v)]


def _open_pair_counts(search, open_sets, u: int, v: int) -> np.ndarray:
    """[k_u, k_v]: examples of class u where a_u beats the fixed words and a_v, plus those of class v
    where a_v beats the fixed words and a_u."""
    table, shift = _open_pair_table(search, u, v)
    if shift is None:
        rows = np.concatenate([open_sets[u], np.zeros((open_sets[u].shape[0], open_sets[v].shape[1]), np.uint64)], 1)
        columns = np.concatenate([np.zeros((open_sets[v].shape[0], open_sets[u].shape[1]), np.uint64), open_sets[v]], 1)
    else:
        rows, columns = open_sets[u], open_sets[v] << np.uint64(shift)
    counts = np.zeros(table.shape[:2], dtype=np.int64)
    for word in range(table.shape[2]):
        counts += np.bitwise_count(table[:, :, word] & (rows[:, word, None] | columns[None, :, word]))
    return counts


def _valid(search, u: int, v: int, used: set[int]) -> np.ndarray:
    valid = search.distinct_pairs[u][v].copy()
    for token in used:
        if (row := search.rows_of_token[u].get(token)) is not None:
            valid[row, :] = False
        if (column := search.rows_of_token[v].get(token)) is not None:
            valid[:, column] = False
    return valid


def exact_pair_scores(search, ranks, fixed, open_sets, used: set[int]) -> np.ndarray:
    """Scores of every completion of a node with the last two classes open: [k_u, k_v], -1 where the
    completion shares a word."""
    m = len(ranks)
    u, v = m, m + 1
    fixed_u, fixed_v = _fixed_bits(search, ranks, fixed, u), _fixed_bits(search, ranks, fixed, v)
    scores = _outer_popcount(fixed_u, fixed_v) + _open_pair_counts(search, open_sets, u, v)
    return np.where(_valid(search, u, v, used), scores, -1)


def triangle_potentials(search, ranks, fixed, open_sets, used: set[int]) -> dict[tuple[int, int], np.ndarray]:
    """phi[(x, y)] for the three pairs of open classes (x < y), [k_x, k_y], scaled by _SCALE."""
    m = len(ranks)
    opened = (m, m + 1, m + 2)
    fixed_bits = {c: _fixed_bits(search, ranks, fixed, c) for c in opened}
    phi = {}
    for i, x in enumerate(opened):
        for y in opened[i + 1:]:
            both_low = _outer_popcount(fixed_bits[x], fixed_bits[y])
            values = 2 * both_low + 3 * _open_pair_counts(search, open_sets, x, y)
            phi[(x, y)] = np.where(_valid(search, x, y, used), values, _EXCLUDED)
    return phi


def triangle_bounds(phi: dict[tuple[int, int], np.ndarray], m: int) -> np.ndarray:
    """For every candidate of class m (the first of the three open classes): an upper bound on the
    best score of the completions that give it to class m. Their maximum bounds the node."""
    uv, uw, vw = phi[(m, m + 1)], phi[(m, m + 2)], phi[(m + 1, m + 2)]
    centred_u = uv.max(axis=1) + uw.max(axis=1)
    centred_v = (uv + vw.max(axis=1)[None, :]).max(axis=1)
    centred_w = (uw + vw.max(axis=0)[None, :]).max(axis=1)
    return (centred_u + centred_v + centred_w) // (2 * _SCALE)
