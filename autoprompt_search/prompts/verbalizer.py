"""Verbalizers: the label word of each class, and how they become token ids."""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..textfiles import read_text
from ..tasks import TaskSpec
from .rendering import word_in_context


@dataclass(frozen=True)
class Verbalizer:
    """Class index -> label word, in the task's label order."""

    labels: tuple[str, ...]
    words: tuple[str, ...]

    @classmethod
    def from_mapping(cls, task: TaskSpec, mapping: dict | str, *, source: str = "mapping") -> "Verbalizer":
        """Accept a dict, a JSON object, or LM-BFF's Python-literal mapping string such as
        "{'0':'terrible','1':'great'}" (parsed with ast.literal_eval, never evaluated)."""
        if isinstance(mapping, str):
            mapping = parse_mapping_text(mapping, source=source)
        if not isinstance(mapping, dict):
            raise UserError(f"{source}: expected an object mapping each label to a word, got {type(mapping).__name__}")
        mapping = {str(k): v for k, v in mapping.items()}
        missing = [label for label in task.labels if label not in mapping]
        unknown = [key for key in mapping if key not in task.labels]
        if missing or unknown:
            raise UserError(
                f"{source}: label words must cover exactly the labels {list(task.labels)} of {task.name}; "
                f"missing {missing}, unknown {unknown}"
            )
        words = []
        for label in task.labels:
            word = mapping[label]
            if not isinstance(word, str) or not word.strip():
                raise UserError(f"{source}: the word for label {label!r} must be a non-empty string, got {word!r}")
            words.append(word.strip())
        first: dict[str, str] = {}
        for label, word in zip(task.labels, words):
            if word in first:
                raise UserError(f"{source}: two classes share a label word: labels {first[word]!r} and {label!r} both use {word!r}; "
                                f"each class needs its own word: change the word of label {label!r} in {source}")
            first[word] = label
        return cls(labels=tuple(task.labels), words=tuple(words))

    @classmethod
    def for_task(cls, task: TaskSpec, *, source: str | None = None) -> "Verbalizer":
        return cls.from_mapping(task, task.label_words, source=source or f"task {task.name}'s label_words")

    def to_mapping(self) -> dict[str, str]:
        return dict(zip(self.labels, self.words))

    def to_json(self) -> str:
        return json.dumps(self.to_mapping(), ensure_ascii=False)

    def __len__(self) -> int:
        return len(self.words)


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
    """Token id of each label word as it appears after a space (LM-BFF: ' ' + word). Masked LMs
    predict one token at the mask, so a word that is more than one token is an error."""
    ids = []
    for label, word in zip(verbalizer.labels, verbalizer.words):
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
