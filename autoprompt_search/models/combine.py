"""Several label words per class: the backbones score every word as its own column, then each class's
columns are combined into one class score (log-sum-exp of the word scores, as AMuLaP sums the words'
probabilities, or their mean, as OpenPrompt's default)."""
from __future__ import annotations

import torch

from ..prompts import Verbalizer


def combine_word_scores(scores: torch.Tensor, verbalizer: Verbalizer | None) -> torch.Tensor:
    """[B, W] scores of `verbalizer.all_words` -> [B, C] class scores. A verbalizer with one word
    per class (or none) returns `scores` itself."""
    if verbalizer is None or not verbalizer.is_multiword:
        return scores
    if scores.shape[-1] != len(verbalizer.all_words):
        raise ValueError(f"got {scores.shape[-1]} word scores for {len(verbalizer.all_words)} label words")
    columns, start = [], 0
    for words in verbalizer.word_lists:
        group = scores[:, start:start + len(words)]
        columns.append(group.logsumexp(dim=1) if verbalizer.combine == "logsumexp" else group.mean(dim=1))
        start += len(words)
    return torch.stack(columns, dim=1)
