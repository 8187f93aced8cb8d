"""Every final-budget row of finished searches, read back from their leaderboards: candidate, demonstrations,
dev, test, best step and wall seconds per evaluation. For the per-candidate figures a search-quality table
summarises away (what a finalist's demonstration variant scored and cost next to its version without).

    python benchmarks/final_rung_rows.py --leaderboards runs/quality/smollm2-135m/sst-2/seed13 ... --name NAME
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save  # noqa: E402

from autoprompt_search.search import Leaderboard, stored_config  # noqa: E402


def final_rows(folder: Path) -> list[dict]:
    board = Leaderboard(folder / "leaderboard.sqlite")
    config_hash = board.latest_config_hash()
    steps = stored_config(board, config_hash)["max_steps"]
    rows = []
    for row in board.rows(config_hash):
        if row.budget != steps:
            continue
        candidate = row.candidate
        ensemble = "ensemble" in candidate
        rows.append({"search": str(folder), "seed": row.seed, "candidate_id": row.candidate_id,
                     "template": None if ensemble else candidate["template"],
                     "demonstrations": "ensemble" if ensemble else candidate.get("demonstrations", "off"),
                     "dev": row.dev_metric, "test": row.test_metric, "best_step": row.extra.get("best_step"),
                     "seconds": row.wall_time_s})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leaderboards", nargs="+", type=Path, required=True, help="search output folders")
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    rows = [row for folder in args.leaderboards for row in final_rows(folder)]
    lines = ["| search | seed | template | demonstrations | dev | test | best step | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        test = "-" if r["test"] is None else f"{r['test'] * 100:.1f}"
        lines.append(f"| {r['search']} | {r['seed']} | `{r['template'] or '(ensemble)'}` | {r['demonstrations']} | "
                     f"{r['dev']:.4f} | {test} | {r['best_step'] if r['best_step'] is not None else '-'} | "
                     f"{r['seconds']:.0f} |")
    lines.append("")
    lines.append("Seconds: the evaluation's wall time as its leaderboard stored it (one thread; some ran beside other "
                 "benchmarks). Ensemble rows are scored from stored predictions, so they cost nothing.")
    save(args.name, "\n".join(lines), {"rows": rows})


if __name__ == "__main__":
    main()
