"""Step 2, accuracy: the exact scores of the completions of many nodes with the last two classes open,
in one batch.

On real log-probs the search reaches a few thousand such nodes (SmolLM2 SST-5: ~4,000), and scoring
each one's [k_u, k_v] table on its own (`last_classes.exact_pair_scores`) costs far more in numpy
calls than in arithmetic. Here G nodes, which may have different prefixes, share one set of calls, and
only the rows (node, word of class u) that a cheap count bound lets reach the threshold are scored.
Those rows are the same as exact_pair_scores' (tests check equality): per pair of open words, the
fixed-class examples still right that neither beats, plus the open-class examples each wins against
the fixed words and the other; -1 where the two words are the same or one of them is held by a fixed
class.
"""
from __future__ import annotations

import numpy as np

from .last_classes import _open_pair_table, packed_columns



def _fixed_bits(search, prefixes: np.ndarray, fixed, c: int) -> np.ndarray:
    """[G, k_c, words]: per node and per candidate of open class c, the fixed classes' examples still
    right that the candidate does not beat (small groups share a word, shifted, as in
    last_classes._fixed_bits)."""
    parts = [fixed[g][:, None, :] & search.beaten_by[g][c][prefixes[:, g]] for g in range(prefixes.shape[1])]  # [G, k_c, W_g]
    columns = packed_columns(parts, [search.group_sizes[g] for g in range(prefixes.shape[1])])
    if not columns:
        return np.zeros((prefixes.shape[0], len(search.candidates[c]), 0), dtype=np.uint64)
    return np.concatenate(columns, axis=2)


def _held(search, prefixes: np.ndarray, c: int) -> np.ndarray:
    """[G, k_c]: candidates of class c whose word a fixed class of the node holds."""
    if prefixes.shape[1] == 0:
        return np.zeros((prefixes.shape[0], len(search.candidates[c])), dtype=bool)
    tokens = np.stack([search.token_ids[g][prefixes[:, g]] for g in range(prefixes.shape[1])], axis=1)  # [G, m]
    return (search.token_ids[c][None, :, None] == tokens[:, None, :]).any(axis=2)


def _narrow(bits: np.ndarray, width: int) -> np.ndarray:
    """The same bits in the narrowest unsigned type holding `width` bits (fewer bytes per pass)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if width <= np.dtype(dtype).itemsize * 8:
            return bits.astype(dtype)
    return bits


def _counts(bits: np.ndarray) -> np.ndarray:
    return np.bitwise_count(bits).sum(axis=-1, dtype=np.int64)


def exact_score_rows(search, prefixes: np.ndarray, fixed, open_u: np.ndarray, open_v: np.ndarray, threshold: int):
    """Exact scores of the completions of G nodes that fix classes 0..m-1 (prefixes: [G, m] candidate
    ranks) and leave u = m, v = m + 1 open, for the rows that can hold a score >= threshold only.
    fixed[g]: [G, W_g], group g's examples still right; open_u / open_v: [G, k, W], per candidate the
    examples of its class that beat every fixed word. Returns (node, row, scores [R, k_v]) for the
    (node, a_u) pairs whose bound O_u + max over a_v of (min(F_u, F_v) + O_v) reaches it
    (F: fixed-class examples a candidate leaves right, O: own-class examples it wins; on SmolLM2 SST-5
    about a third of the rows). The bitsets are narrowed before the [R, k_v] gathers."""
    m = prefixes.shape[1]
    u, v = m, m + 1
    fixed_u, fixed_v = _fixed_bits(search, prefixes, fixed, u), _fixed_bits(search, prefixes, fixed, v)
    count_fixed_v, count_open_v = _counts(fixed_v), _counts(open_v)
    # max over a_v of min(F_u, F_v) + O_v, with one side of the min taken out of the max
    bound = _counts(open_u) + np.minimum(_counts(fixed_u) + count_open_v.max(axis=1, keepdims=True),
                                         (count_fixed_v + count_open_v).max(axis=1, keepdims=True))
    node, row = np.nonzero(bound >= threshold)
    dtype = np.int16 if search.num_examples < np.iinfo(np.int16).max else np.int32
    scores = np.zeros((node.size, len(search.candidates[v])), dtype=dtype)
    if not node.size:
        return node, row, scores
    if fixed_u.shape[2] == 1:
        width = sum(search.group_sizes[:m])
        fixed_u, fixed_v = _narrow(fixed_u, width), _narrow(fixed_v, width)
    for word in range(fixed_u.shape[2]):
        scores += np.bitwise_count(fixed_u[node, row, word][:, None] & fixed_v[:, :, word][node])
    table, shift = _open_pair_table(search, u, v)
    if shift is None:
        wu = open_u.shape[2]
        for w in range(table.shape[2]):
            own = open_u[node, row, w][:, None] if w < wu else open_v[:, :, w - wu][node]
            scores += np.bitwise_count(table[:, :, w][row] & own)
    else:
        width = search.group_sizes[u] + search.group_sizes[v]
        bits = _narrow(open_v[:, :, 0] << np.uint64(shift), width)[node]
        bits |= _narrow(open_u[node, row, 0], width)[:, None]
        bits &= _narrow(table[:, :, 0], width)[row]
        scores += np.bitwise_count(bits)
    invalid = ~search.distinct_pairs[u][v][row]
    invalid |= _held(search, prefixes, v)[node]
    invalid |= _held(search, prefixes, u)[node, row][:, None]
    np.copyto(scores, -1, where=invalid)
    return node, row, scores
