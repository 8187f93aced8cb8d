"""PNG of a search's progress: every candidate's dev metric per rung, survivors highlighted."""
from __future__ import annotations

import os
import statistics
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .leaderboard import Leaderboard
from .records import Evaluation, describe_candidate

MAX_LABELLED_SURVIVORS = 5


@dataclass(frozen=True)
class CandidateCurve:
    """Mean dev metric (over seeds) of one candidate at each rung it reached."""

    candidate_id: str
    label: str
    points: tuple[tuple[int, float], ...]   # (rung, mean dev metric), by rung


def rung_curves(rows: list[Evaluation]) -> tuple[list[CandidateCurve], dict[int, int]]:
    """Per-candidate curves and the training steps of each rung."""
    devs: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    labels: dict[str, str] = {}
    rung_steps: dict[int, int] = {}
    for row in rows:
        devs[row.candidate_id][row.rung].append(row.dev_metric)
        labels[row.candidate_id] = describe_candidate(row.candidate)
        rung_steps[row.rung] = row.budget
    curves = [
        CandidateCurve(cid, labels[cid],
                       tuple((rung, statistics.fmean(values)) for rung, values in sorted(by_rung.items())))
        for cid, by_rung in sorted(devs.items())
    ]
    return curves, rung_steps


def plot_leaderboard(leaderboard: Leaderboard, path: str | os.PathLike[str],
                     config_hash: str | None = None, title: str | None = None) -> Path:
    """Write a PNG with one line per candidate (x = rung and its steps, y = mean dev metric).
    Candidates that reached the last rung are drawn in colour and labelled; the rest in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config_hash = config_hash or leaderboard.latest_config_hash()
    rows = leaderboard.rows(config_hash) if config_hash else []
    if not rows:
        raise UserError(f"{leaderboard.path}: no evaluations to plot"
                        + (f" for configuration {config_hash[:12]}" if config_hash else ""))
    curves, rung_steps = rung_curves(rows)
    last_rung = max(rung_steps)
    survivors = [c for c in curves if c.points[-1][0] == last_rung]
    survivors.sort(key=lambda c: -c.points[-1][1])

    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
    for curve in curves:
        if curve in survivors:
            continue
        xs, ys = zip(*curve.points)
        axes.plot(xs, ys, color="0.75", linewidth=0.8, marker=".", markersize=3, zorder=1)
    for position, curve in enumerate(survivors):
        xs, ys = zip(*curve.points)
        label = _short(curve.label) if position < MAX_LABELLED_SURVIVORS else None
        axes.plot(xs, ys, linewidth=2.0, marker="o", markersize=5, zorder=2, label=label)
    rungs = sorted(rung_steps)
    axes.set_xticks(rungs)
    axes.set_xticklabels([f"rung {r}\n{_steps_label(rung_steps[r])}" for r in rungs])
    axes.set_xlabel("rung (training steps)")
    axes.set_ylabel("dev metric (mean over seeds)")
    axes.set_title(title or f"{len(curves)} candidates, {len(survivors)} reached the last rung")
    axes.grid(True, alpha=0.3)
    if survivors:
        axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary file renamed over the target: searches sharing a folder never leave half a PNG.
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            figure.savefig(handle, format="png")
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    finally:
        plt.close(figure)
    return path


def _steps_label(steps: int) -> str:
    return "zero-shot" if steps == 0 else f"{steps} steps"


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
