"""Step 2, accuracy: a floor for the n-th best score before the branch and bound starts.

Until its heap holds n assignments the search prunes nothing, and while the heap holds weak ones it
prunes little: on real log-probs the first class-0 words in rank order are the most frequent words,
whose subtrees are poor, so the exact search used to score thousands of last-two tables before the
threshold caught up. A cheap local search fixes that: starting from a few assignments, it repeatedly
rescores every pair of classes jointly (one [k_u, k_v] table of exact scores with the other classes
held) and moves to the best entry, collecting the best distinct assignments it sees on the way. Their
n-th best score is a floor on the true n-th best (they are real assignments with exact scores), so
every node whose bound is below it can be pruned without changing the answer.
"""
from __future__ import annotations

import itertools

import numpy as np

_STARTS = 8
_SWEEPS = 8


def _outer_popcount(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    counts = np.zeros((left.shape[0], right.shape[0]), dtype=np.int64)
    for word in range(left.shape[1]):
        counts += np.bitwise_count(left[:, word, None] & right[None, :, word])
    return counts


def pair_scores(search, ranks: tuple[int, ...], u: int, v: int) -> np.ndarray:
    """[k_u, k_v]: the exact number of training examples right when classes u and v take candidates
    (a_u, a_v) and every other class c keeps ranks[c]; -1 where two classes would share a word."""
    others = [c for c in range(search.num_classes) if c not in (u, v)]
    counts = np.zeros((len(search.candidates[u]), len(search.candidates[v])), dtype=np.int64)
    for g in range(search.num_classes):
        if g in (u, v):
            bits = np.broadcast_to(search.everyone[g], (len(search.candidates[g]), search.group_words[g])).copy()
            for c in others:
                bits &= search.beats[g][c][ranks[c]]  # [k_g, W_g]
            opponent = v if g == u else u
            table = np.bitwise_count(bits[None, :, :] & search.beats[g][opponent]).sum(axis=2, dtype=np.int64)
            counts += table.T if g == u else table  # beats[g][opponent] is [k_opponent, k_g, W_g]
        else:
            base = search.everyone[g].copy()
            for c in others:
                if c != g:
                    base &= search.beats[g][c][ranks[c], ranks[g]]
            rows = base[None, :] & search.beats[g][u][:, ranks[g]]  # [k_u, W_g]
            counts += _outer_popcount(rows, search.beats[g][v][:, ranks[g]])
    held = np.array([int(search.token_ids[c][ranks[c]]) for c in others], dtype=np.int64)
    valid = search.distinct_pairs[u][v] & ~np.isin(search.token_ids[u], held)[:, None] \
        & ~np.isin(search.token_ids[v], held)[None, :]
    return np.where(valid, counts, -1)


def _start(search, offset: int) -> tuple[int, ...] | None:
    """The candidates at rank `offset` (clipped), moving down a class's list past words already taken."""
    ranks, taken = [], set()
    for c, words in enumerate(search.candidates):
        order = list(range(min(offset, len(words) - 1), len(words))) + list(range(min(offset, len(words) - 1)))
        rank = next((r for r in order if int(words[r]) not in taken), None)
        if rank is None:
            return None
        ranks.append(rank)
        taken.add(int(words[rank]))
    return tuple(ranks)


def score_floor(search, n: int) -> int:
    """A lower bound on the n-th best score (0 when fewer than n distinct assignments were seen)."""
    if search.num_classes < 2:
        return 0
    seen_ranks, seen_scores = [], []  # every table's best n entries: real assignments, exact scores
    k = min(len(words) for words in search.candidates)
    for offset in sorted({(i * k) // _STARTS for i in range(_STARTS)}):
        ranks = _start(search, offset)
        if ranks is None:
            continue
        current = -1
        for _ in range(_SWEEPS):
            improved = False
            for u, v in itertools.combinations(range(search.num_classes), 2):
                table = pair_scores(search, ranks, u, v)
                flat = table.ravel()
                top = np.argpartition(-flat, min(n, flat.size) - 1)[:n] if flat.size > n else np.arange(flat.size)
                top = top[flat[top] >= 0]
                full = np.tile(np.asarray(ranks, dtype=np.int64), (top.size, 1))
                full[:, u], full[:, v] = np.divmod(top, table.shape[1])
                seen_ranks.append(full)
                seen_scores.append(flat[top])
                best = int(np.argmax(flat))
                if flat[best] > current:
                    a, b = divmod(best, table.shape[1])
                    moved = list(ranks)
                    moved[u], moved[v] = a, b
                    ranks, current, improved = tuple(moved), int(flat[best]), True
            if not improved:
                break
    if not seen_ranks:
        return 0
    # Distinct assignments only: one assignment seen in several tables has the same exact score.
    _, first = np.unique(np.concatenate(seen_ranks), axis=0, return_index=True)
    scores = np.concatenate(seen_scores)[first]
    if scores.size < n:
        return 0
    return int(np.partition(scores, scores.size - n)[scores.size - n])
