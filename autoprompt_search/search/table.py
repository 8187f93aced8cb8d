"""The leaderboard as plain text for the terminal: the ranking, then one FAIL line per failed evaluation."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from .records import Evaluation, RankedCandidate, describe_candidate

HEADER = ("rank", "dev mean", "dev std", "seeds", "steps", "test mean", "id", "candidate")
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


def format_table(ranked: Sequence[RankedCandidate], failures: Sequence[Evaluation], path: Path | str) -> str:
    """Ranked candidates best first; a failed evaluation is a line with rank FAIL, its seed in the
    seeds column and its error after the candidate (so a failure is visible where results are read)."""
    lines = [HEADER]
    for position, entry in enumerate(ranked, start=1):
        lines.append((
            str(position),
            _format_metric(entry.mean_dev),
            _format_metric(entry.std_dev),
            str(entry.n_seeds),
            str(entry.budget),
            _format_metric(entry.mean_test),
            entry.candidate_id[:10],
            describe_candidate(entry.candidate),
        ))
    for failure in failures:
        lines.append(("FAIL", "-", "-", f"seed {failure.seed}", str(failure.budget), "-", failure.candidate_id[:10],
                      f"{describe_candidate(failure.candidate)}  error: {_one_line(failure.error)}"))
    if len(lines) == 1:
        return f"(no evaluations in {path})"
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER) - 1)]
    rendered = []
    for line in lines:
        cells = [cell.rjust(width) if i < 6 else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(line, widths))]
        rendered.append("  ".join(cells + [line[-1]]).rstrip())
    rendered.insert(1, "-" * max(len(r) for r in rendered))
    return "\n".join(rendered)
