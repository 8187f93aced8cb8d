"""Step 2, accuracy: the pairwise (triangle) bound of `last_classes` for every child of a node with four
classes open, in one batch.

On real log-probs the per-group bound of `branch_and_bound` prunes almost nothing while four or more
classes are open (SmolLM2 SST-5: ~97 of 99 children of every class-0 node survive it), so nearly every
node with three classes open is visited and bounded by the triangle relaxation. Doing that node by node
costs a few dozen numpy calls on [k, k] arrays per node; here the children b of class m (the last class
fixed before the triangle) share one set of calls on [B, k, k] arrays, and the parent can order and prune
its children by their triangle bounds before descending.

The bound is the same as `triangle_potentials` + `triangle_bounds` computed at each child (tests check
equality): phi_xy = 2 x (fixed-class examples that both open words leave right) + 3 x (open-class
examples won in the pair), the three chains' maxima summed, divided by 12.

Given the search's threshold, most of that work is skipped: the vw table is computed in full (its row
and column maxima enter every chain), but a row (b, a_u) of uv and uw is computed only while an upper
bound on its result from per-candidate counts (then from the exact uv row and counts for uw) still
reaches the threshold; the rows cut get that upper bound, valid and below the threshold, so they are
pruned as before. On SmolLM2 SST-5 about a third of the uv rows and a sixteenth of the uw rows remain.
"""
from __future__ import annotations

import numpy as np

from .last_classes import packed_columns

_CHUNK = 1 << 21  # batch elements x k_x x k_y per pass: bounds the memory of the [B, k, k] tables
# np.iinfo costs ~50 us a call, and these are asked a few times per batch
_EXCLUDED = {np.dtype(t): -(np.iinfo(t).max // 4) for t in (np.int16, np.int32, np.int64)}
_INT16_MAX = int(np.iinfo(np.int16).max)


def _packed_fixed_bits(search, ranks, child_fixed, m: int, batch: np.ndarray, c: int) -> np.ndarray:
    """[B, k_c, words]: per child and per candidate of open class c, the examples of the fixed classes
    (0..m, class m fixed to the child's word) still right that the candidate does not beat. Small groups
    share a word (shifted), as in `last_classes._fixed_bits`."""
    parts = [child_fixed[g][:, None, :] & (search.beaten_by[g][c][ranks[g]] if g < m else search.beaten_by[g][c][batch])
             for g in range(m + 1)]  # [B, k_c, W_g]
    return np.concatenate(packed_columns(parts, [search.group_sizes[g] for g in range(m + 1)]), axis=2)


def _narrow(bits: np.ndarray, width: int) -> np.ndarray:
    """The same bits in the narrowest unsigned type that holds `width` bits: the [B, k, k] passes are
    bound by memory traffic, and 16 examples per class fit in far less than 64 bits."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if width <= np.dtype(dtype).itemsize * 8:
            return bits.astype(dtype)
    return bits


def _pair_table(search, fixed_bits, open_sets, used_rows, x: int, y: int, dtype) -> np.ndarray:
    """phi_xy for every child: [B, k_x, k_y] of `dtype`, _excluded(dtype) where the pair shares a word
    or uses a word of a fixed class (used_rows[c]: [B, k_c] bool)."""
    from .last_classes import _open_pair_table

    table, shift = _open_pair_table(search, x, y)
    fixed_x, fixed_y = fixed_bits[x], fixed_bits[y]
    if fixed_x.shape[2] == 1:
        width = int(max(fixed_x.max(initial=0), fixed_y.max(initial=0))).bit_length()
        fixed_x, fixed_y = _narrow(fixed_x, width), _narrow(fixed_y, width)
    phi = np.zeros((fixed_x.shape[0], table.shape[0], table.shape[1]), dtype=dtype)
    for word in range(fixed_x.shape[2]):
        phi += np.bitwise_count(fixed_x[:, :, None, word] & fixed_y[:, None, :, word])
    phi *= 2
    if shift is None:
        wx = open_sets[x].shape[2]
        for w in range(table.shape[2]):
            own = open_sets[x][:, :, None, w] if w < wx else open_sets[y][:, None, :, w - wx]
            phi += 3 * np.bitwise_count(table[None, :, :, w] & own).astype(dtype)
    else:
        width = search.group_sizes[x] + search.group_sizes[y]
        bits = _narrow(open_sets[x][:, :, None, 0], width) | _narrow(open_sets[y][:, None, :, 0] << np.uint64(shift), width)
        bits &= _narrow(table[None, :, :, 0], width)
        opened = np.bitwise_count(bits)
        opened *= 3  # at most 3 x 64 < 256
        phi += opened
    excluded = _excluded(dtype)
    rows, columns = _shared_words(search, x, y)
    phi[:, rows, columns] = excluded
    batch, row = np.nonzero(used_rows[x])
    phi[batch, row, :] = excluded
    batch, column = np.nonzero(used_rows[y])
    phi[batch, :, column] = excluded
    return phi


def _excluded(dtype) -> int:
    """A quarter of the type's range below zero: the [B, k, k] sums add at most two phi values (no
    wrap), and with _phi_dtype's margin a bound with an excluded term stays negative (final sum in int64)."""
    return _EXCLUDED[np.dtype(dtype)]


def _shared_words(search, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays of the (a_x, a_y) pairs that are the same word (built once per class pair)."""
    cache = search.open_pair_tables.setdefault("shared", {})
    if (x, y) not in cache:
        cache[(x, y)] = np.nonzero(~search.distinct_pairs[x][y])
    return cache[(x, y)]


def _phi_dtype(search) -> type:
    """int16 when six phi values (each at most 3 N) stay well below its excluded value, else int32."""
    return np.int16 if 18 * search.num_examples < _INT16_MAX // 4 else np.int32


def _used_rows(search, ranks, m: int, batch: np.ndarray, c: int) -> np.ndarray:
    """[B, k_c]: candidates of open class c whose word a fixed class holds (the prefix's or the child's)."""
    tokens = search.token_ids[c]
    prefix = {int(search.token_ids[g][ranks[g]]) for g in range(m)}
    common = np.isin(tokens, list(prefix)) if prefix else np.zeros(tokens.size, dtype=bool)
    return common[None, :] | (tokens[None, :] == search.token_ids[m][batch][:, None])


def _counts(bits: np.ndarray) -> np.ndarray:
    """[..., k] set bits per candidate of a [..., k, W] bitset array."""
    return np.bitwise_count(bits).sum(axis=-1, dtype=np.int64)


def _row_upper_bounds(fixed_bits, open_sets, used, u, v, w, vw_rows, vw_columns):
    """Upper bounds, 12 x scale, on the two halves of centred_u + centred_v + centred_w of every row
    a_u, from the exact vw maxima and per-candidate counts only (O(B k)): the v half, max phi_uv +
    max (phi_uv + vw_rows), and the w half, max phi_uw + max (phi_uw + vw_columns); [B, k_u] each.
    phi_xy(a_x, a_y) <= 2 min(F_x, F_y) + 3 (O_x + O_y) (F: fixed-class examples a candidate leaves
    right, O: own-class examples it wins), and the max over a_y of 2 min(F_x, F_y) + 3 O_y + extra(a_y)
    is at most the smaller of the two bounds that take one side of the min out of the max."""
    fixed = {c: _counts(fixed_bits[c]) for c in (u, v, w)}
    opened = {c: _counts(open_sets[c]) for c in (u, v, w)}

    def chain(y, extra):  # [B, k_u]: bound on max over a_y of phi_uy(a_u, a_y) + extra[a_y]
        with_u = 2 * fixed[u] + (3 * opened[y] + extra).max(axis=1, keepdims=True)
        with_y = (2 * fixed[y] + 3 * opened[y] + extra).max(axis=1, keepdims=True)
        return 3 * opened[u] + np.minimum(with_u, with_y)

    half_v = chain(v, 0) + chain(v, vw_rows.astype(np.int64))
    half_w = chain(w, 0) + chain(w, vw_columns.astype(np.int64))
    return half_v, half_w


def _pair_rows(search, fixed_bits, open_sets, used_rows, child, row, x: int, y: int, dtype) -> np.ndarray:
    """phi_xy for R selected (child, a_x) rows: [R, k_y], the same values as _pair_table's rows. The
    bitsets are narrowed before the [R, k_y] gathers, which cost as much as the bit operations."""
    from .last_classes import _open_pair_table

    table, shift = _open_pair_table(search, x, y)
    fixed_x, fixed_y = fixed_bits[x], fixed_bits[y]
    if fixed_x.shape[2] == 1:
        width = int(max(fixed_x.max(initial=0), fixed_y.max(initial=0))).bit_length()
        fixed_x, fixed_y = _narrow(fixed_x, width), _narrow(fixed_y, width)
    phi = np.zeros((row.size, table.shape[1]), dtype=dtype)
    for word in range(fixed_x.shape[2]):
        phi += np.bitwise_count(fixed_x[child, row, word][:, None] & fixed_y[:, :, word][child])
    phi *= 2
    if shift is None:
        wx = open_sets[x].shape[2]
        for w in range(table.shape[2]):
            own = open_sets[x][child, row, w][:, None] if w < wx else open_sets[y][:, :, w - wx][child]
            phi += 3 * np.bitwise_count(table[:, :, w][row] & own).astype(dtype)
    else:
        width = search.group_sizes[x] + search.group_sizes[y]
        narrow_table = search.open_pair_tables.setdefault("narrow", {})
        if (x, y) not in narrow_table:
            narrow_table[(x, y)] = _narrow(table[:, :, 0], width)
        bits = _narrow(open_sets[y][:, :, 0] << np.uint64(shift), width)[child]
        bits |= _narrow(open_sets[x][child, row, 0], width)[:, None]
        bits &= narrow_table[(x, y)][row]
        opened = np.bitwise_count(bits)
        opened *= 3  # at most 3 x 64 < 256
        phi += opened
    excluded = ~search.distinct_pairs[x][y][row]
    excluded |= used_rows[y][child]
    excluded |= used_rows[x][child, row][:, None]
    np.copyto(phi, _excluded(dtype), where=excluded)
    return phi


def child_triangle_bounds(search, ranks: tuple[int, ...], batch: np.ndarray, child_fixed, child_open,
                          threshold: int | None = None) -> np.ndarray:
    """[B, k_{m+1}]: for each child b = batch[j] of the node `ranks` (m = len(ranks) classes fixed, four
    open), the triangle bound of each word of class m+1 given (ranks, b); negative where excluded.
    child_fixed[g] (g <= m): [B, W_g]; child_open: the children's open sets of classes m+1..m+3, [B, k, W].

    With a threshold, only the rows (b, a_u) whose cheap upper bound (_row_upper_bounds) reaches it get
    the triangle bound (SmolLM2 SST-5: ~30% of them); the others get that cheap bound, which is valid
    and below the threshold, so they are pruned all the same. vw is needed in full for its maxima."""
    m = len(ranks)
    u, v, w = m + 1, m + 2, m + 3
    per_child = max(1, len(search.candidates[u]) * max(len(search.candidates[v]), len(search.candidates[w])))
    step = max(1, _CHUNK // per_child)
    out = []
    dtype = _phi_dtype(search)
    for start in range(0, batch.size, step):
        part = batch[start:start + step]
        fixed = [bits[start:start + step] for bits in child_fixed]
        open_sets = {c: bits[start:start + step] for c, bits in zip((u, v, w), child_open)}
        fixed_bits = {c: _packed_fixed_bits(search, ranks, fixed, m, part, c) for c in (u, v, w)}
        used = {c: _used_rows(search, ranks, m, part, c) for c in (u, v, w)}
        vw = _pair_table(search, fixed_bits, open_sets, used, v, w, dtype)
        vw_rows, vw_columns = vw.max(axis=2), vw.max(axis=1)
        if threshold is None:
            uv = _pair_table(search, fixed_bits, open_sets, used, u, v, dtype)
            uw = _pair_table(search, fixed_bits, open_sets, used, u, w, dtype)
            centred_u = uv.max(axis=2) + uw.max(axis=2)
            centred_v = (uv + vw_rows[:, None, :]).max(axis=2)
            centred_w = (uw + vw_columns[:, None, :]).max(axis=2)
            out.append((centred_u.astype(np.int64) + centred_v + centred_w) // 12)
            continue
        # Rows are refined in two steps: cheap bounds for both halves, then the exact v half with the
        # cheap w half, then both exact; a row leaves as soon as its bound falls below the threshold.
        half_v, half_w = _row_upper_bounds(fixed_bits, open_sets, used, u, v, w, vw_rows, vw_columns)
        cheap = half_v + half_w
        bounds = np.where(used[u], -1, cheap // 12)
        child, row = np.nonzero((cheap >= 12 * threshold) & ~used[u])
        if child.size:
            uv = _pair_rows(search, fixed_bits, open_sets, used, child, row, u, v, dtype)
            exact_v = uv.max(axis=1).astype(np.int64) + (uv + vw_rows[child]).max(axis=1)
            refined = exact_v + half_w[child, row]
            bounds[child, row] = refined // 12
            keep = refined >= 12 * threshold
            child, row, exact_v = child[keep], row[keep], exact_v[keep]
        if child.size:
            uw = _pair_rows(search, fixed_bits, open_sets, used, child, row, u, w, dtype)
            exact_w = uw.max(axis=1).astype(np.int64) + (uw + vw_columns[child]).max(axis=1)
            bounds[child, row] = (exact_v + exact_w) // 12
        out.append(bounds)
    return np.concatenate(out, axis=0) if out else np.zeros((0, len(search.candidates[u])), dtype=np.int32)
