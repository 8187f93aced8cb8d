"""Synonyms of each class's word as extra label words (`--label-synonyms N`).

The label search proper ranks words by what fits 16 training examples; on a small backbone that favours
function words. This source starts from each class's own word (the task's, or the one its label name
gives) and adds up to N words that mean the same, so the class scores several words that all say it (the mean
of their probabilities: classes may end with different numbers of words). A candidate synonym must pass three checks:

1. it is a word the backbone finds plausible at the label position: one of the `pool` whole-word tokens
   of largest mean log-probability there over the training examples;
2. a sentence encoder (all-MiniLM-L6-v2 by default) puts it nearer its own class's word than every
   other class's word, by cosine similarity of at least `min_similarity` (antonyms such as good and bad
   are near each other in that space, so nearness to one word alone would mix the classes);
3. its class-conditional PMI on the training examples (`class_pmi`) is positive for that class: the
   backbone itself finds it likelier for that class's examples than for the data as a whole.

Among those, each class takes its N nearest. A class keeps its own word first, so a demonstration still
shows it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..errors import UserError
from .candidates import class_pmi
from .inputs import _as_numpy_labels, _as_numpy_logprobs

DEFAULT_POOL = 2000
DEFAULT_MIN_SIMILARITY = 0.6


@dataclass
class SynonymChoice:
    """Each class's words (its own first) and, per added word, its similarity and PMI, for the record."""

    words: list[list[str]]
    evidence: list[list[dict]] = field(default_factory=list)


def choose_synonyms(seed_words: Sequence[str], logprobs, classes, allowed, token_to_word: Callable[[int], str],
                    encode: Callable[[Sequence[str]], np.ndarray], per_class: int, *, pool: int = DEFAULT_POOL,
                    min_similarity: float = DEFAULT_MIN_SIMILARITY) -> SynonymChoice:
    """Up to `per_class` synonyms for each class's `seed_words[c]` (see the module). `logprobs`: [N, V]
    label-position log-probabilities of the training examples; `classes`: each example's class index;
    `allowed`: [V] mask of whole-word tokens; `encode`: texts -> [n, d] unit vectors."""
    if per_class < 1:
        raise UserError(f"label synonyms: expected an integer >= 1 per class, got {per_class}")
    if pool < 1:
        raise UserError(f"label synonyms: the pool must hold at least 1 word, got {pool}")
    matrix = _as_numpy_logprobs(logprobs)
    num_classes = len(seed_words)
    gold = _as_numpy_labels(classes, matrix.shape[0], num_classes)
    allowed = np.asarray(allowed, dtype=bool)
    if allowed.shape != (matrix.shape[1],):
        raise UserError(f"label synonyms: the allowed-token mask must have shape [{matrix.shape[1]}], "
                        f"got {tuple(allowed.shape)}")
    token_ids = np.nonzero(allowed)[0]
    overall = matrix[:, token_ids].mean(axis=0)
    token_ids = token_ids[np.lexsort((token_ids, -overall))][:pool]
    seen = {word.strip().lower() for word in seed_words}  # a seed's case variants are that seed, not synonyms
    ids, words = [], []
    for token in token_ids.tolist():
        word = token_to_word(token).strip()
        if word and word.lower() not in seen:
            seen.add(word.lower())
            ids.append(token)
            words.append(word)
    if not words:
        return SynonymChoice([[word] for word in seed_words], [[] for _ in seed_words])
    similarity = np.asarray(encode(words), dtype=np.float64) @ np.asarray(encode(list(seed_words)), dtype=np.float64).T
    pmi = class_pmi(matrix[:, ids], gold, num_classes)
    result, evidence = [], []
    for c, seed in enumerate(seed_words):
        others = np.delete(similarity, c, axis=1).max(axis=1)  # a classification task has at least 2 classes
        eligible = [j for j in range(len(words))
                    if similarity[j, c] >= min_similarity and similarity[j, c] > others[j] and pmi[c, j] > 0]
        eligible.sort(key=lambda j: (-similarity[j, c], words[j]))
        chosen = eligible[:per_class]
        result.append([seed, *(words[j] for j in chosen)])
        evidence.append([{"word": words[j], "similarity": round(float(similarity[j, c]), 4),
                          "pmi": round(float(pmi[c, j]), 4)} for j in chosen])
    return SynonymChoice(result, evidence)


def search_synonyms(backbone, task, template, train_examples, per_class: int, encode, *, seed_words=None,
                    pool: int = DEFAULT_POOL, min_similarity: float = DEFAULT_MIN_SIMILARITY,
                    max_length: int | None = None, progress: bool = True) -> SynonymChoice:
    """`choose_synonyms` for a backbone: the label-position log-probabilities of `train_examples` under
    `template`, the backbone's whole-word tokens, and each class's first word of `seed_words` (a Verbalizer;
    default the task's own)."""
    from ..prompts import Verbalizer
    from .search import _targets, zero_shot_label_logprobs

    verbalizer = seed_words or Verbalizer.for_task(task)
    if task.is_regression:
        raise UserError(f"label synonyms: {task.name} is a regression task; its two poles are no classes to "
                        f"find synonyms for")
    classes, _ = _targets(task, train_examples)
    logprobs = zero_shot_label_logprobs(backbone, task, template, train_examples, max_length=max_length,
                                        progress=progress)
    return choose_synonyms(list(verbalizer.words), logprobs, classes, backbone.word_token_mask(),
                           backbone.token_to_word, encode, per_class, pool=pool, min_similarity=min_similarity)
