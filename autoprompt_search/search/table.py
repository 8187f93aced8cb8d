"""The leaderboard as plain text for the terminal: the ranking, then one FAIL line per failed evaluation.

The metric headers name the split and its size ("dev (32) mean", "test (872) mean"), so a reader sees
a 32-example dev accuracy for what it is; "dev score" is the continuous tie-break (mean gold-class
log-probability, or minus the squared error for regression). Rows written before sizes were
recorded leave the size out.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

from .records import Evaluation, RankedCandidate, describe_candidate

HEADER = ("rank", "dev mean", "dev std", "dev score", "seeds", "steps", "test mean", "id", "candidate")
_NUMERIC = 7  # the first columns (up to the id) are right-aligned
_MAX_ERROR = 160


def _format_metric(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    return f"{value:.4f}"


def _one_line(text: str | None) -> str:
    text = " ".join((text or "unknown error").split())
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR - 3] + "..."


def split_label(split: str, sizes: Iterable[int]) -> str:
    """"dev (32)", "dev (16-32)" when rows differ, plain "dev" when no size was recorded."""
    sizes = sorted(set(sizes))
    if not sizes:
        return split
    return f"{split} ({sizes[0]})" if len(sizes) == 1 else f"{split} ({sizes[0]}-{sizes[-1]})"


def _header(ranked: Sequence[RankedCandidate]) -> tuple[str, ...]:
    dev = split_label("dev", (n for entry in ranked for n in entry.dev_examples))
    test = split_label("test", (n for entry in ranked for n in entry.test_examples))
    return ("rank", f"{dev} mean", "dev std", "dev score", "seeds", "steps", f"{test} mean", "id", "candidate")


def format_table(ranked: Sequence[RankedCandidate], failures: Sequence[Evaluation], path: Path | str) -> str:
    """Ranked candidates best first; a failed evaluation is a line with rank FAIL, its seed in the
    seeds column and its error after the candidate (so a failure is visible where results are read)."""
    lines = [_header(ranked)]
    for position, entry in enumerate(ranked, start=1):
        lines.append((
            str(position),
            _format_metric(entry.mean_dev),
            _format_metric(entry.std_dev),
            _format_metric(entry.mean_dev_score),
            str(entry.n_seeds),
            str(entry.budget),
            _format_metric(entry.mean_test),
            entry.candidate_id[:10],
            describe_candidate(entry.candidate),
        ))
    for failure in failures:
        lines.append(("FAIL", "-", "-", "-", f"seed {failure.seed}", str(failure.budget), "-",
                      failure.candidate_id[:10],
                      f"{describe_candidate(failure.candidate)}  error: {_one_line(failure.error)}"))
    if len(lines) == 1:
        return f"(no evaluations in {path})"
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER) - 1)]
    rendered = []
    for line in lines:
        cells = [cell.rjust(width) if i < _NUMERIC else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(line, widths))]
        rendered.append("  ".join(cells + [line[-1]]).rstrip())
    rendered.insert(1, "-" * max(len(r) for r in rendered))
    return "\n".join(rendered)
