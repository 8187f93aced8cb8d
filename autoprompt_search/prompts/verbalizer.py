"""Verbalizers: the label word(s) of each class, and how they become token ids.

A class may have several label words (as in AMuLaP and OpenPrompt): the mapping gives it a list,
`{"positive": ["great", "good"], "negative": "terrible"}`, and its score combines its words' scores
by `combine`, written in the mapping under the reserved key `"_combine"` (a task label of that name keeps
its meaning as a label): "logsumexp" (the default: the class's probability is the sum of its words', as
in AMuLaP, so on lists of different lengths the longer list has an advantage of up to log n), "logmeanexp"
(the mean of its words' probabilities: the same class probabilities as "logsumexp" when every class has
as many words, and no advantage from the count when they differ; what the search's own word lists use),
or "mean" (the mean of the words' log-probabilities, as OpenPrompt). A one-word list is the same
verbalizer as the string, and a verbalizer with one word per class writes exactly the `{label: word}`
mapping it always did, so candidate ids of one-word mappings do not change.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import UserError
from ..textfiles import read_text
from ..tasks import TaskSpec
from .rendering import word_in_context

COMBINE_KEY = "_combine"
COMBINES = ("logsumexp", "logmeanexp", "mean")
# The word lists the search builds itself (synonyms, searched words per class) can differ in length from
# class to class; the mean of the words' probabilities does not favour the longer list (results/combine_counts.md).
SEARCHED_LISTS_COMBINE = "logmeanexp"


@dataclass(frozen=True)
class Verbalizer:
    """Class index -> label word(s), in the task's label order. `words` holds each class's first word
    (what a demonstration shows); `word_lists` every word of each class (one-word lists when not given)."""

    labels: tuple[str, ...]
    words: tuple[str, ...]
    word_lists: tuple[tuple[str, ...], ...] = ()
    combine: str = "logsumexp"

    def __post_init__(self):
        lists = tuple(tuple(words) for words in self.word_lists) or tuple((word,) for word in self.words)
        if len(lists) != len(self.words) or any(not ws or ws[0] != w for ws, w in zip(lists, self.words)):
            raise ValueError(f"word_lists {lists} do not start with the words {self.words}")
        if self.combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {self.combine!r}")
        object.__setattr__(self, "word_lists", lists)
        if not self.is_multiword:  # one word per class: every combine scores the same
            object.__setattr__(self, "combine", "logsumexp")

    @classmethod
    def from_word_lists(cls, labels: Sequence[str], word_lists: Sequence[Sequence[str]],
                        combine: str = "logsumexp") -> "Verbalizer":
        lists = tuple(tuple(words) for words in word_lists)
        return cls(tuple(labels), tuple(words[0] for words in lists), lists, combine)

    @property
    def is_multiword(self) -> bool:
        return any(len(words) > 1 for words in self.word_lists)

    @property
    def all_words(self) -> tuple[str, ...]:
        """Every label word, class by class: the columns a backbone scores before `combine`."""
        return tuple(word for words in self.word_lists for word in words)

    @classmethod
    def from_mapping(cls, task: TaskSpec, mapping: dict | str, *, source: str = "mapping") -> "Verbalizer":
        """Accept a dict, a JSON object, or LM-BFF's Python-literal mapping string such as
        "{'0':'terrible','1':'great'}" (parsed with ast.literal_eval, never evaluated). A label maps to
        a word or a list of words."""
        return cls.from_labels(task.labels, mapping, task_name=task.name, source=source)

    @classmethod
    def from_labels(cls, labels: Sequence[str], mapping: dict | str, *, task_name: str = "the task",
                    source: str = "mapping") -> "Verbalizer":
        if isinstance(mapping, str):
            mapping = parse_mapping_text(mapping, source=source)
        if not isinstance(mapping, dict):
            raise UserError(f"{source}: expected an object mapping each label to a word, got {type(mapping).__name__}")
        mapping = {str(k): v for k, v in mapping.items()}
        labels = tuple(labels)
        combine = mapping.pop(COMBINE_KEY, "logsumexp") if COMBINE_KEY not in labels else "logsumexp"
        if combine not in COMBINES:
            raise UserError(f"{source}: {COMBINE_KEY!r}: expected 'logsumexp', 'logmeanexp' or 'mean' (how a "
                            f"class's label words' scores combine), got {combine!r}")
        missing = [label for label in labels if label not in mapping]
        unknown = [key for key in mapping if key not in labels]
        if missing or unknown:
            raise UserError(
                f"{source}: label words must cover exactly the labels {list(labels)} of {task_name}; "
                f"missing {missing}, unknown {unknown}"
            )
        lists = [_class_words(label, mapping[label], source) for label in labels]
        first: dict[str, str] = {}
        for label, words in zip(labels, lists):
            for word in words:
                if word in first:
                    raise UserError(f"{source}: two classes share a label word: labels {first[word]!r} and {label!r} both use {word!r}; "
                                    f"each class needs its own word: change the word of label {label!r} in {source}")
                first[word] = label
        return cls.from_word_lists(labels, lists, combine)

    @classmethod
    def for_task(cls, task: TaskSpec, *, source: str | None = None) -> "Verbalizer":
        return cls.from_mapping(task, task.label_words, source=source or f"task {task.name}'s label_words")

    def to_mapping(self) -> dict:
        """`{label: word}`; with several words per class, a class's list (a string when it has one word)
        and the `"_combine"` key."""
        if not self.is_multiword:
            return dict(zip(self.labels, self.words))
        mapping = {label: words[0] if len(words) == 1 else list(words)
                   for label, words in zip(self.labels, self.word_lists)}
        return {**mapping, COMBINE_KEY: self.combine}

    def to_json(self) -> str:
        return json.dumps(self.to_mapping(), ensure_ascii=False)

    def __len__(self) -> int:
        return len(self.words)


def _class_words(label: str, value, source: str) -> tuple[str, ...]:
    """One class's label words: a string is a one-word list."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"{source}: the word for label {label!r} must be a non-empty string (or a list of "
                            f"them), got {value!r}")
        return (value.strip(),)
    if not value:
        raise UserError(f"{source}: label {label!r} has an empty list of words; give at least one word")
    words = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise UserError(f"{source}: label {label!r}: each word in its list must be a non-empty string, "
                            f"got {item!r} in {list(value)!r}")
        if item.strip() in words:
            raise UserError(f"{source}: label {label!r} lists the word {item.strip()!r} twice")
        words.append(item.strip())
    return tuple(words)


def parse_mapping_text(text: str, *, source: str = "mapping") -> dict:
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError) as error:
        raise UserError(f"{source}: not a JSON object or a Python dict literal: {text!r} ({error})") from None
    return value


def load_mapping_lines(path, task: TaskSpec) -> list[Verbalizer]:
    """LM-BFF's label-word files: one mapping per line (JSON or Python dict literal), or a JSON list."""
    return [verbalizer for _, verbalizer in mapping_entries(path, task)]


def mapping_entries(path, task: TaskSpec) -> list[tuple[str, Verbalizer]]:
    """The mappings of a label-word file, each with where it is (`path, line N` or `path, item N`)."""
    path = Path(path)
    text = read_text(path, "mapping file")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}: invalid JSON list of mappings ({error})") from None
        if not isinstance(items, list):
            raise UserError(f"{path}: expected a JSON list of mappings")
        mappings = []
        for i, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("label_words"), dict):
                item = item["label_words"]  # a record from `search-templates labels --output`
            if not isinstance(item, dict):
                raise UserError(f"{path}, item {i}: expected an object mapping labels to words, got {item!r}")
            mappings.append((f"{path}, item {i}", Verbalizer.from_mapping(task, item, source=f"{path}, item {i}")))
        return mappings
    mappings = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}, line {number}"
        mappings.append((where, Verbalizer.from_mapping(task, line.split("\t")[0], source=where)))
    if not mappings:
        raise UserError(f"mapping file {path} holds no mapping")
    return mappings


def single_token_ids(tokenizer, verbalizer: Verbalizer, *, context: str = "x") -> list[int]:
    """Token id of each label word as it appears after a space (LM-BFF: ' ' + word), in the order of
    `verbalizer.all_words` (one per class unless a class has several words). Masked LMs predict one
    token at the mask, so a word that is more than one token is an error."""
    ids = []
    word_labels = [(label, word) for label, words in zip(verbalizer.labels, verbalizer.word_lists) for word in words]
    for label, word in word_labels:
        spaced = word_in_context(word, context)
        tokens = tokenizer(spaced, add_special_tokens=False)["input_ids"]
        unknown = getattr(tokenizer, "unk_token_id", None)
        if len(tokens) == 1 and unknown is not None and tokens[0] == unknown and word != tokenizer.unk_token:
            raise UserError(f"label word {word!r} (label {label!r}) is not in this masked LM's vocabulary (it "
                            f"reads as {tokenizer.unk_token}); choose a word the model knows")
        if len(tokens) != 1:
            pieces = tokenizer.convert_ids_to_tokens(tokens)
            raise UserError(
                f"label word {word!r} (label {label!r}) is {len(tokens)} tokens {pieces} for this masked "
                "LM; a masked LM needs single-token label words"
            )
        ids.append(tokens[0])
    return ids
