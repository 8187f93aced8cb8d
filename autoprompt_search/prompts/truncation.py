"""Per-sentence token limits (LM-BFF's `first_sent_limit` / `other_sent_limit`): sentences are cut at a
token boundary, counted as the template writes them, before the prompt is rendered."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from ..tasks import Example
from .template import Part, Template


def _token_offsets(tokenizer, text: str) -> list[tuple[int, int]]:
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [tuple(pair) for pair in encoding["offset_mapping"]]


def _token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0


@lru_cache(maxsize=65536)
def _truncate_cached(tokenizer, text: str, limit: int, leading_space: bool) -> str:
    prefix = " " if leading_space else ""
    offsets = _token_offsets(tokenizer, prefix + text)
    if len(offsets) <= limit:
        return text
    # Keep the characters of the first `keep` tokens; re-tokenising a cut text can merge pieces
    # differently, so keep fewer until the cut text itself is within the limit.
    for keep in range(limit, -1, -1):
        end = max((b for a, b in offsets[:keep]), default=0) - len(prefix)
        shorter = text[:max(end, 0)].rstrip()
        # Counted with the space, as LM-BFF counts enc(' ' + sentence): it merges into the first token.
        if not shorter or _token_count(tokenizer, prefix + shorter) <= limit:
            return shorter
    return ""  # pragma: no cover - keep == 0 always fits


def truncate_to_tokens(text: str, tokenizer, limit: int | None, *, leading_space: bool = False) -> str:
    """The longest start of `text` (cut at a token boundary) that is at most `limit` tokens of
    `tokenizer`, counted as the text is written after a space when `leading_space`."""
    if limit is None:
        return text
    if limit < 1:
        raise ValueError(f"a sentence limit must be a positive number of tokens, got {limit}")
    return _truncate_cached(tokenizer, text, int(limit), leading_space)


def _sentence_parts(template: Template) -> dict[int, Part]:
    """The first slot of each sentence index in the template (how that sentence is written)."""
    parts: dict[int, Part] = {}
    for part in template.parts:
        if part.kind == "sent" and part.index not in parts:
            parts[part.index] = part
    return parts


def _limit_sentence(sentence: str, part: Part | None, tokenizer, limit: int | None) -> str:
    """Cut `sentence` so that the template's rendering of it has at most `limit` tokens."""
    if limit is None or part is None:
        return truncate_to_tokens(sentence, tokenizer, limit)
    written = part.apply_to_sentence(sentence)
    cut = truncate_to_tokens(written, tokenizer, limit, leading_space=part.space)
    if cut == written:
        return sentence
    # The modifiers only change the first letter's case and drop the last character: give the
    # template the original characters, plus one to drop when the slot drops the last character.
    restored = sentence[:len(cut)]
    return restored + sentence[-1:] if part.drop_last else restored


@dataclass(frozen=True)
class SentenceLimits:
    """LM-BFF's `first_sent_limit` / `other_sent_limit`: tokens kept of the query's first sentence and
    of every other sentence (the query's second one and all demonstration sentences). None: no limit."""

    first: int | None = None
    other: int | None = None

    @property
    def active(self) -> bool:
        return self.first is not None or self.other is not None

    def limit_example(self, example: Example, tokenizer, template: Template, *, is_query: bool) -> Example:
        if not self.active:
            return example
        parts = _sentence_parts(template)
        texts = tuple(
            _limit_sentence(text, parts.get(index), tokenizer,
                            self.first if is_query and index == 0 else self.other)
            for index, text in enumerate(example.texts)
        )
        return example if texts == example.texts else Example(texts, example.label)

    def apply(self, tokenizer, template: Template, query: Example,
              demonstrations: Sequence[tuple[Example, int]] = ()) -> tuple[Example, list[tuple[Example, int]]]:
        """The query and its demonstrations with every sentence cut to its limit."""
        return (self.limit_example(query, tokenizer, template, is_query=True),
                [(self.limit_example(demo, tokenizer, template, is_query=False), label)
                 for demo, label in demonstrations])


