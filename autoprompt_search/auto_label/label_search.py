"""Automatic label-word search (LM-BFF "auto L"): per-class candidate words and the exact top-n
assignments of one word per class.

The steps, after Gao, Fisch & Chen (2021):

1. Zero-shot log-probabilities of every vocabulary token at the label position, one row per training
   example (`zero_shot_label_logprobs`). For each class, the k allowed tokens with the largest summed
   log-probability over that class's examples are its candidates (`candidate_words`). Optionally the
   candidates of each class are first restricted to the nearest neighbours of a seed word
   (`nearest_neighbour_filter`, LM-BFF's TREC setting).
2. An assignment picks one candidate per class, no word shared by two classes. It is scored by
   zero-shot accuracy on the training set: an example is right when its gold class's word has a
   strictly larger log-probability than every other class's word (a tie counts as wrong). The top n
   are found exactly by branch and bound (`top_assignments`), never by enumerating the k^C product.
   For a regression task (STS-B) the labels are binarised at the median for step 1 and the two-word
   assignments are scored by the Pearson correlation between p(high pole) and the gold score.
3. The engine fine-tunes each of the n assignments and re-ranks them on dev (not done here).

Order of results: higher score first; equal scores by the tuple of per-class candidate ranks,
lexicographically (rank 0 = a class's most likely candidate). `brute_force_top_assignments` uses the
same scoring and order and is the reference the tests and the benchmark compare against.
"""
from __future__ import annotations

import heapq
import itertools
import json
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import UserError
from ..tasks import Example, TaskSpec
from ..prompts import Template
from ..prompts import Verbalizer, single_token_ids

METRICS = ("acc", "pearson")
_BITS = 64


# ---------------------------------------------------------------------------------------------
# Result types


@dataclass(frozen=True)
class Assignment:
    """One word per class: `word_ids[c]` is the token of class c, `ranks[c]` its position in class c's
    candidate list. `score` is training accuracy (fraction) or Pearson correlation; `correct` is the
    number of training examples right under the accuracy metric (None for Pearson)."""

    word_ids: tuple[int, ...]
    score: float
    ranks: tuple[int, ...]
    correct: int | None = None

    def label_words(self, labels: Sequence[str], id_to_word: Callable[[int], str]) -> dict[str, str]:
        return {label: id_to_word(token) for label, token in zip(labels, self.word_ids)}


@dataclass
class LabelSearchResult:
    """What the search found, self-contained: `words` maps every candidate token id to its word, so
    the record can be written to JSON and turned into verbalizers without a tokenizer."""

    task: str
    labels: tuple[str, ...]
    metric: str
    k: int
    candidates: list[list[int]]
    assignments: list[Assignment]
    words: dict[int, str] = field(default_factory=dict)
    template: str | None = None
    num_examples: int = 0

    @classmethod
    def build(cls, *, task: str, labels: Sequence[str], metric: str, k: int, candidates: list[list[int]],
              assignments: list[Assignment], id_to_word: Callable[[int], str], template: str | None = None,
              num_examples: int = 0) -> "LabelSearchResult":
        tokens = sorted({t for words in candidates for t in words})
        return cls(task, tuple(labels), metric, k, candidates, assignments,
                   {t: id_to_word(t) for t in tokens}, template, num_examples)

    def label_words(self, assignment: Assignment) -> dict[str, str]:
        return assignment.label_words(self.labels, self.words.__getitem__)

    def verbalizers(self, task: TaskSpec) -> list[Verbalizer]:
        """The assignments as verbalizers, best first. Two distinct tokens can decode to the same word
        (e.g. 'great' and ' great'); such an assignment is skipped because a verbalizer needs
        distinct words."""
        result = []
        for assignment in self.assignments:
            mapping = self.label_words(assignment)
            if len(set(mapping.values())) == len(mapping):
                result.append(Verbalizer.from_mapping(task, mapping, source=f"label search for {task.name}"))
        return result

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "template": self.template,
            "metric": self.metric,
            "k": self.k,
            "num_examples": self.num_examples,
            "candidates": {label: [{"id": t, "word": self.words[t]} for t in words]
                           for label, words in zip(self.labels, self.candidates)},
            "assignments": [
                {"label_words": self.label_words(a), "word_ids": list(a.word_ids), "ranks": list(a.ranks),
                 "score": a.score, "correct": a.correct}
                for a in self.assignments
            ],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, indent=2)

    @classmethod
    def from_json(cls, data: dict) -> "LabelSearchResult":
        labels = tuple(data["candidates"])
        candidates = [[item["id"] for item in data["candidates"][label]] for label in labels]
        words = {item["id"]: item["word"] for label in labels for item in data["candidates"][label]}
        assignments = [Assignment(tuple(a["word_ids"]), float(a["score"]), tuple(a["ranks"]), a["correct"])
                       for a in data["assignments"]]
        return cls(data["task"], labels, data["metric"], data["k"], candidates, assignments, words,
                   data.get("template"), data.get("num_examples", 0))


# ---------------------------------------------------------------------------------------------
# Input checks


def _as_numpy_logprobs(logprobs) -> np.ndarray:
    array = logprobs.detach().cpu().double().numpy() if isinstance(logprobs, torch.Tensor) else np.asarray(logprobs, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise UserError(f"log-probabilities must be a non-empty [examples, vocabulary] matrix, got shape {tuple(array.shape)}")
    if np.isnan(array).any():
        rows = sorted(set(np.nonzero(np.isnan(array))[0].tolist()))[:5]
        raise UserError(f"log-probabilities contain NaN (training example rows {rows}); expected finite values or -inf")
    return array


def _as_numpy_labels(labels, num_examples: int, num_classes: int | None) -> np.ndarray:
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.shape != (num_examples,):
        raise UserError(f"expected one label per training example ({num_examples}), got labels of shape {tuple(array.shape)}")
    if not np.issubdtype(array.dtype, np.integer):
        raise UserError(f"class labels must be integer class indices, got dtype {array.dtype}")
    if num_classes is not None and num_examples and (array.min() < 0 or array.max() >= num_classes):
        bad = int(array[(array < 0) | (array >= num_classes)][0])
        raise UserError(f"label {bad} is not a class index; expected 0 .. {num_classes - 1}")
    return array.astype(np.int64)


def _class_name(c: int, class_names: Sequence[str] | None) -> str:
    return f"class {c} ({class_names[c]!r})" if class_names is not None else f"class {c}"


def _check_candidates(candidates: Sequence[Sequence[int]], vocab_size: int) -> list[list[int]]:
    if len(candidates) < 2:
        raise UserError(f"label search needs at least 2 classes, got candidate lists for {len(candidates)}")
    checked = []
    for c, words in enumerate(candidates):
        words = [int(t) for t in words]
        if not words:
            raise UserError(f"class {c} has no candidate words; expected at least one")
        if len(set(words)) != len(words):
            raise UserError(f"class {c} lists a candidate word twice: {words}")
        out_of_range = [t for t in words if not 0 <= t < vocab_size]
        if out_of_range:
            raise UserError(f"class {c}: candidate token ids {out_of_range[:5]} are outside the vocabulary (size {vocab_size})")
        checked.append(words)
    return checked


# ---------------------------------------------------------------------------------------------
# Step 1: candidate words


def binarise_at_median(scores) -> torch.Tensor:
    """Regression targets -> the two poles used to pick candidates: 1 above the median, else 0."""
    values = torch.as_tensor(scores, dtype=torch.float64)
    return (values > values.median()).long() if values.numel() else values.long()


def _allowed_rows(allowed, num_classes: int, vocab_size: int) -> np.ndarray:
    """`allowed` as a [C, V] boolean matrix (None: every token; [V]: the same mask for every class)."""
    if allowed is None:
        return np.ones((num_classes, vocab_size), dtype=bool)
    mask = allowed.detach().cpu().numpy() if isinstance(allowed, torch.Tensor) else np.asarray(allowed)
    mask = mask.astype(bool)
    if mask.shape == (vocab_size,):
        return np.broadcast_to(mask, (num_classes, vocab_size))
    if mask.shape == (num_classes, vocab_size):
        return mask
    raise UserError(f"allowed-token mask must have shape [{vocab_size}] or [{num_classes}, {vocab_size}], got {tuple(mask.shape)}")


def candidate_words(logprobs, labels, num_classes: int, k: int, allowed=None, *,
                    class_names: Sequence[str] | None = None) -> list[list[int]]:
    """For each class, the k allowed tokens with the largest log-probability summed over the training
    examples of that class, best first; equal sums are ordered by token id. `allowed` is a boolean
    mask over the vocabulary ([V], or [C, V] for one mask per class)."""
    matrix = _as_numpy_logprobs(logprobs)
    gold = _as_numpy_labels(labels, matrix.shape[0], num_classes)
    if num_classes < 2:
        raise UserError(f"label search needs at least 2 classes, got {num_classes}")
    if k < 1:
        raise UserError(f"k (candidates per class) must be at least 1, got {k}")
    masks = _allowed_rows(allowed, num_classes, matrix.shape[1])
    result = []
    for c in range(num_classes):
        rows = gold == c
        if not rows.any():
            raise UserError(f"{_class_name(c, class_names)} has no training examples; every class needs at least one")
        token_ids = np.nonzero(masks[c])[0]
        if k > len(token_ids):
            raise UserError(f"k={k} candidates requested for {_class_name(c, class_names)} but only "
                            f"{len(token_ids)} vocabulary entries are allowed")
        totals = matrix[rows][:, token_ids].sum(axis=0)
        order = np.lexsort((token_ids, -totals))[:k]
        result.append(token_ids[order].tolist())
    return result


def nearest_neighbour_filter(output_embeddings, seed_word_ids: Sequence[int], k: int,
                             allowed=None) -> list[list[int]]:
    """For each seed token (one per class), the k tokens closest to it by cosine similarity in the
    output-embedding space, nearest first (the seed itself is its own nearest neighbour); equal
    similarities are ordered by token id. Pass the result as per-class masks to `candidate_words`
    via `neighbour_masks`."""
    weight = torch.as_tensor(output_embeddings).detach().cpu().double()
    if weight.ndim != 2:
        raise UserError(f"output embeddings must be a [vocabulary, dimension] matrix, got shape {tuple(weight.shape)}")
    vocab_size = weight.shape[0]
    if k < 1:
        raise UserError(f"k (neighbours per seed word) must be at least 1, got {k}")
    mask = np.ones(vocab_size, dtype=bool) if allowed is None else _allowed_rows(allowed, 1, vocab_size)[0]
    token_ids = np.nonzero(mask)[0]
    if k > len(token_ids):
        raise UserError(f"k={k} neighbours requested but only {len(token_ids)} vocabulary entries are allowed")
    unit = torch.nn.functional.normalize(weight, dim=1)
    result = []
    for c, seed in enumerate(seed_word_ids):
        if not 0 <= int(seed) < vocab_size:
            raise UserError(f"seed token id {seed} of class {c} is outside the vocabulary (size {vocab_size})")
        similarity = (unit[token_ids] @ unit[int(seed)]).numpy()
        order = np.lexsort((token_ids, -similarity))[:k]
        result.append(token_ids[order].tolist())
    return result


def neighbour_masks(neighbours: Sequence[Sequence[int]], vocab_size: int, allowed=None) -> torch.Tensor:
    """Per-class [C, V] mask: token allowed for class c if it is among c's neighbours (and allowed)."""
    masks = torch.zeros((len(neighbours), vocab_size), dtype=torch.bool)
    for c, tokens in enumerate(neighbours):
        masks[c, list(tokens)] = True
    if allowed is not None:
        masks &= torch.as_tensor(allowed, dtype=torch.bool).cpu()
    return masks


# ---------------------------------------------------------------------------------------------
# Step 2, accuracy: exact top-n by branch and bound over bitsets of training examples


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

    Search: depth-first, children in order of decreasing bound, keeping the best n found so far in a
    heap. A node is pruned when even its best conceivable result -- score = bound, ranks = its prefix
    followed by zeros -- would rank below the current n-th best under (score desc, ranks asc). That
    is the order of the final answer, so nothing that belongs to the top n is ever pruned.
    """

    def __init__(self, logprobs: np.ndarray, labels: np.ndarray, candidates: list[list[int]]):
        self.candidates = candidates
        self.num_classes = len(candidates)
        self.num_examples = logprobs.shape[0]
        self.token_ids = [np.asarray(c, dtype=np.int64) for c in candidates]
        groups = [np.nonzero(labels == g)[0] for g in range(self.num_classes)]
        self.group_words = [max(1, -(-len(rows) // _BITS)) for rows in groups]
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

    def _prunable(self, bound: int, prefix: tuple[int, ...]) -> bool:
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

    def run(self, n: int, progress: bool = False) -> list[Assignment]:
        self.n = n
        self.heap: list = []
        self.expanded = 0  # nodes whose children were bounded
        self.bounded = 0  # child bounds computed
        open_sets = [np.broadcast_to(self.everyone[g], (len(self.candidates[g]), self.group_words[g])).copy()
                     for g in range(self.num_classes)]
        with tqdm(total=len(self.candidates[0]), desc="label search", leave=False, disable=not progress) as bar:
            self._search(0, (), set(), [], open_sets, bar)
        ordered = sorted(self.heap, key=lambda e: (-e[0], tuple(-r for r in e[1])))
        return [Assignment(words, correct / self.num_examples, tuple(-r for r in negated), correct)
                for correct, negated, words in ordered]


# ---------------------------------------------------------------------------------------------
# Step 2, Pearson (regression, two poles): vectorised enumeration of all pairs


def _pearson_rows(predictions: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of `predictions` [P, N] with `gold` [N]; 0.0 where undefined
    (a constant row or constant gold), as in metrics.pearson."""
    centred = predictions - predictions.mean(axis=1, keepdims=True)
    gold_centred = gold - gold.mean()
    numerator = centred @ gold_centred
    denominator = np.sqrt((centred ** 2).sum(axis=1) * (gold_centred ** 2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = numerator / denominator
    return np.where(denominator > 0, correlation, 0.0)


def _high_pole_probability(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """p(high) under a softmax over the two words' log-probabilities (inputs [..., N])."""
    with np.errstate(invalid="ignore", over="ignore"):
        p = 1.0 / (1.0 + np.exp(low - high))
    return np.nan_to_num(p, nan=0.5)  # both words at -inf: no preference


def _pearson_scores(logprobs: np.ndarray, gold: np.ndarray, candidates: list[list[int]],
                    pairs: np.ndarray) -> np.ndarray:
    low = logprobs[:, np.asarray(candidates[0])[pairs[:, 0]]].T  # [P, N]
    high = logprobs[:, np.asarray(candidates[1])[pairs[:, 1]]].T
    return _pearson_rows(_high_pole_probability(low, high), gold)


def _top_pearson(logprobs: np.ndarray, gold: np.ndarray, candidates: list[list[int]], n: int,
                 chunk: int = 4096) -> list[Assignment]:
    low_ids, high_ids = (np.asarray(c, dtype=np.int64) for c in candidates)
    grid = np.stack(np.meshgrid(np.arange(len(low_ids)), np.arange(len(high_ids)), indexing="ij"), -1).reshape(-1, 2)
    grid = grid[low_ids[grid[:, 0]] != high_ids[grid[:, 1]]]
    scores = np.concatenate([_pearson_scores(logprobs, gold, candidates, grid[s:s + chunk])
                             for s in range(0, len(grid), chunk)]) if len(grid) else np.zeros(0)
    order = np.lexsort((grid[:, 1], grid[:, 0], -scores))[:n]
    return [Assignment((int(low_ids[grid[j, 0]]), int(high_ids[grid[j, 1]])), float(scores[j]),
                       (int(grid[j, 0]), int(grid[j, 1])))
            for j in order]


def _as_gold_scores(labels, num_examples: int) -> np.ndarray:
    gold = labels.detach().cpu().double().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels, dtype=np.float64)
    if gold.shape != (num_examples,):
        raise UserError(f"expected one gold score per training example ({num_examples}), got shape {tuple(gold.shape)}")
    if not np.isfinite(gold).all():
        raise UserError("gold scores must be finite numbers for the Pearson metric")
    return gold


# ---------------------------------------------------------------------------------------------
# Public entry points of step 2


def _check_search_arguments(logprobs, labels, candidates, n: int, metric: str):
    if metric not in METRICS:
        raise UserError(f"unknown label-search metric {metric!r}; expected one of {METRICS}")
    if n < 1:
        raise UserError(f"n (assignments to keep) must be at least 1, got {n}")
    matrix = _as_numpy_logprobs(logprobs)
    checked = _check_candidates(candidates, matrix.shape[1])
    if metric == "pearson":
        if len(checked) != 2:
            raise UserError(f"the Pearson metric scores two poles (low, high); got {len(checked)} candidate lists")
        return matrix, _as_gold_scores(labels, matrix.shape[0]), checked
    return matrix, _as_numpy_labels(labels, matrix.shape[0], len(checked)), checked


def top_assignments(logprobs, labels, candidates: Sequence[Sequence[int]], n: int, metric: str = "acc", *,
                    progress: bool = False, stats: dict | None = None) -> list[Assignment]:
    """The exact top-n assignments (one candidate per class, no word shared by two classes).

    metric "acc": `labels` are class indices [N]; score = zero-shot training accuracy (a tie between
    the gold word and another class's word counts as wrong), found by branch and bound.
    metric "pearson": `labels` are gold scores [N] and `candidates` = [low pole, high pole]; score =
    Pearson correlation of p(high) with the gold scores, over all pairs (k^2, vectorised).
    Order: score descending, then per-class candidate ranks ascending. Fewer than n valid assignments:
    all of them. `stats`, if given, receives counts of the work done (nodes expanded, bounds or
    assignments scored)."""
    matrix, gold, checked = _check_search_arguments(logprobs, labels, candidates, n, metric)
    if metric == "pearson":
        result = _top_pearson(matrix, gold, checked, n)
        if stats is not None:
            stats.update(pairs_enumerated=len(checked[0]) * len(checked[1]))
        return result
    search = _AccuracyBranchAndBound(matrix, gold, checked)
    result = search.run(n, progress=progress)
    if stats is not None:
        stats.update(nodes_expanded=search.expanded, bounds_computed=search.bounded)
    return result


def _accuracy_of_rank_tuples(matrix: np.ndarray, gold: np.ndarray, candidates: list[list[int]],
                             rank_tuples: np.ndarray) -> np.ndarray:
    """Number of training examples right for each assignment, given as rows of ranks [P, C]."""
    token_table = [np.asarray(c, dtype=np.int64) for c in candidates]
    tokens = np.stack([token_table[c][rank_tuples[:, c]] for c in range(len(candidates))], axis=1)  # [P, C]
    values = matrix[:, tokens]  # [N, P, C]
    gold_values = np.take_along_axis(values, gold[:, None, None].repeat(values.shape[1], 1), axis=2)[..., 0]
    others = values.copy()
    np.put_along_axis(others, gold[:, None, None].repeat(values.shape[1], 1), -np.inf, axis=2)
    return (gold_values > others.max(axis=2)).sum(axis=0)


def score_assignments(logprobs, labels, candidates: Sequence[Sequence[int]], rank_tuples,
                      metric: str = "acc") -> np.ndarray:
    """Scores of the given assignments (rows of per-class ranks), by plain evaluation: the fraction of
    training examples right for "acc", the Pearson correlation for "pearson"."""
    matrix, gold, checked = _check_search_arguments(logprobs, labels, candidates, 1, metric)
    ranks = np.asarray(rank_tuples, dtype=np.int64).reshape(-1, len(checked))
    if metric == "pearson":
        return _pearson_scores(matrix, gold, checked, ranks)
    return _accuracy_of_rank_tuples(matrix, gold, checked, ranks) / matrix.shape[0]


def brute_force_top_assignments(logprobs, labels, candidates: Sequence[Sequence[int]], n: int,
                                metric: str = "acc", chunk: int = 2048) -> list[Assignment]:
    """Reference: score every assignment of the product (itertools.product, in chunks), keep the top n
    in the same order as `top_assignments`. Feasible only for small k^C."""
    matrix, gold, checked = _check_search_arguments(logprobs, labels, candidates, n, metric)
    best: list[tuple] = []  # (sort key, Assignment)
    product = itertools.product(*(range(len(c)) for c in checked))
    while raw := list(itertools.islice(product, chunk)):
        block = [r for r in raw if len({checked[c][rank] for c, rank in enumerate(r)}) == len(r)]
        if not block:
            continue
        ranks = np.asarray(block, dtype=np.int64)
        if metric == "pearson":
            scores = _pearson_scores(matrix, gold, checked, ranks)
            found = [Assignment((checked[0][r[0]], checked[1][r[1]]), float(s), tuple(r)) for r, s in zip(block, scores)]
        else:
            correct = _accuracy_of_rank_tuples(matrix, gold, checked, ranks)
            found = [Assignment(tuple(checked[c][rank] for c, rank in enumerate(r)), int(k) / matrix.shape[0],
                                tuple(r), int(k)) for r, k in zip(block, correct)]
        best.extend((-a.score, a.ranks, a) for a in found)
        best = sorted(best, key=lambda item: item[:2])[:n]
    return [a for _, _, a in best]


# ---------------------------------------------------------------------------------------------
# With a backbone: zero-shot log-probabilities and the whole search


@torch.no_grad()
def zero_shot_label_logprobs(backbone, task: TaskSpec, template: Template, examples: Sequence[Example], *,
                             batch_size: int = 32, max_length: int | None = None,
                             progress: bool = True) -> torch.Tensor:
    """Full-vocabulary log-probabilities at the label position of each example's prompt, [N, V] on the
    CPU in the examples' order. The prompt is built with the task's manual verbalizer only because
    the backbone's encoder asks for one; what precedes the label position does not depend on it."""
    if not examples:
        raise UserError(f"label search for {task.name} needs training examples; got none")
    verbalizer = Verbalizer.for_task(task)
    encoded = [backbone.encode(example, template, verbalizer, max_length=max_length) for example in examples]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))  # little padding per batch
    was_training = backbone.model.training
    backbone.train(False)
    rows: dict[int, torch.Tensor] = {}
    try:
        for offset in tqdm(range(0, len(order), batch_size), desc="zero-shot log-probs", leave=False,
                           disable=not progress):
            chunk = order[offset:offset + batch_size]
            logprobs = backbone.label_position_logprobs(backbone.collate([encoded[i] for i in chunk]))
            rows.update(zip(chunk, logprobs.float().cpu()))
    finally:
        backbone.train(was_training)
    return torch.stack([rows[i] for i in range(len(examples))])


def input_independent(logprobs: torch.Tensor, atol: float = 1e-6) -> bool:
    """True when every row equals the first one: the prompt's label position does not see the input.
    Every assignment then has the same kind of score and the search bound cannot prune."""
    return len(logprobs) > 1 and bool(torch.allclose(logprobs, logprobs[:1].expand_as(logprobs), atol=atol, rtol=0))


def _targets(task: TaskSpec, examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """(pole or class index per example for picking candidates, target for scoring assignments)."""
    missing = [i for i, e in enumerate(examples) if e.label is None]
    if missing:
        raise UserError(f"label search needs labelled training examples; examples {missing[:5]} have no label")
    if task.is_regression:
        gold = torch.tensor([float(e.label) for e in examples], dtype=torch.float64)
        return binarise_at_median(gold), gold
    classes = torch.tensor([task.label_index(e.label) for e in examples], dtype=torch.long)
    return classes, classes


def _seed_word_ids(backbone, task: TaskSpec, seed_words) -> list[int]:
    verbalizer = seed_words if isinstance(seed_words, Verbalizer) else Verbalizer.from_mapping(
        task, seed_words, source="seed words")
    return single_token_ids(backbone.tokenizer, verbalizer)


def search_label_words(backbone, task: TaskSpec, template: Template | str, train_examples: Sequence[Example], *,
                       k: int, n: int, seed_words=None, neighbours: int | None = None, batch_size: int = 32,
                       max_length: int | None = None, progress: bool = True) -> LabelSearchResult:
    """LM-BFF auto-L steps 1 and 2 for one template: candidates from the backbone's zero-shot
    log-probabilities on `train_examples`, then the exact top-n assignments by training accuracy
    (Pearson for a regression task, whose labels are binarised at the median to pick candidates).

    seed_words (a Verbalizer or a label -> word mapping) with `neighbours`: each class's candidates
    are restricted to the `neighbours` nearest tokens of its seed word in the output-embedding space
    (LM-BFF's TREC setting). Fine-tuning and re-ranking the n assignments on dev is the engine's job."""
    if isinstance(template, str):
        template = Template.parse(template)
    poles, targets = _targets(task, train_examples)
    logprobs = zero_shot_label_logprobs(backbone, task, template, train_examples, batch_size=batch_size,
                                        max_length=max_length, progress=progress)
    if input_independent(logprobs):
        raise UserError(
            f"template {template.to_lmbff()!r}: the label position gets the same log-probabilities for every "
            f"training example (e.g. a causal model whose label comes before the input, or inputs that tokenise "
            f"alike), so label search cannot tell words apart; for a causal model put the mask after the sentence(s)")
    allowed = backbone.word_token_mask()
    if seed_words is not None:
        if neighbours is None:
            raise UserError("seed words restrict candidates to their nearest neighbours; also give `neighbours`")
        embeddings = backbone.model.get_output_embeddings().weight
        nearest = nearest_neighbour_filter(embeddings, _seed_word_ids(backbone, task, seed_words), neighbours, allowed)
        allowed = neighbour_masks(nearest, logprobs.shape[1], allowed)
    names = task.label_names if len(task.label_names) == task.num_classes else task.labels
    candidates = candidate_words(logprobs, poles, task.num_classes, k, allowed, class_names=names)
    metric = "pearson" if task.is_regression else "acc"
    assignments = top_assignments(logprobs, targets, candidates, n, metric, progress=progress)
    return LabelSearchResult.build(task=task.name, labels=task.labels, metric=metric, k=k, candidates=candidates,
                                   assignments=assignments, id_to_word=backbone.token_to_word,
                                   template=template.to_lmbff(), num_examples=len(train_examples))
