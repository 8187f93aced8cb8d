"""Several label words per class from one label search (`--label-words-per-class N`).

Each class lists its words in this order: its words in the top assignments (best assignment first),
then its remaining candidates in the search's ranking order (`--label-ranking`). A word that several
classes list stays with the class that lists it earliest (a tie drops it from all of them: it does not
tell those classes apart), and each class keeps its first N words. The best assignment's words are
first in their classes and distinct, so each class's first word, the one a demonstration shows, is
the word the exact search picked for it.
"""
from __future__ import annotations

from typing import Callable

from ..errors import UserError
from .results import LabelSearchResult


def class_word_lists(result: LabelSearchResult, per_class: int,
                     id_to_word: Callable[[int], str] | None = None) -> list[list[str]]:
    """Up to `per_class` words for each class of `result`, in the task's label order (see the module).
    A class can get none when its only words are also another class's at the same place (two tokens
    that read as the same word); the caller then has no multi-word mapping."""
    if per_class < 1:
        raise UserError(f"label words per class: expected an integer >= 1, got {per_class}")
    if not result.assignments:
        raise UserError(f"the label search for {result.task} found no assignment to take label words from")
    word_of = id_to_word or result.words.__getitem__
    orders: list[list[str]] = []
    for c, candidates in enumerate(result.candidates):
        ids = [a.word_ids[c] for a in result.assignments] + list(candidates)
        order: list[str] = []
        for token in ids:
            word = word_of(token).strip()
            if word and word not in order:
                order.append(word)
        orders.append(order)
    first_seen = [{word: position for position, word in enumerate(order)} for order in orders]
    lists = []
    for c, order in enumerate(orders):
        mine = [word for word in order
                if all(first_seen[c][word] < others.get(word, float("inf")) for d, others in enumerate(first_seen)
                       if d != c)]
        lists.append(mine[:per_class])
    return lists
