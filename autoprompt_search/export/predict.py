"""The texts `predict` classifies: one example per line of a file or stdin (pairs tab-separated)."""
from __future__ import annotations

from pathlib import Path
from typing import TextIO

from ..errors import UserError
from ..tasks import Example


def read_inputs(stream: str | Path | TextIO, num_sentences: int, *, source: str = "input") -> list[Example]:
    """One example per line; a sentence pair is two tab-separated fields. Blank lines are skipped."""
    if isinstance(stream, (str, Path)):
        path = Path(stream)
        if not path.is_file():
            raise UserError(f"input file {path} does not exist")
        lines = path.read_text(encoding="utf-8").splitlines()
    else:
        lines = stream.read().splitlines()
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
