"""The texts `predict` classifies: one example per line of a file or stdin (pairs tab-separated)."""
from __future__ import annotations

from pathlib import Path
from typing import TextIO

from ..errors import UserError
from ..tasks import Example
from ..textfiles import read_stream, read_text


def read_inputs(stream: str | Path | TextIO, num_sentences: int, *, source: str = "input") -> list[Example]:
    """One example per line; a sentence pair is two tab-separated fields. Blank lines are skipped."""
    if isinstance(stream, (str, Path)):
        lines = read_text(stream, "input file").splitlines()
    else:
        lines = read_stream(stream, source).splitlines()
    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("\t") if num_sentences > 1 else [line]
        if len(fields) != num_sentences:
            raise UserError(f"{source}, line {number}: expected {num_sentences} tab-separated sentences, "
                            f"got {len(fields)}")
        examples.append(Example(tuple(f.strip() for f in fields)))
    if not examples:
        raise UserError(f"{source}: no text to classify")
    return examples
