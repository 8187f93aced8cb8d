"""Selection rules replayed on finished searches: which final-rung candidate `--selection dev` (LM-BFF: the
best mean dev metric) and `--selection paired` (the task's own prompt unless a candidate wins significantly
more of the same dev examples) export from the same leaderboard, with their test metrics.

    python benchmarks/bench_selection.py --leaderboards runs/sst2/leaderboard.sqlite runs/quality/.../leaderboard.sqlite

No model is loaded: the rules choose among stored evaluations (their per-example dev predictions), so the
replay equals what `search-templates` exports with each rule. Saves results/<name>.{md,json}.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, mean_std, save  # noqa: E402

from autoprompt_search.data import load_task  # noqa: E402
from autoprompt_search.prompts import Verbalizer  # noqa: E402
from autoprompt_search.search import Leaderboard, stored_config  # noqa: E402
from autoprompt_search.search.candidates import make_candidate  # noqa: E402
from autoprompt_search.search.predictions import load_predictions  # noqa: E402
from autoprompt_search.search.records import candidate_id, describe_candidate  # noqa: E402
from autoprompt_search.search.selection import DEFAULT_ALPHA, select_final  # noqa: E402


def replayed_choices(path: Path, rules=("dev", "paired"), alpha: float = DEFAULT_ALPHA) -> tuple[dict, dict]:
    """({rule: Selection}, facts about the search: its task, seeds, final budget, configuration hash, the task
    prompt's candidate id, the opened leaderboard and the final ranking) for the leaderboard's latest search."""
    board = Leaderboard(path)
    config_hash = board.latest_config_hash()
    config = stored_config(board, config_hash)
    settings = config["settings"]
    task = load_task(settings.get("task_file") or settings["task"])
    steps, seeds = config["max_steps"], config["seeds"]
    # Ensemble rows included, as the search ranks them (they challenge only where their predictions are stored).
    ranking = board.ranking(budget=steps, config_hash=config_hash)
    incumbent = candidate_id(make_candidate(task.template, Verbalizer.for_task(task))) if task.has_manual_prompt else None

    def dev(cid: str, seed: int):
        return load_predictions(board, config_hash, cid, seed, steps).get("dev")

    choices = {rule: select_final(ranking, task, rule=rule, incumbent_id=incumbent, seeds=seeds, dev_predictions=dev,
                                  alpha=alpha) for rule in rules}
    facts = {"task": task.name, "seeds": seeds, "steps": steps, "config_hash": config_hash, "incumbent": incumbent,
             "board": board, "ranking": ranking}
    return choices, facts


def replay(path: Path, alpha: float) -> dict:
    choices, facts = replayed_choices(path, alpha=alpha)
    row = {"leaderboard": str(path), "task": facts["task"], "seeds": facts["seeds"], "steps": facts["steps"]}
    for rule, chosen in choices.items():
        row[rule] = {"candidate": describe_candidate(chosen.entry.candidate), "dev": chosen.entry.mean_dev,
                     "test": chosen.entry.mean_test, "is_task_prompt": chosen.entry.candidate_id == facts["incumbent"],
                     **chosen.to_dict()}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaderboards", nargs="+", required=True, type=Path)
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA)
    parser.add_argument("--name", default="selection")
    args = parser.parse_args()
    rows = [replay(path, args.alpha) for path in args.leaderboards]
    lines = [f"Rules replayed on {len(rows)} finished search(es); paired alpha {args.alpha}.", "",
             "| search | task | dev rule: pick | dev | test | paired rule: pick | dev | test | challenger wins / losses (p) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        d, p = row["dev"], row["paired"]
        record = f"{p['wins']} / {p['losses']} ({p['p_value']:.3f})" if p["p_value"] is not None else "-"
        lines.append(f"| `{row['leaderboard']}` | {row['task']} | {d['candidate']} | {d['dev']:.3f} | "
                     f"{d['test'] if d['test'] is None else round(d['test'], 3)} | {p['candidate']} | {p['dev']:.3f} | "
                     f"{p['test'] if p['test'] is None else round(p['test'], 3)} | {record} |")
    tests = {rule: [row[rule]["test"] for row in rows if row[rule]["test"] is not None] for rule in ("dev", "paired")}
    lines += ["", f"Mean test over the searches: dev rule {fmt(*mean_std(tests['dev']))}, "
                  f"paired rule {fmt(*mean_std(tests['paired']))}."]
    tasks = sorted({row["task"] for row in rows})
    if len(tasks) > 1:  # metrics differ between tasks: compare the rules task by task
        lines += ["", "Per task (test metric x 100, mean over the task's searches):", "",
                  "| task | searches | dev rule | paired rule | dev - paired |", "|---|---|---|---|---|"]
        for task in tasks:
            scores = {rule: [100 * row[rule]["test"] for row in rows if row["task"] == task
                             and row[rule]["test"] is not None] for rule in ("dev", "paired")}
            if scores["dev"] and scores["paired"]:
                dev, paired = (sum(v) / len(v) for v in (scores["dev"], scores["paired"]))
                lines.append(f"| {task} | {len(scores['dev'])} | {dev:.1f} | {paired:.1f} | {dev - paired:+.1f} |")
    save(args.name, "\n".join(lines), {"rows": rows, "args": {k: str(v) for k, v in vars(args).items()}})


if __name__ == "__main__":
    main()
