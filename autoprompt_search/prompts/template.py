"""Prompt templates: LM-BFF syntax and a readable syntax, parsed to one `Template`; template files.

LM-BFF writes a template as variables between asterisks with `_` for a space in literal text:
``*cls**sent_0*_It_was*mask*.*sep+*``. The readable form of the same template is
``{cls}{sent_0} It was{mask}.{sep+}``. Both parse to the same `Template`.

Variables: ``cls``, ``mask``, ``sep``, ``sep+`` (a separator that starts a new segment), ``sent_i``
with optional modifiers ``+`` (a space before it), ``l``/``u`` (lower/upper-case the first letter) and
``-`` (drop the last character, usually the final punctuation): ``+sent_i``, ``sent-_i``, ``sentl_i``,
``sentu_i``, ``+sentl_i``, ``+sentu_i``, ``sentl-_i``; ``label_i`` (the label word of class i) and
``labelx_i`` (the label word of the i-th demonstration) for hand-written demonstration templates.

Rendering to token ids lives in `rendering.py`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import UserError
from ..textfiles import read_lines

SPECIALS = ("cls", "mask", "sep", "sep+")
_SENT_RE = re.compile(r"^(\+)?sent([lu])?(-)?_(\d+)$")
_LABEL_RE = re.compile(r"^label(x)?_(\d+)$")


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
    # LM-BFF splits on '*'. Asterisks come in pairs around a variable, so the pieces at odd
    # positions are between a pair: each must name a variable (LM-BFF would silently print an unknown
    # one as text). The other pieces are literal text with '_' standing for a space.
    count = text.count("*")
    if count % 2:
        last = text.rfind("*")
        raise UserError(f"template {text!r}: unclosed '*' at character {last + 1} (after {text[:last + 1][-12:]!r}); "
                        "each variable is written between two asterisks, e.g. *sep+*")
    parts = []
    for position, piece in enumerate(text.split("*")):
        if position % 2:
            if not piece:
                raise UserError(f"template {text!r}: empty variable '**' between a pair of asterisks")
            parts.append(_parse_variable(piece, text))
        elif piece:
            if _looks_like_variable(piece) or _BROKEN_VARIABLE_RE.match(piece):
                raise UserError(f"template {text!r}: {piece!r} reads as a variable without its asterisks; "
                                f"write *{piece}*")
            parts.append(Part(kind="text", text=piece.replace("_", " ")))
    return parts


def _parse_readable(text: str) -> list[Part]:
    parts: list[Part] = []
    literal = ""
    i = 0
    while i < len(text):
        if text.startswith(("{{", "}}"), i):
            literal += text[i]
            i += 2
            continue
        if text[i] == "}":
            raise UserError(f"template {text!r}: unbalanced brace: '}}' at character {i + 1} closes nothing; "
                            "write }}}} for a literal brace")
        if text[i] != "{":
            literal += text[i]
            i += 1
            continue
        end, reopened = text.find("}", i + 1), text.find("{", i + 1)
        if end == -1 or -1 < reopened < end:
            raise UserError(f"template {text!r}: unbalanced brace: '{{' at character {i + 1} is not closed (at "
                            f"{text[i:i + 12]!r}); close it with '}}', or write {{{{ for a literal brace")
        if literal:
            parts.append(Part(kind="text", text=literal))
            literal = ""
        parts.append(_parse_variable(text[i + 1:end].strip(), text))
        i = end + 1
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

    def validate(self, *, require_mask: bool = True, num_sentences: int | None = None,
                 num_labels: int | None = None, demonstrations: bool | None = None) -> None:
        """Check the template on its own and, given them, against the task's sentences and labels and
        whether the prompt has demonstrations (`*labelx_i*` names the i-th demonstration's word)."""
        name = self.source or self.to_readable()
        for part in self.parts:
            if part.kind == "label" and num_labels is not None and part.index >= num_labels:
                raise UserError(f"template {name!r} uses *label_{part.index}* but the task has {num_labels} "
                                f"labels (label_0 to label_{num_labels - 1})")
            if part.kind == "labelx" and demonstrations is False:
                raise UserError(f"template {name!r} uses *labelx_{part.index}* (the label word of demonstration "
                                f"{part.index}) but the prompt has no demonstrations; use *label_i* (class i's "
                                "word) or search with --demonstrations random")
            if part.kind == "labelx" and demonstrations and num_labels is not None and part.index >= num_labels:
                raise UserError(f"template {name!r} uses *labelx_{part.index}* but a prompt has {num_labels} "
                                f"demonstrations (one per label: labelx_0 to labelx_{num_labels - 1})")
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
    def mask_precedes_input(self) -> bool:
        """Whether the mask comes before every sentence: a causal model then predicts the label word
        without having seen any input (the classifier scores such a template by the input's likelihood
        after each word instead)."""
        kinds = [p.kind for p in self.parts]
        return "mask" in kinds and "sent" in kinds and kinds.index("mask") < kinds.index("sent")

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


def load_template_lines(path) -> list[Template]:
    """Read LM-BFF's template files: one template per line; blank lines and '#' comments skipped.
    LM-BFF's auto-template files may carry a tab-separated score after the template."""
    return [template for _, template in template_lines(path)]


def template_lines(path) -> list[tuple[str, Template]]:
    """The templates of a template file, each with where it is (`path, line N`) for later checks."""
    templates = []
    for number, line in enumerate(read_lines(path, "template file"), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            templates.append((f"{path}, line {number}", Template.parse(line.split("\t")[0])))
        except UserError as error:
            raise UserError(f"{path}, line {number}: {error}") from None
    if not templates:
        raise UserError(f"template file {path} holds no template")
    return templates
