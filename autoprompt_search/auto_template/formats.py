"""The template formats a generator writes, and how generated spans become a valid LM-BFF template:
token texts, forbidden tokens, assembling the template around the mask, validating it."""
from __future__ import annotations

import string
from typing import Iterable, Sequence

from ..errors import UserError
from ..prompts import Template
from ..tasks import TaskSpec

SINGLE_SENTENCE_FORMATS = ("A", "B")
PAIR_FORMATS = ("pair",)
FORMAT_DESCRIPTIONS = {
    "A": "sentence first: <x> <span 1> <label word> <span 2>",
    "B": "template first: <span 1> <label word> <span 2> <x>",
    "pair": "<x1 without final punctuation> <span 1> <label word> <span 2> <x2>",
}

# Characters that LM-BFF template syntax cannot hold in literal text ("_" means a space, "*" delimits
# variables, braces mark the readable syntax) or that would break a one-template-per-line file.
_UNREPRESENTABLE_CHARS = set("*_{}\n\r\t\ufffd")


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _strip_final_punctuation(text: str) -> str:
    text = text.rstrip()
    return text[:-1].rstrip() if text and text[-1] in string.punctuation else text


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def token_texts(tokenizer, vocab_size: int) -> list[str]:
    """The surface text of every token id, with a leading space where the token starts a word."""
    n = min(len(tokenizer), vocab_size)
    pieces = tokenizer.convert_ids_to_tokens(list(range(n)))
    texts = []
    for token_id, piece in enumerate(pieces):
        if piece is None:
            texts.append("")
        elif "\u2581" in piece:  # sentencepiece marks a space with U+2581
            texts.append(piece.replace("\u2581", " "))
        else:
            texts.append(tokenizer.decode([token_id], clean_up_tokenization_spaces=False))
    return texts + [""] * (vocab_size - n)


def default_forbidden_token_ids(tokenizer, vocab_size: int) -> set[int]:
    """Tokens never added to a template: special tokens, lone spaces, runs of dots, and tokens whose text
    the LM-BFF syntax cannot hold (`*`, `_`, braces, newlines, partial UTF-8 bytes)."""
    texts = token_texts(tokenizer, vocab_size)
    forbidden = set(int(i) for i in tokenizer.all_special_ids if i is not None)
    for token_id, text in enumerate(texts):
        core = text.strip()
        if token_id >= len(tokenizer) or not core:
            forbidden.add(token_id)
        elif len(core) >= 2 and set(core) == {"."}:
            forbidden.add(token_id)
        elif _UNREPRESENTABLE_CHARS & set(text):
            forbidden.add(token_id)
    return forbidden


def _dot_ids(texts: list[str]) -> list[int]:
    return [i for i, text in enumerate(texts) if text.strip() == "."]


def _span_literal(token_ids: Iterable[int], texts: list[str]) -> str:
    return "".join(texts[i] for i in token_ids).replace(" ", "_")


def _template_for(fmt: str, span1: str, span2: str) -> str:
    sentence_follows = "" if span2.endswith("_") else "+"
    if fmt == "A":
        return f"*cls**sent_0*{span1}*mask*{span2}*sep+*"
    if fmt == "B":
        return f"*cls*{span1}*mask*{span2}*{sentence_follows}sent_0**sep+*"
    if fmt == "pair":
        return f"*cls**sent-_0*{span1}*mask*{span2}*{sentence_follows}sentl_1**sep+*"
    raise AssertionError(fmt)


def _validated(template: str, num_sentences: int) -> str | None:
    """The readable form of a valid template, None if it is not valid for the task."""
    try:
        parsed = Template.parse(template)
        parsed.validate(num_sentences=num_sentences)
    except UserError:
        return None
    return parsed.to_readable()


def _check_formats(task: TaskSpec, formats: Sequence[str] | None) -> tuple[str, ...]:
    allowed = PAIR_FORMATS if task.num_sentences == 2 else SINGLE_SENTENCE_FORMATS
    if formats is None:
        return allowed
    formats = tuple(formats)
    bad = [f for f in formats if f not in allowed]
    if bad or not formats:
        raise UserError(f"formats {list(formats)} are not available for task {task.name} "
                        f"({task.num_sentences} sentence(s)); expected some of {list(allowed)}")
    return formats
