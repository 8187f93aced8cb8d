"""A prompt for a task that gave none: a generic template, and label words read from the label names.

A custom task file may leave out `template` and `label_words`. The search then starts from what is
here and generates templates and searches label words from the data; these are only its first
candidates. The templates do not assume a kind of task (no "It was great" for sentiment).
"""
from __future__ import annotations

import re
from typing import Sequence

# One sentence: the label after the text, as causal backbones need. Two sentences: LM-BFF's
# entailment-style question between them, which reads for any relation between two texts.
GENERIC_TEMPLATES = {
    1: "*cls**sent_0*_This_is*mask*.*sep+*",
    2: "*cls**sent-_0*?*mask*,*+sentl_1**sep+*",
}

# Longer names ("very positive") are more phrase than word; the label search does better there.
_MAX_WORDS = 2
_WORDS = re.compile(r"[a-z]+(?: [a-z]+)*")


def generic_template(num_sentences: int) -> str:
    return GENERIC_TEMPLATES[num_sentences]


def readable_label_word(name: str) -> str | None:
    """The label word a label name reads as: lower-cased, `_`/`-` as spaces ("not_entailment" ->
    "not entailment"); None for a symbolic name ("0", "B-PER", "4 stars") that is no word."""
    text = re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()
    if not _WORDS.fullmatch(text) or len(text.split()) > _MAX_WORDS:
        return None
    return text


def label_words_from_names(labels: Sequence[str], names: Sequence[str] = ()) -> dict[str, str] | None:
    """Label -> word from the label names (`names` where given, else the labels themselves), or None
    when one of them is no word or two classes would share a word: the search then finds the words."""
    names = names if len(names) == len(labels) else labels
    words = [readable_label_word(name) for name in names]
    if any(word is None for word in words) or len(set(words)) != len(words):
        return None
    return dict(zip(labels, words))
