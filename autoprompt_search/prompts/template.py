"""Prompt templates: LM-BFF syntax and a readable syntax, and rendering to token ids.

LM-BFF writes a template as variables between asterisks with `_` for a space in literal text:
``*cls**sent_0*_It_was*mask*.*sep+*``. The readable form of the same template is
``{cls}{sent_0} It was{mask}.{sep+}``. Both parse to the same `Template`.

Variables: ``cls``, ``mask``, ``sep``, ``sep+`` (a separator that starts a new segment), ``sent_i``
with optional modifiers ``+`` (a space before it), ``l``/``u`` (lower/upper-case the first letter) and
``-`` (drop the last character, usually the final punctuation): ``+sent_i``, ``sent-_i``, ``sentl_i``,
``sentu_i``, ``+sentl_i``, ``+sentu_i``, ``sentl-_i``; ``label_i`` (the label word of class i) and
``labelx_i`` (the label word of the i-th demonstration) for hand-written demonstration templates.

Rendering tokenises the whole prompt at once (so spaces and merges are exactly what the tokenizer does
on natural text) and truncates sentences, never the template text or the label slot.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from ..errors import UserError

SPECIALS = ("cls", "mask", "sep", "sep+")
_SENT_RE = re.compile(r"^(\+)?sent([lu])?(-)?_(\d+)$")
_LABEL_RE = re.compile(r"^label(x)?_(\d+)$")
_READABLE_VAR_RE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


@dataclass(frozen=True)
class Part:
    """One piece of a template: literal text, a special token, a sentence slot or a label word."""

    kind: str  # "text" | "cls" | "mask" | "sep" | "sep+" | "sent" | "label" | "labelx"
    text: str = ""
    index: int = 0
    space: bool = False
    case: str = ""  # "", "l" or "u"
    drop_last: bool = False

    def variable_name(self) -> str:
        if self.kind in SPECIALS:
            return self.kind
        if self.kind == "sent":
            return f"{'+' if self.space else ''}sent{self.case}{'-' if self.drop_last else ''}_{self.index}"
        if self.kind == "label":
            return f"label_{self.index}"
        if self.kind == "labelx":
            return f"labelx_{self.index}"
        raise ValueError(f"literal text has no variable name: {self.text!r}")

    def apply_to_sentence(self, sentence: str) -> str:
        """LM-BFF's sentence modifiers, except the leading space (added at rendering)."""
        if self.drop_last:
            sentence = sentence[:-1]
        if self.case == "l":
            sentence = sentence[:1].lower() + sentence[1:]
        elif self.case == "u":
            sentence = sentence[:1].upper() + sentence[1:]
        return sentence


def _parse_variable(name: str, source: str) -> Part:
    if name in SPECIALS:
        return Part(kind=name)
    match = _SENT_RE.match(name)
    if match:
        plus, case, minus, index = match.groups()
        return Part(kind="sent", index=int(index), space=bool(plus), case=case or "", drop_last=bool(minus))
    match = _LABEL_RE.match(name)
    if match:
        return Part(kind="labelx" if match.group(1) else "label", index=int(match.group(2)))
    raise UserError(
        f"template {source!r}: unknown variable {name!r}; expected one of cls, mask, sep, sep+, "
        "sent_i (with +, l/u, - modifiers), label_i, labelx_i"
    )


def _looks_like_variable(piece: str) -> bool:
    return piece in SPECIALS or bool(_SENT_RE.match(piece) or _LABEL_RE.match(piece))


# A misspelt sentence or label variable (`sentx_0`, `sent+_1`, `labl_0`): an error, not literal text.
_BROKEN_VARIABLE_RE = re.compile(r"^\+?(sent|label)[A-Za-z+\-]*_\d+$")


def _parse_lmbff(text: str) -> list[Part]:
    # LM-BFF splits on '*': every piece that names a variable is one, everything else is literal
    # text with '_' standing for a space.
    parts = []
    for piece in text.split("*"):
        if not piece:
            continue
        if _looks_like_variable(piece) or _BROKEN_VARIABLE_RE.match(piece):
            parts.append(_parse_variable(piece, text))
        else:
            parts.append(Part(kind="text", text=piece.replace("_", " ")))
    return parts


def _parse_readable(text: str) -> list[Part]:
    parts: list[Part] = []
    pos = 0
    literal = ""
    for match in _READABLE_VAR_RE.finditer(text):
        literal += text[pos:match.start()]
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal += token[0]
            continue
        if literal:
            parts.append(Part(kind="text", text=literal))
            literal = ""
        parts.append(_parse_variable(match.group(1).strip(), text))
    literal += text[pos:]
    if "{" in literal or "}" in literal:
        raise UserError(f"template {text!r}: unbalanced brace; write {{{{ or }}}} for a literal brace")
    if literal:
        parts.append(Part(kind="text", text=literal))
    return parts


def _merge_literals(parts: list[Part]) -> tuple[Part, ...]:
    merged: list[Part] = []
    for part in parts:
        if part.kind == "text" and merged and merged[-1].kind == "text":
            merged[-1] = Part(kind="text", text=merged[-1].text + part.text)
        else:
            merged.append(part)
    return tuple(merged)


@dataclass(frozen=True)
class Template:
    parts: tuple[Part, ...]
    source: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str, *, require_mask: bool = True) -> "Template":
        """Parse either syntax. The readable one is recognised by its braces."""
        if not isinstance(text, str) or not text.strip():
            raise UserError("template is empty; expected e.g. '*cls**sent_0*_It_was*mask*.*sep+*'")
        text = text.strip("\n")
        parts = _parse_readable(text) if "{" in text else _parse_lmbff(text)
        template = cls(parts=_merge_literals(parts), source=text)
        template.validate(require_mask=require_mask)
        return template

    def validate(self, *, require_mask: bool = True, num_sentences: int | None = None) -> None:
        masks = sum(p.kind == "mask" for p in self.parts)
        if require_mask and masks != 1:
            raise UserError(
                f"template {self.source or self.to_readable()!r} has {masks} mask slots; expected exactly one "
                "(*mask* or {mask})"
            )
        if num_sentences is not None:
            used = {p.index for p in self.parts if p.kind == "sent"}
            missing = set(range(num_sentences)) - used
            extra = {i for i in used if i >= num_sentences}
            if missing or extra:
                raise UserError(
                    f"template {self.source or self.to_readable()!r} must use sentences "
                    f"{list(range(num_sentences))}; missing {sorted(missing)}, unknown {sorted(extra)}"
                )

    @property
    def num_sentences(self) -> int:
        indices = [p.index for p in self.parts if p.kind == "sent"]
        return max(indices) + 1 if indices else 0

    def to_lmbff(self) -> str:
        out = []
        for part in self.parts:
            if part.kind == "text":
                if "_" in part.text or "*" in part.text:
                    raise UserError(
                        f"template text {part.text!r} contains '_' or '*', which LM-BFF syntax cannot express"
                    )
                escaped = part.text.replace(" ", "_")
                if _looks_like_variable(escaped) or _BROKEN_VARIABLE_RE.match(escaped):
                    raise UserError(f"template text {part.text!r} would read as a variable in LM-BFF syntax")
                out.append(escaped)
            else:
                out.append(f"*{part.variable_name()}*")
        return "".join(out)

    def to_readable(self) -> str:
        out = []
        for part in self.parts:
            if part.kind == "text":
                out.append(part.text.replace("{", "{{").replace("}", "}}"))
            else:
                out.append("{" + part.variable_name() + "}")
        return "".join(out)

    def __str__(self) -> str:
        return self.to_readable()


# ---------------------------------------------------------------------------------------------
# Rendering


@dataclass(frozen=True)
class Block:
    """One filled instance of a template: the query (label_word None keeps the mask) or a
    demonstration (label_word fills the mask). Only the prompt's first block keeps its `cls`."""

    template: Template
    texts: tuple[str, ...]
    label_word: str | None = None
    is_demonstration: bool = False
    demo_label_words: tuple[str, ...] = ()  # for *label_i* / *labelx_i* variables


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
            if part.index >= len(block.demo_label_words):
                raise UserError(f"template uses *{part.variable_name()}* but only "
                                f"{len(block.demo_label_words)} label words were given")
            pieces.append(_Piece("", block_index, word=block.demo_label_words[part.index]))
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


def load_template_lines(path) -> list[Template]:
    """Read LM-BFF's template files: one template per line; blank lines and '#' comments skipped.
    LM-BFF's auto-template files may carry a tab-separated score after the template."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise UserError(f"template file {path} does not exist")
    templates = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            templates.append(Template.parse(line.split("\t")[0]))
        except UserError as error:
            raise UserError(f"{path}, line {number}: {error}") from None
    if not templates:
        raise UserError(f"template file {path} holds no template")
    return templates
