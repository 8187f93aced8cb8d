"""Evaluations per hour: the wall time of the same work units (candidate, seed, training budget) in two
leaderboards, e.g. a demo search before and after speed changes.

    python benchmarks/bench_evaluation_times.py --before runs/demo_history/run1_keep/leaderboard.sqlite \\
        --after runs/demo_history/run6/leaderboard.sqlite --name evaluation_times_demo

Only trained evaluations (budget > 0) present in both are compared; rows are matched by candidate JSON,
seed and budget (not the configuration hash, which changes with the code's options). Saves
results/<name>.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save  # noqa: E402


def work_units(path: Path, until: str | None = None) -> dict[tuple, float]:
    """(candidate JSON, seed, budget) -> wall seconds of the trained evaluations created up to `until` (ISO time)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    query = ("select candidate_json, seed, budget, wall_time_s from evaluations where budget > 0 and error is null"
             " and created_at <= ?")
    return {(candidate, seed, budget): seconds
            for candidate, seed, budget, seconds in connection.execute(query, (until or "9999",))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--before-until", default=None,
                        help="ignore --before rows created after this ISO time (a later resume under other conditions)")
    parser.add_argument("--name", default="evaluation_times")
    args = parser.parse_args()
    before, after = work_units(args.before, args.before_until), work_units(args.after)
    shared = sorted(set(before) & set(after), key=lambda key: (key[2], before[key]))
    lines = [f"Before: `{args.before}`" + (f" (rows created up to {args.before_until})" if args.before_until else "")
             + f"; after: `{args.after}`; {len(shared)} trained work unit(s) in both.", "",
             "| template | label words | seed | steps | before s | after s | speed-up |", "|---|---|---|---|---|---|---|"]
    rows = []
    for key in shared:
        candidate = json.loads(key[0])
        rows.append({"candidate": candidate, "seed": key[1], "steps": key[2], "before": before[key], "after": after[key]})
        lines.append(f"| `{candidate['template']}` | {json.dumps(candidate['label_words'])} | {key[1]} | {key[2]} | "
                     f"{before[key]:.1f} | {after[key]:.1f} | {before[key] / after[key]:.2f}x |")
    by_budget = {}
    for row in rows:
        total = by_budget.setdefault(row["steps"], [0.0, 0.0])
        total[0] += row["before"]
        total[1] += row["after"]
    lines += [""] + [f"{steps} steps: {b:.0f} s before, {a:.0f} s after, {b / a:.2f}x in all."
                     for steps, (b, a) in sorted(by_budget.items())]
    save(args.name, "\n".join(lines), {"rows": rows})


if __name__ == "__main__":
    main()
