"""Successive halving vs exhaustive evaluation on the same candidate set.

    python benchmarks/bench_search.py --tasks sst2 mr cr --seeds 13 21 --max-steps 32

For each task both strategies run the full pipeline (`run_pipeline`) into their own output folder, on
the same candidates (templates x label words from benchmarks/candidates/). Reported: total training
steps, evaluations, wall time, the candidate each picks, and its dev and test metric (mean over seeds
at the full budget). Saves results/search_strategies.md and .json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save  # noqa: E402

from autoprompt_search.models import quiet_transformers  # noqa: E402
from autoprompt_search.search import Leaderboard  # noqa: E402
from autoprompt_search.search import SearchOptions, run_pipeline  # noqa: E402

HERE = Path(__file__).resolve().parent


def candidate_files(args) -> tuple[str, str]:
    """The first --n-templates templates of the shared file, written where the runs can read them."""
    lines = [line for line in (HERE / "candidates" / "sentiment_templates.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")][:args.n_templates]
    path = Path(args.out) / f"templates-{args.n_templates}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return str(path), str(HERE / "candidates" / "sentiment_mappings.txt")


def run_strategy(task: str, strategy: str, args) -> dict:
    out = Path(args.out) / f"{task}-{strategy}"
    templates, mappings = candidate_files(args)
    options = SearchOptions(
        task=task, model=args.model, data_dir=args.data_dir, seeds=tuple(args.seeds), out=str(out),
        n_templates=0, n_mappings=0, template_files=(templates,), mapping_files=(mappings,), strategy=strategy,
        min_steps=args.min_steps, max_steps=args.max_steps, eta=args.eta, test_limit=args.test_limit,
        progress=False)
    start = time.perf_counter()
    result = run_pipeline(options, say=lambda *a: None)
    seconds = time.perf_counter() - start
    rows = Leaderboard(out / "leaderboard.sqlite").rows()
    best = result.best
    return {"task": task, "strategy": strategy, "wall_seconds": seconds,
            "training_steps": sum(int(r.steps or 0) for r in rows), "evaluations": len(rows),
            "best_template": best.candidate["template"], "best_words": best.candidate["label_words"],
            "best_dev": best.mean_dev, "best_dev_std": best.std_dev, "best_test": best.mean_test,
            "n_candidates": len(result.rungs[0].scores)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mr", "cr"])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21])
    parser.add_argument("--min-steps", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=32)
    parser.add_argument("--eta", type=float, default=3.0)
    parser.add_argument("--n-templates", type=int, default=6, help="first N templates of candidates/sentiment_templates.txt")
    parser.add_argument("--name", default="search_strategies", help="results/<name>.md and .json")
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/bench_search")
    args = parser.parse_args()
    quiet_transformers()
    rows = []
    for task in args.tasks:
        for strategy in ("exhaustive", "halving"):
            rows.append(run_strategy(task, strategy, args))
            print(rows[-1], flush=True)
    lines = [f"Candidates: {rows[0]['n_candidates']} ({args.n_templates} templates x 2 label-word mappings), seeds {args.seeds}, "
             f"full budget {args.max_steps} steps, halving from zero-shot then {args.min_steps} steps, eta {args.eta}; "
             f"test examples: {args.test_limit or 'all'}", "",
             "| task | strategy | training steps | evaluations | wall time (s) | pick | dev (mean ± std) | test |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        words = "/".join(r["best_words"].values())
        test = f"{r['best_test'] * 100:.1f}" if r["best_test"] is not None else "-"
        lines.append(f"| {r['task']} | {r['strategy']} | {r['training_steps']} | {r['evaluations']} | "
                     f"{r['wall_seconds']:.0f} | `{r['best_template']}` {words} | "
                     f"{r['best_dev'] * 100:.1f} ± {r['best_dev_std'] * 100:.1f} | {test} |")
    lines.append("")
    for task in args.tasks:
        ex, ha = [r for r in rows if r["task"] == task]
        lines.append(f"- {task}: halving used {ha['training_steps'] / max(1, ex['training_steps']):.0%} of the "
                     f"exhaustive training steps and {ha['wall_seconds'] / ex['wall_seconds']:.0%} of its wall time; "
                     f"pick dev {ha['best_dev'] * 100:.1f} vs {ex['best_dev'] * 100:.1f} (exhaustive std "
                     f"{ex['best_dev_std'] * 100:.1f}).")
    save(args.name, "\n".join(lines), {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
