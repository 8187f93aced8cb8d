"""Input checks of the label search: log-probability matrices, class labels, gold scores, candidate lists."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import UserError


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


def _as_gold_scores(labels, num_examples: int) -> np.ndarray:
    gold = labels.detach().cpu().double().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels, dtype=np.float64)
    if gold.shape != (num_examples,):
        raise UserError(f"expected one gold score per training example ({num_examples}), got shape {tuple(gold.shape)}")
    if not np.isfinite(gold).all():
        raise UserError("gold scores must be finite numbers for the Pearson metric")
    return gold
