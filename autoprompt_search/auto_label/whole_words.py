"""Whole-word scores of candidate label words, computed by the backbone's own class-scoring path.

Step 1 of the label search reads one distribution at the label position, so it sees only a word's
first token. A causal backbone's classifier scores far more: the log-likelihood of the word's every
token and of the template text after it (`CausalLMBackbone.class_scores`). Ranking and assigning
words on first-token log-probabilities is then exact for another objective than the one the
classifier uses. Here each candidate word is scored per training example by encoding the example
with a verbalizer whose "classes" are the candidate words and calling `backbone.class_scores`: the
same encoding and scoring `training.evaluate` runs, so a word's column equals the classifier's class
score for that word (exactly when the prompt fits `max_length`; when a sentence must be cut, the
slot is sized by the longest word scored together, as the classifier sizes it by its own words).
"""
from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..errors import UserError
from ..prompts import Template, Verbalizer
from ..tasks import Example, TaskSpec


def _distinct_words(words: Sequence[str]) -> list[str]:
    checked = [str(w).strip() for w in words]
    if not checked or any(not w for w in checked):
        raise UserError(f"whole-word scoring needs non-empty words, got {list(words)[:5]}")
    if len(set(checked)) != len(checked):
        raise UserError(f"whole-word scoring got a word twice: {checked}")
    return checked


@torch.no_grad()
def whole_word_scores(backbone, task: TaskSpec, template: Template | str, examples: Sequence[Example],
                      words: Sequence[str], *, batch_size: int = 8, words_per_pass: int = 32,
                      max_length: int | None = None, progress: bool = False) -> torch.Tensor:
    """[N, W] float64 on the CPU: the causal backbone's class score of each word (all its tokens and
    the template text after it) on each example, in the examples' and words' order. Words are scored
    `words_per_pass` at a time, sharing each example's prefix cache."""
    if getattr(backbone, "kind", None) != "causal":
        raise UserError("whole-word label scores are for causal backbones; a masked LM scores one token "
                        "at the mask, which the first-token log-probabilities already are")
    if not examples:
        raise UserError(f"label search for {task.name} needs training examples; got none")
    if isinstance(template, str):
        template = Template.parse(template)
    words = _distinct_words(words)
    was_training = backbone.model.training
    backbone.train(False)
    result = torch.zeros((len(examples), len(words)), dtype=torch.float64)
    passes = range(0, len(words), words_per_pass)
    try:
        with tqdm(total=len(passes) * len(examples), desc="whole-word scores", leave=False,
                  disable=not progress) as bar:
            for start in passes:
                chunk = words[start:start + words_per_pass]
                # Only `words` of a verbalizer reach the causal encoder; the labels just name its columns.
                verbalizer = Verbalizer(labels=tuple(str(i) for i in range(len(chunk))), words=tuple(chunk))
                encoded = [backbone.encode(e, template, verbalizer, max_length=max_length) for e in examples]
                order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
                for offset in range(0, len(order), batch_size):
                    rows = order[offset:offset + batch_size]
                    scores = backbone.class_scores(backbone.collate([encoded[i] for i in rows]), verbalizer)
                    result[rows, start:start + len(chunk)] = scores.float().cpu().double()
                    bar.update(len(rows))
    finally:
        backbone.train(was_training)
    return result
