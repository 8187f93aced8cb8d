"""What a label search returns: an Assignment (one word per class) and the self-contained LabelSearchResult."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..tasks import TaskSpec
from ..prompts import Verbalizer


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
    # How candidates were ranked ("logprob" or "pmi") and scored ("first_token" at the label position,
    # or "whole_word": the classifier's class score of the whole word). A negative id in `candidates`
    # is a word given as text, not one vocabulary token.
    ranking: str = "logprob"
    scoring: str = "first_token"

    @classmethod
    def build(cls, *, task: str, labels: Sequence[str], metric: str, k: int, candidates: list[list[int]],
              assignments: list[Assignment], id_to_word: Callable[[int], str], template: str | None = None,
              num_examples: int = 0, ranking: str = "logprob", scoring: str = "first_token") -> "LabelSearchResult":
        tokens = sorted({t for words in candidates for t in words})
        return cls(task, tuple(labels), metric, k, candidates, assignments,
                   {t: id_to_word(t) for t in tokens}, template, num_examples, ranking, scoring)

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
        # The options enter the record only when not LM-BFF's, so older records read the same.
        options = {name: value for name, value, default in (("ranking", self.ranking, "logprob"),
                                                            ("scoring", self.scoring, "first_token"))
                   if value != default}
        return {
            **options,
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
                   data.get("template"), data.get("num_examples", 0), data.get("ranking", "logprob"),
                   data.get("scoring", "first_token"))
