"""Rendering filled templates (`Block`s) to token ids.

The whole prompt is tokenised at once (so spaces and merges are exactly what the tokenizer does on
natural text); sentences are truncated when it is too long, never the template text or the label slot.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import UserError
from .template import Template


@dataclass(frozen=True)
class Block:
    """One filled instance of a template: the query (label_word None keeps the mask) or a
    demonstration (label_word fills the mask). Only the prompt's first block keeps its `cls`."""

    template: Template
    texts: tuple[str, ...]
    label_word: str | None = None
    is_demonstration: bool = False
    demo_label_words: tuple[str, ...] = ()  # *label_i*: the label word of class i
    demonstration_words: tuple[str, ...] = ()  # *labelx_i*: the label word of the prompt's i-th demonstration


@dataclass
class Rendered:
    """A rendered prompt. `prefix`/`suffix` are the text before/after the label slot (special tokens
    appear as their strings); `input_ids` are the ids of the whole prompt with `mask_token` in the
    slot, and `mask_index` its position."""

    prefix: str
    suffix: str
    slot_text: str
    input_ids: list[int]
    mask_index: int
    truncated: bool = False

    @property
    def text(self) -> str:
        return self.prefix + self.slot_text + self.suffix


@dataclass
class _Piece:
    text: str
    block: int
    sentence: int | None = None  # index into the sentence table when truncatable
    is_slot: bool = False
    word: str | None = None  # a label word, spaced according to the text before it


def word_in_context(word: str, preceding_text: str) -> str:
    """How a label word is written after `preceding_text`: after a space, as LM-BFF's ' ' + word,
    unless it starts with punctuation or begins the text."""
    if not word or word[0] in ".,!?;:'\")]}" or word[0].isspace():
        return word
    if not preceding_text or preceding_text[-1].isspace():
        return word
    return " " + word


def _special_text(kind: str, tokenizer) -> str:
    """The text of a special-token variable for this tokenizer. T5 has no [CLS] (LM-BFF skips it) and
    separates with </s>; a decoder-only model starts with its BOS token and has no separator."""
    t5_like = _is_t5_like(tokenizer)
    if kind == "cls":
        if tokenizer.cls_token is not None:
            return tokenizer.cls_token
        return "" if t5_like else (tokenizer.bos_token or "")
    if tokenizer.sep_token is not None:
        return tokenizer.sep_token
    return (tokenizer.eos_token or "") if t5_like else ""


def _is_t5_like(tokenizer) -> bool:
    return "T5" in type(tokenizer).__name__ or any(
        str(t).startswith("<extra_id_") for t in (getattr(tokenizer, "additional_special_tokens", None) or [])
    )


def _block_pieces(block: Block, block_index: int, tokenizer, sentences: list[list], slot: str) -> list[_Piece]:
    pieces: list[_Piece] = []
    for part in block.template.parts:
        if part.kind == "text":
            pieces.append(_Piece(part.text, block_index))
        elif part.kind == "cls":
            # Only the prompt's first block starts with cls/BOS: the query for a masked LM, the first
            # demonstration for a causal LM (which puts demonstrations before the query).
            if block_index == 0:
                pieces.append(_Piece(_special_text("cls", tokenizer), block_index))
        elif part.kind in ("sep", "sep+"):
            pieces.append(_Piece(_special_text(part.kind, tokenizer), block_index))
        elif part.kind == "mask":
            if block.label_word is None:
                pieces.append(_Piece(slot, block_index, is_slot=True))
            else:
                pieces.append(_Piece("", block_index, word=block.label_word))
        elif part.kind in ("label", "labelx"):
            words = block.demo_label_words if part.kind == "label" else block.demonstration_words
            if part.index >= len(words):
                given = "label words were given" if part.kind == "label" else "demonstrations are in the prompt"
                raise UserError(f"template uses *{part.variable_name()}* but only {len(words)} {given}")
            pieces.append(_Piece("", block_index, word=words[part.index]))
        elif part.kind == "sent":
            if part.index >= len(block.texts):
                raise UserError(
                    f"template {block.template.source or block.template.to_readable()!r} uses sentence "
                    f"{part.index} but the example has {len(block.texts)} sentence(s)"
                )
            sentences.append([part, part.apply_to_sentence(block.texts[part.index]), block_index])
            pieces.append(_Piece("", block_index, sentence=len(sentences) - 1))
    return pieces


def _assemble(pieces: list[_Piece], sentences: list[list]) -> tuple[str, list[tuple[int, int]], int, int]:
    """Join pieces into one string. Returns the text, each sentence's (start, end) character span, and
    the slot's (start, end)."""
    text = ""
    spans = [(0, 0)] * len(sentences)
    slot = (-1, -1)
    for piece in pieces:
        if piece.sentence is not None:
            part, sentence, _ = sentences[piece.sentence]
            if part.space and sentence and text and not text[-1].isspace():
                text += " "
            start = len(text)
            text += sentence
            spans[piece.sentence] = (start, len(text))
        elif piece.word is not None:
            text += word_in_context(piece.word, text)
        elif piece.is_slot:
            start = len(text)
            text += piece.text
            slot = (start, len(text))
        else:
            text += piece.text
    return text, spans, slot[0], slot[1]


def render_blocks(
    blocks: Sequence[Block],
    tokenizer,
    *,
    max_length: int,
    slot_text: str,
    mask_token_id: int | None = None,
    truncate_head: bool = False,
) -> Rendered:
    """Render blocks to one prompt of at most `max_length` tokens.

    `slot_text` fills the label slot while measuring: the mask token for a masked LM, the longest label
    word (in context) for a causal LM. Sentences are shortened, demonstrations before the query and the
    longest sentence first; template text and the slot are never cut. `truncate_head` cuts sentences
    from their start instead of their end.
    """
    if sum(b.label_word is None and any(p.kind == "mask" for p in b.template.parts) for b in blocks) != 1:
        raise UserError("exactly one block (the query) must keep its mask")
    sentences: list[list] = []
    pieces: list[_Piece] = []
    for index, block in enumerate(blocks):
        pieces.extend(_block_pieces(block, index, tokenizer, sentences, slot_text))
    query_block = next(i for i, b in enumerate(blocks) if b.label_word is None)
    truncated = False
    for _ in range(64):
        text, spans, slot_start, slot_end = _assemble(pieces, sentences)
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoding["input_ids"]
        if len(ids) <= max_length:
            break
        truncated = True
        excess = len(ids) - max_length
        if not _cut_one_sentence(sentences, spans, encoding["offset_mapping"], excess, query_block, truncate_head):
            raise UserError(
                f"the template alone needs {len(ids)} tokens with empty sentences, more than max_length="
                f"{max_length}; raise max_length or shorten the template"
            )
    else:  # pragma: no cover - the loop cuts at least one token per pass
        raise RuntimeError("truncation did not converge")
    mask_index = _slot_token_index(ids, encoding["offset_mapping"], slot_start, slot_end, mask_token_id)
    return Rendered(prefix=text[:slot_start], suffix=text[slot_end:], slot_text=text[slot_start:slot_end],
                    input_ids=list(ids), mask_index=mask_index, truncated=truncated)


def _tokens_in(span: tuple[int, int], offsets) -> list[int]:
    # Overlap, not containment: byte-level BPE offsets include the space before a word, so the
    # first token of a sentence that follows a space starts one character before the span.
    start, end = span
    return [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]


def _cut_one_sentence(sentences, spans, offsets, excess, query_block, truncate_head) -> bool:
    """Shorten one sentence by up to `excess` tokens. Demonstrations go first, then the query;
    within a group, the sentence with the most tokens."""
    candidates = []
    for index, (part, sentence, block) in enumerate(sentences):
        tokens = _tokens_in(spans[index], offsets)
        if tokens:
            candidates.append((block == query_block, -len(tokens), index, tokens))
    for _, _, index, tokens in sorted(candidates):
        if _shorten_sentence(sentences[index], spans[index][0], tokens, offsets, excess, truncate_head):
            return True
    return False


def _shorten_sentence(entry: list, base: int, tokens: list[int], offsets, excess: int, truncate_head: bool) -> bool:
    """Cut about `excess` tokens off the sentence in `entry`. Cuts more when tokens share characters
    (SentencePiece's lone '▁' before punctuation has the same offset as the next piece) so that
    every call makes progress."""
    sentence = entry[1]
    for keep in range(max(len(tokens) - excess, 0), -1, -1):
        if truncate_head:
            cut = offsets[tokens[len(tokens) - keep]][0] - base if keep else len(sentence)
            shorter = sentence[max(cut, 0):].lstrip()
        else:
            cut = offsets[tokens[keep]][0] - base if keep < len(tokens) else len(sentence)
            shorter = sentence[:max(cut, 0)].rstrip()
        if shorter != sentence:
            entry[1] = shorter
            return True
    return False


def _slot_token_index(ids, offsets, slot_start, slot_end, mask_token_id) -> int:
    if mask_token_id is not None:
        positions = [i for i, token in enumerate(ids) if token == mask_token_id]
        if len(positions) != 1:
            raise UserError(f"the rendered prompt has {len(positions)} mask tokens; expected exactly one "
                            "(does an input sentence contain the mask token's text?)")
        return positions[0]
    for i, (a, b) in enumerate(offsets):
        if b > slot_start and a < max(slot_end, slot_start + 1):
            return i
    return len(ids)
