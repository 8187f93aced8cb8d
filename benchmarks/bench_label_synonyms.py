"""The task's own prompt against the same template with `--label-synonyms N` words, after fine-tuning.

    python benchmarks/bench_label_synonyms.py --tasks cr sst2 mr sst5 --seeds 13 21 42 --test-limit 500 \
        --out-root runs/label_synonyms --name label_synonyms_check

For each task and seed it runs one search of exactly two candidates, the manual prompt and the manual template
with the automatically found synonyms (`search-templates search --generator none --n-templates 0 --n-mappings 0
--label-synonyms N --strategy exhaustive --max-steps STEPS --seeds SEED --test-limit L --ensemble-size 0`), in
`<out-root>/<task>`, a search per seed, so each split finds its own synonyms. The leaderboard is the record:
a stopped run resumes there (finished evaluations are not redone) and `--report-only` writes the table from what
is stored without running anything. Saves results/<name>.md and .json.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, command_line, environment, mean_std, write_json_atomic  # noqa: E402

SYNONYMS = "manual template + synonyms"
MANUAL = "manual"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", nargs="+", default=["cr", "sst2", "mr", "sst5"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[13, 21, 42])
    parser.add_argument("--synonyms", type=int, default=2, help="the search's --label-synonyms")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--test-limit", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-root", default="runs/label_synonyms")
    parser.add_argument("--name", default="label_synonyms_check")
    parser.add_argument("--leave-out", type=Path, default=None, metavar="MAPPINGS",
                        help="a file of label-word mappings (one JSON object per line) whose rows in the same "
                             "leaderboards are not these synonyms (e.g. a pilot's hand-picked words)")
    parser.add_argument("--only", type=Path, default=None, metavar="MAPPINGS",
                        help="count as the synonyms only rows of these label-word mappings (e.g. a pilot's hand-picked "
                             "words, given to the search with --mapping-file); the others with word lists are left out")
    parser.add_argument("--report-only", action="store_true", help="run nothing; table what the leaderboards hold")
    return parser.parse_args(argv)


def search_command(args, task: str, seed: int) -> list[str]:
    return [sys.executable, "-m", "autoprompt_search.cli", "search", "--task", task, "--model", args.model,
            "--generator", "none", "--n-templates", "0", "--n-mappings", "0", "--label-synonyms", str(args.synonyms),
            "--strategy", "exhaustive", "--max-steps", str(args.steps), "--seeds", str(seed),
            "--test-limit", str(args.test_limit), "--ensemble-size", "0", "--quiet",
            "--out", str(Path(args.out_root) / task)]


def _words(mapping: dict) -> dict:
    return {label: words for label, words in mapping.items() if not label.startswith("_")}


def _mappings(path: Path | None) -> list[dict]:
    if path is None:
        return []
    return [_words(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def stored_rows(args, task: str) -> list[dict]:
    """Every finished final-budget evaluation in the task's leaderboard (but those of `--leave-out` words):
    seed, which prompt, words, dev, test."""
    path = Path(args.out_root) / task / "leaderboard.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        found = db.execute("select candidate_json, seed, dev_metric, test_metric, extra_json from evaluations "
                           "where budget = ? and (error is null or error = '') and test_metric is not null "
                           "order by id", (args.steps,)).fetchall()
    rows, skip, only = [], _mappings(args.leave_out), _mappings(args.only)
    for candidate, seed, dev, test, extra in found:
        words = json.loads(candidate)["label_words"]
        kind = SYNONYMS if any(isinstance(value, list) for value in words.values()) else MANUAL
        if _words(words) in skip or (only and kind == SYNONYMS and _words(words) not in only):
            continue
        rows.append({"task": task, "seed": seed, "kind": kind, "label_words": words, "dev": dev, "test": test,
                     "best_step": json.loads(extra or "{}").get("best_step")})
    # A search under other settings (a pilot's) may have stored the same prompt and seed: the latest row stands.
    latest = {(r["seed"], json.dumps(r["label_words"], sort_keys=True)): r for r in rows}
    return list(latest.values())


def report(args, rows: list[dict]) -> tuple[str, dict]:
    lines = [f"## {args.model}: the manual prompt vs its template with `--label-synonyms {args.synonyms}` words", "",
             f"{args.steps} steps of prompt-based fine-tuning (dev at step 0 and every 8 steps, best dev checkpoint), "
             f"each seed's k=16 split, a seeded sample of at most {args.test_limit} test examples; one search per "
             f"task and seed, so each split finds its own synonyms."
             + (f" Rows of the words in {args.leave_out} stored in the same leaderboards are left out." if args.leave_out
                else "") + (f" The synonyms are only the words in {args.only}." if args.only else ""), "",
             "| task | seeds with both | manual dev | synonyms dev | manual test | synonyms test | synonyms - manual |",
             "|---|---|---|---|---|---|---|"]
    summary, missing = {}, []
    for task in args.tasks:
        by = {(r["seed"], r["kind"]): r for r in rows if r["task"] == task and r["seed"] in args.seeds}
        both = [seed for seed in args.seeds if (seed, MANUAL) in by and (seed, SYNONYMS) in by]
        missing += [f"{task} seed {seed}" for seed in args.seeds if seed not in both]
        if not both:
            continue
        cells = {}
        for kind in (MANUAL, SYNONYMS):
            for split in ("dev", "test"):
                cells[kind, split] = mean_std([by[seed, kind][split] for seed in both])
        gain = mean_std([by[seed, SYNONYMS]["test"] - by[seed, MANUAL]["test"] for seed in both])
        summary[task] = {"seeds": both, "gain": gain[0], "complete": len(both) == len(args.seeds)}
        lines.append(f"| {task} | {' '.join(map(str, both))} | " + " | ".join(
            f"{100 * cells[kind, split][0]:.1f}" for split in ("dev", "test") for kind in (MANUAL, SYNONYMS))
            + f" | {100 * gain[0]:+.1f} ± {100 * gain[1]:.1f} |")
    lines += ["", "Per seed:", "", "| task | seed | prompt | label words | dev | test | best step |",
              "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["task"], r["seed"], r["kind"])):
        lines.append(f"| {r['task']} | {r['seed']} | {r['kind']} | `{json.dumps(r['label_words'])}` | "
                     f"{100 * r['dev']:.1f} | {100 * r['test']:.1f} | {r['best_step']} |")
    complete = {task: entry for task, entry in summary.items() if entry["complete"]}
    if complete:
        gains = [by_seed for task in complete for by_seed in _gains(rows, task, complete[task]["seeds"])]
        every = all(entry["gain"] >= 0 for entry in complete.values())
        lines += ["", f"Over the {len(complete)} task(s) with every seed ({', '.join(complete)}): synonyms at least the "
                      f"manual words on mean test on every one: {'yes' if every else 'no'}; mean gain over their "
                      f"{len(gains)} task-seeds {100 * sum(gains) / len(gains):+.2f} points (the plan's bar: > +0.5)."]
    if missing:
        lines += ["", "Partial: not run yet (or not finished): " + ", ".join(missing) + "."]
    return "\n".join(lines), summary


def _gains(rows: list[dict], task: str, seeds: list[int]) -> list[float]:
    by = {(r["seed"], r["kind"]): r["test"] for r in rows if r["task"] == task}
    return [by[seed, SYNONYMS] - by[seed, MANUAL] for seed in seeds]


def main() -> None:
    args = parse_args()
    path = RESULTS / f"{args.name}.json"
    saved = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    commands = saved.get("commands", [])
    if command_line() not in commands:
        commands.append(command_line())
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for task in ([] if args.report_only else args.tasks):
        for seed in args.seeds:
            kinds = {r["kind"] for r in stored_rows(args, task) if r["seed"] == seed}
            if {MANUAL, SYNONYMS} <= kinds:
                continue
            print(f"running {task} seed {seed}", file=sys.stderr, flush=True)
            subprocess.run(search_command(args, task, seed), env=env, check=True)
            write_results(args, path, commands)  # after every search: a stopped run has its table
    write_results(args, path, commands)


def write_results(args, path: Path, commands: list[str]) -> None:
    rows = [row for task in args.tasks for row in stored_rows(args, task)]
    table, summary = report(args, rows)
    state = {"commands": commands, "environment": environment(), "rows": rows, "summary": summary,
             "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                          if k not in ("report_only", "name")}}
    write_json_atomic(path, state)
    header = "Commands:\n\n" + "\n".join(f"`{c}`" for c in commands) + "\n\n"
    header += f"Environment: `{json.dumps(state['environment'])}`\n\n"
    (RESULTS / f"{args.name}.md").write_text(header + table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
