"""Step 2, accuracy: the exact top-n assignments by branch and bound over bitsets of training examples."""
from __future__ import annotations

import heapq

import numpy as np
from tqdm.auto import tqdm

from .last_classes import exact_pair_scores, triangle_bounds, triangle_potentials
from .last_two_batch import exact_score_rows
from .results import Assignment
from .triangle_batch import child_triangle_bounds
from .warm_start import score_floor

_BITS = 64
_NODES_PER_BATCH = 64  # two-open nodes scored per batch: [64, k, k] tables, a few MB at k = 100


def _pack_bits(flags: np.ndarray, words: int) -> np.ndarray:
    """Boolean [..., n] -> uint64 [..., words], example j in bit j % 64 of word j // 64."""
    packed = np.packbits(flags, axis=-1, bitorder="little")
    padded = np.zeros(flags.shape[:-1] + (words * 8,), dtype=np.uint8)
    padded[..., :packed.shape[-1]] = packed
    return padded.view(np.uint64)


def _popcount(bits: np.ndarray) -> np.ndarray:
    return np.bitwise_count(bits).sum(axis=-1, dtype=np.int64)


class _AccuracyBranchAndBound:
    """Exact top-n assignments by training accuracy.

    Notation: classes are assigned in order 0, 1, ..., C-1. S_g[i, a] is the log-probability of class
    g's candidate a on example i. Examples are grouped by gold class; a set of examples of group g is a
    bitset. For every ordered class pair (g, c), beats[g][c][b, a] is the set of examples of group g
    where S_g[., a] > S_c[., b] (strictly; stored opponent candidate first), so the examples an
    assignment gets right are, per group g, the intersection over c != g of beats[g][c][w_c, w_g];
    the score is the sum of their sizes.

    Upper bound of a partial assignment (classes < m fixed) over all of its completions, summed over
    groups, each group relaxed on its own:
      - group g < m (word fixed): the examples its word already beats against the fixed words, and that
        it beats against the *lowest* candidate of every unassigned class (`beats_min`);
      - group g >= m: the best single candidate a of g: the examples where a beats every fixed word and
        the lowest candidate of every other unassigned class.
    Every term can only grow under these relaxations (a group may pick its own completion, unassigned
    opponents are replaced by their weakest candidate, distinctness is ignored), so the bound is
    admissible; for a complete assignment it equals the score.

    That bound ignores the conflicts between unassigned classes, which dominate when the classes'
    candidate lists overlap (real log-probs: the same frequent words top every class). So once three
    classes are left, the children are bounded by the pairwise relaxation of `last_classes` instead
    (for all children of a four-open node at once, `triangle_batch`, which also prunes those children
    by it), and once two are left, every completion is scored exactly in one table; the tables of all
    the two-open nodes below a three- or four-open node are scored in batches (`last_two_batch`; stats:
    `bounded` counts both child bounds and exactly scored completions).

    Search: depth-first, children in order of decreasing bound, keeping the best n found so far in a
    heap. A node is pruned when even its best conceivable result -- score = bound, ranks = its prefix
    followed by zeros -- would rank below the current n-th best under (score desc, ranks asc). That
    is the order of the final answer, so nothing that belongs to the top n is ever pruned. A node whose
    bound is below `floor` (the n-th best of real assignments a local search scored first, `warm_start`)
    is pruned as well: n assignments score at least that much.
    """

    def __init__(self, logprobs: np.ndarray, labels: np.ndarray, candidates: list[list[int]]):
        self.candidates = candidates
        self.num_classes = len(candidates)
        self.num_examples = logprobs.shape[0]
        self.token_ids = [np.asarray(c, dtype=np.int64) for c in candidates]
        groups = [np.nonzero(labels == g)[0] for g in range(self.num_classes)]
        self.group_words = [max(1, -(-len(rows) // _BITS)) for rows in groups]
        self.group_sizes = [len(rows) for rows in groups]
        self.beats = [[None] * self.num_classes for _ in range(self.num_classes)]
        self.beats_min = [[None] * self.num_classes for _ in range(self.num_classes)]
        for g, rows in enumerate(groups):
            own = logprobs[np.ix_(rows, self.token_ids[g])]  # [N_g, k_g]
            for c in range(self.num_classes):
                if c == g:
                    continue
                other = logprobs[np.ix_(rows, self.token_ids[c])]  # [N_g, k_c]
                flags = own.T[:, None, :] > other.T[None, :, :]  # [k_g, k_c, N_g]
                # Stored with the opponent's candidate first: children index it by that candidate.
                self.beats[g][c] = np.ascontiguousarray(_pack_bits(flags, self.group_words[g]).transpose(1, 0, 2))
                lowest = other.min(axis=1)
                self.beats_min[g][c] = _pack_bits(own.T > lowest[None, :], self.group_words[g])
        everyone = [_pack_bits(np.ones(len(rows), dtype=bool), w) for rows, w in zip(groups, self.group_words)]
        # beaten_by[g][c][a]: examples of group g where g's candidate a beats each candidate of c, [k_c, W_g].
        self.beaten_by = [[None if table is None else np.ascontiguousarray(table.transpose(1, 0, 2)) for table in row]
                          for row in self.beats]
        self.rows_of_token = [{} for _ in candidates]  # per class: token -> its candidate rank
        for c, words in enumerate(candidates):
            for rank, token in enumerate(words):
                self.rows_of_token[c].setdefault(int(token), rank)
        # distinct_pairs[c][d][a, b]: candidate a of c and candidate b of d are different words.
        self.open_pair_tables: dict = {}  # built on first use by last_classes
        self.distinct_pairs = [[ids_c[:, None] != ids_d[None, :] for ids_d in self.token_ids] for ids_c in self.token_ids]
        self.everyone = everyone
        # beats_rest[m][g][a]: examples where g's candidate a beats the lowest candidate of every class
        # >= m other than g.
        self.beats_rest = []
        for m in range(self.num_classes + 1):
            per_group = []
            for g in range(self.num_classes):
                bits = np.broadcast_to(everyone[g], (len(candidates[g]), self.group_words[g])).copy()
                for f in range(m, self.num_classes):
                    if f != g:
                        bits &= self.beats_min[g][f]
                per_group.append(bits)
            self.beats_rest.append(per_group)

    # -- the top-n heap: entries (correct, negated ranks, word ids); the root is the n-th best -------
    def _worst_key(self):
        correct, negated, _ = self.heap[0]
        return correct, tuple(-r for r in negated)

    def _threshold(self) -> int:
        """Scores below this cannot enter the top n: the warm-start floor or the heap's n-th best."""
        return max(self.floor, self._worst_key()[0]) if len(self.heap) >= self.n else self.floor

    def _prunable(self, bound: int, prefix: tuple[int, ...]) -> bool:
        if bound < self.floor:
            return True  # n real assignments score at least the floor (warm_start)
        if len(self.heap) < self.n:
            return False
        worst_correct, worst_ranks = self._worst_key()
        return bound < worst_correct or (bound == worst_correct and prefix > worst_ranks[:len(prefix)])

    def _offer(self, correct: int, ranks: tuple[int, ...]) -> None:
        entry = (correct, tuple(-r for r in ranks), tuple(int(self.token_ids[c][r]) for c, r in enumerate(ranks)))
        if len(self.heap) < self.n:
            heapq.heappush(self.heap, entry)
        elif entry[:2] > self.heap[0][:2]:
            heapq.heapreplace(self.heap, entry)

    # -- search -----------------------------------------------------------------------------------
    def _children(self, m: int, ranks: tuple[int, ...], used: set[int], fixed: list[np.ndarray],
                  open_sets: list[np.ndarray | None]):
        """Bounds of assigning each still-free candidate b of class m, and the children's states.
        fixed[g] (g < m): group g's examples still right given the fixed words, [W_g].
        open_sets[g] (g >= m): per candidate a of g, examples where a beats every fixed word, [k_g, W_g]."""
        free = np.array([b for b, t in enumerate(self.candidates[m]) if t not in used], dtype=np.int64)
        if free.size == 0:
            return free, None, None, None
        rest = self.beats_rest[m + 1]
        bounds = np.zeros(free.size, dtype=np.int64)
        child_fixed = []
        for g in range(m):
            bits = fixed[g][None, :] & self.beats[g][m][free, ranks[g]]  # [B, W_g]
            bounds += _popcount(bits & rest[g][ranks[g]][None, :])
            child_fixed.append(bits)
        own = open_sets[m][free]  # [B, W_m]
        bounds += _popcount(own & rest[m][free])
        child_fixed.append(own)
        child_open = []
        for g in range(m + 1, self.num_classes):
            bits = open_sets[g][None, :, :] & self.beats[g][m][free]  # [B, k_g, W_g]
            bounds += _popcount(bits & rest[g][None, :, :]).max(axis=1)
            child_open.append(bits)
        return free, bounds, child_fixed, child_open

    def _search(self, m: int, ranks: tuple[int, ...], used: set[int], fixed: list[np.ndarray],
                open_sets: list[np.ndarray | None], progress=None) -> None:
        if self.num_classes - m == 2:
            self._complete_last_two(ranks, used, fixed, open_sets)
            return
        if self.num_classes - m == 3:
            self._search_last_three(ranks, used, fixed, open_sets, progress)
            return
        if self.num_classes - m == 4:
            self._search_four_open(ranks, used, fixed, open_sets, progress)
            return
        free, bounds, child_fixed, child_open = self._children(m, ranks, used, fixed, open_sets)
        self.expanded += 1
        if free.size == 0:
            return
        self.bounded += free.size
        order = np.lexsort((free, -bounds))
        last = m == self.num_classes - 1
        for j in order:
            b, bound = int(free[j]), int(bounds[j])
            prefix = ranks + (b,)
            if self._prunable(bound, prefix):
                break  # children come in key order and the threshold only rises: the rest fail too
            if last:
                self._offer(bound, prefix)  # a complete assignment's bound is its score
                continue
            next_open = [None] * (m + 1) + [bits[j] for bits in child_open]
            self._search(m + 1, prefix, used | {self.candidates[m][b]},
                         [bits[j] for bits in child_fixed], next_open)
            if progress is not None:
                progress.update(1)

    def _complete_last_two(self, ranks, used, fixed, open_sets) -> None:
        """Offer every completion of the last two classes, in key order, while one can still enter."""
        scores = exact_pair_scores(self, ranks, fixed, open_sets, used)
        self.expanded += 1
        self.bounded += scores.size
        floor = self._threshold()
        first, second = np.nonzero(scores >= floor)
        values = scores[first, second]
        for j in np.lexsort((second, first, -values)):
            prefix = ranks + (int(first[j]), int(second[j]))
            if self._prunable(int(values[j]), prefix):
                break  # key order and a rising threshold: no later completion can enter either
            self._offer(int(values[j]), prefix)

    def _search_four_open(self, ranks, used, fixed, open_sets, progress=None) -> None:
        """Four classes open: every child (a word for class m) is a node with three open classes. Their
        triangle bounds come in one batch (triangle_batch), so the children are pruned by those instead
        of the per-group bound, which prunes almost nothing at this depth; the grandchildren that
        survive (two classes open) are then scored in batches across all children (last_two_batch)."""
        m = len(ranks)
        free, bounds, child_fixed, child_open = self._children(m, ranks, used, fixed, open_sets)
        self.expanded += 1
        if free.size == 0:
            return
        self.bounded += free.size
        alive = np.nonzero(bounds >= self._threshold())[0]  # the per-group bound still prunes some
        free, bounds = free[alive], bounds[alive]
        child_fixed = [bits[alive] for bits in child_fixed]
        child_open = [bits[alive] for bits in child_open]
        grandchild_bounds = child_triangle_bounds(self, ranks, free, child_fixed, child_open,
                                                  threshold=max(self._threshold(), 0))
        self.bounded += grandchild_bounds.size
        # Children whose own bound survives count as expanded (their children were bounded above).
        node_bounds = np.minimum(bounds, grandchild_bounds.max(axis=1, initial=-1))
        self.expanded += int((node_bounds >= max(self._threshold(), 0)).sum())
        # A grandchild's completions are bounded by its triangle bound and by its parent's per-group bound.
        effective = np.minimum(grandchild_bounds, bounds[:, None])
        children, words = np.nonzero(effective >= max(self._threshold(), 0))
        prefixes = np.empty((children.size, m + 2), dtype=np.int64)
        prefixes[:, :m] = ranks
        prefixes[:, m], prefixes[:, m + 1] = free[children], words
        u = m + 1

        def state(rows):
            j, a = children[rows], words[rows]
            grand_fixed = [child_fixed[g][j] & self.beats[g][u][a, ranks[g]] for g in range(m)]
            grand_fixed += [child_fixed[m][j] & self.beats[m][u][a, free[j]], child_open[0][j, a]]
            grand_open = [child_open[i][j] & self.beats[u + i][u][a] for i in (1, 2)]
            return grand_fixed, *grand_open

        self._complete_many(prefixes, effective[children, words], state)
        if progress is not None and m == 0:
            progress.update(len(self.candidates[0]))

    def _search_last_three(self, ranks, used, fixed, open_sets, progress=None) -> None:
        """Three classes open: the children's bounds come from the pairwise relaxation (last_classes);
        the children that survive (two classes open) are scored in batches (last_two_batch)."""
        m = len(ranks)
        bounds = triangle_bounds(triangle_potentials(self, ranks, fixed, open_sets, used), m)
        self.bounded += bounds.size
        self.expanded += 1
        words = np.nonzero(bounds >= max(self._threshold(), 0))[0]
        prefixes = np.empty((words.size, m + 1), dtype=np.int64)
        prefixes[:, :m] = ranks
        prefixes[:, m] = words

        def state(rows):
            a = words[rows]
            child_fixed = [fixed[g][None, :] & self.beats[g][m][a, ranks[g]] for g in range(m)] + [open_sets[m][a]]
            child_open = [open_sets[c][None] & self.beats[c][m][a] for c in (m + 1, m + 2)]
            return child_fixed, *child_open

        self._complete_many(prefixes, bounds[words], state)
        if progress is not None and m == 0:
            progress.update(len(self.candidates[0]))

    def _complete_many(self, prefixes: np.ndarray, bounds: np.ndarray, state) -> None:
        """Score exactly the completions of nodes with two classes open (prefixes: [G, C-2] ranks, bounds:
        [G] upper bounds of their completions) and offer those that can enter the top n. state(rows)
        gives the rows' bitsets (fixed list of [R, W_g], open_u, open_v: [R, k, W]). Nodes go in key
        order (bound desc, prefix asc) in batches, and each batch is cut where a node becomes
        prunable: the threshold only rises, so every later node is prunable too."""
        if not len(bounds):
            return
        order = np.lexsort(tuple(prefixes[:, c] for c in reversed(range(prefixes.shape[1]))) + (-bounds,))
        for start in range(0, order.size, _NODES_PER_BATCH):
            rows = order[start:start + _NODES_PER_BATCH]
            keep = 0
            while keep < rows.size and not self._prunable(int(bounds[rows[keep]]),
                                                          tuple(prefixes[rows[keep]].tolist())):
                keep += 1
            if keep:
                # Only the rows that can reach the threshold are scored (the others are < it: never offered).
                node, first, scores = exact_score_rows(self, prefixes[rows[:keep]], *state(rows[:keep]),
                                                       threshold=max(self._threshold(), 0))
                self.expanded += keep
                self.bounded += keep * len(self.candidates[-2]) * len(self.candidates[-1])
                self._offer_rows(prefixes[rows[:keep]], node, first, scores)
            if keep < rows.size:
                return

    def _offer_rows(self, prefixes: np.ndarray, node: np.ndarray, first: np.ndarray, scores: np.ndarray) -> None:
        """Offer the entries of exact score rows (row r: node node[r], class-u word first[r], [R, k_v];
        prefixes [G, C-2]) in key order while one can still enter the top n."""
        hits = np.flatnonzero(scores.ravel() >= self._threshold())
        values = scores.ravel()[hits]
        rows, second = np.divmod(hits, scores.shape[1])
        node, first = node[rows], first[rows]
        columns = tuple(prefixes[node, c] for c in reversed(range(prefixes.shape[1])))
        for j in np.lexsort((second, first) + columns + (-values,)).tolist():
            prefix = tuple(prefixes[node[j]].tolist()) + (int(first[j]), int(second[j]))
            if self._prunable(int(values[j]), prefix):
                break  # key order and a rising threshold: no later completion can enter either
            self._offer(int(values[j]), prefix)

    def run(self, n: int, progress: bool = False) -> list[Assignment]:
        self.n = n
        self.heap: list = []
        self.floor = score_floor(self, n)  # no n-th best can score less (warm_start)
        self.expanded = 0  # nodes whose children were bounded
        self.bounded = 0  # child bounds computed
        open_sets = [np.broadcast_to(self.everyone[g], (len(self.candidates[g]), self.group_words[g])).copy()
                     for g in range(self.num_classes)]
        with tqdm(total=len(self.candidates[0]), desc="label search", leave=False, disable=not progress) as bar:
            self._search(0, (), set(), [], open_sets, bar)
        ordered = sorted(self.heap, key=lambda e: (-e[0], tuple(-r for r in e[1])))
        return [Assignment(words, correct / self.num_examples, tuple(-r for r in negated), correct)
                for correct, negated, words in ordered]
