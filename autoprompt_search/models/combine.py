"""Several label words per class: the backbones score every word as its own column, then each class's
columns are combined into one class score: log-sum-exp of the word scores (as AMuLaP sums the words'
probabilities), log-mean-exp (the mean of the words' probabilities: log-sum-exp minus log of the class's
word count, so a class does not gain from having more words than another), or the mean of the scores
(OpenPrompt's default)."""
from __future__ import annotations

import math

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
        columns.append(_combine(group, verbalizer.combine))
        start += len(words)
    return torch.stack(columns, dim=1)


def _combine(group: torch.Tensor, combine: str) -> torch.Tensor:
    if combine == "logsumexp":
        return group.logsumexp(dim=1)
    if combine == "logmeanexp":
        return group.logsumexp(dim=1) - math.log(group.shape[1])
    return group.mean(dim=1)
