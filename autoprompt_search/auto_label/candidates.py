"""Step 1 of the label search: per-class candidate words, the nearest-neighbour filter and its masks."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import UserError
from .inputs import _as_numpy_labels, _as_numpy_logprobs, _class_name


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


RANKINGS = ("logprob", "pmi")


def class_pmi(logprobs, labels, num_classes: int) -> np.ndarray:
    """[C, V] class-conditional PMI of every column: mean log p(w | x) over class c's examples minus
    the mean over all examples. Raw log-probability favours words likely everywhere (function words);
    PMI favours words that are likelier for one class than for the data as a whole. A word at -inf on
    every example has no information and gets -inf."""
    matrix = _as_numpy_logprobs(logprobs)
    gold = _as_numpy_labels(labels, matrix.shape[0], num_classes)
    overall = matrix.mean(axis=0)
    with np.errstate(invalid="ignore"):
        rows = [matrix[gold == c].mean(axis=0) - overall if (gold == c).any() else np.full_like(overall, -np.inf)
                for c in range(num_classes)]
    return np.nan_to_num(np.stack(rows), nan=-np.inf)


def candidate_words(logprobs, labels, num_classes: int, k: int | None, allowed=None, *,
                    class_names: Sequence[str] | None = None, ranking: str = "logprob",
                    pool: int | None = None) -> list[list[int]]:
    """For each class, the k allowed tokens (columns) ranked best, best first; equal values are
    ordered by token id. `allowed` is a boolean mask over the vocabulary ([V], or [C, V] for one mask
    per class). k=None: every allowed token of each class, ranked.

    ranking "logprob" (LM-BFF): the largest log-probability summed over the class's training examples.
    ranking "pmi": the largest class-conditional PMI (`class_pmi`). With `pool`, PMI ranks only the
    `pool` tokens of largest summed log-probability for that class: over a whole vocabulary and a few
    examples, the top PMI is otherwise held by rare tokens whose tiny probability happens to vary."""
    if ranking not in RANKINGS:
        raise UserError(f"unknown label-word ranking {ranking!r}; expected one of {RANKINGS}")
    matrix = _as_numpy_logprobs(logprobs)
    gold = _as_numpy_labels(labels, matrix.shape[0], num_classes)
    if num_classes < 2:
        raise UserError(f"label search needs at least 2 classes, got {num_classes}")
    if k is not None and k < 1:
        raise UserError(f"k (candidates per class) must be at least 1, got {k}")
    if pool is not None and pool < (k or 1):
        raise UserError(f"the PMI pool ({pool} tokens per class) must hold at least k={k} candidates")
    masks = _allowed_rows(allowed, num_classes, matrix.shape[1])
    pmi = class_pmi(matrix, gold, num_classes) if ranking == "pmi" else None
    result = []
    for c in range(num_classes):
        rows = gold == c
        if not rows.any():
            raise UserError(f"{_class_name(c, class_names)} has no training examples; every class needs at least one")
        token_ids = np.nonzero(masks[c])[0]
        if k is None and not len(token_ids):
            raise UserError(f"{_class_name(c, class_names)} has no allowed vocabulary entries")
        if k is not None and k > len(token_ids):
            raise UserError(f"k={k} candidates requested for {_class_name(c, class_names)} but only "
                            f"{len(token_ids)} vocabulary entries are allowed")
        totals = matrix[rows][:, token_ids].sum(axis=0)
        order = np.lexsort((token_ids, -totals))
        if pmi is None:
            result.append(token_ids[order[:k]].tolist())
            continue
        if pool is not None:
            token_ids = token_ids[order[:pool]]
        values = pmi[c, token_ids]
        result.append(token_ids[np.lexsort((token_ids, -values))[:k]].tolist())
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
