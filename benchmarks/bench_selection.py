"""Selection rules replayed on finished searches: which final-rung candidate `--selection dev` (LM-BFF: the
best mean dev metric), `--selection paired` (the task's own prompt unless a candidate wins significantly
more of the same dev examples) and `--selection paired-loss` (the same, testing the gold class's
log-probability on every dev example) export from the same leaderboard, with their test metrics.

    python benchmarks/bench_selection.py --leaderboards runs/sst2/leaderboard.sqlite runs/quality/.../leaderboard.sqlite

No model is loaded: the rules choose among stored evaluations (their per-example dev predictions), so the
replay equals what `search-templates` exports with each rule. Saves results/<name>.{md,json}.
"""
from __future__ import annotations

import argparse
import json
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
from autoprompt_search.search.selection import DEFAULT_ALPHA, SELECTIONS, select_final  # noqa: E402


def _with_demonstrations(candidate) -> bool:
    if "ensemble" in candidate:
        return any(_with_demonstrations(member) for member in candidate["ensemble"])
    return candidate.get("demonstrations", "off") != "off"


def replayed_choices(path: Path, rules=("dev", "paired"), alpha: float = DEFAULT_ALPHA,
                     race_only: bool = False, defend_start: bool = True) -> tuple[dict, dict]:
    """({rule: Selection}, facts about the search: its task, seeds, final budget, configuration hash, the task
    prompt's candidate id, the opened leaderboard and the final ranking) for the leaderboard's latest search.
    `race_only`: leave out candidates with demonstrations and ensembles holding one, i.e. replay a search whose race
    ran without demonstrations as it stood before finalist demonstrations were added to it. `defend_start`: a task
    given only label names has its starting prompt (generic template, label-name words) defended by the paired
    rules as a hand-written prompt is."""
    board = Leaderboard(path)
    config_hash = board.latest_config_hash()
    config = stored_config(board, config_hash)
    settings = config["settings"]
    task = load_task(settings.get("task_file") or settings["task"])
    steps, seeds = config["max_steps"], config["seeds"]
    # Ensemble rows included, as the search ranks them (they challenge only where their predictions are stored).
    ranking = board.ranking(budget=steps, config_hash=config_hash)
    if race_only:
        ranking = [entry for entry in ranking if not _with_demonstrations(entry.candidate)]
    incumbent = defended_prompt_id(task, defend_start, folder=path.parent)

    def dev(cid: str, seed: int):
        return load_predictions(board, config_hash, cid, seed, steps).get("dev")

    choices = {rule: select_final(ranking, task, rule=rule, incumbent_id=incumbent, seeds=seeds, dev_predictions=dev,
                                  alpha=alpha) for rule in rules}
    # "manual": the task's prompt with its own words, which `--label-synonyms` searches do not defend.
    facts = {"task": task.name, "seeds": seeds, "steps": steps, "config_hash": config_hash, "incumbent": incumbent,
             "manual": defended_prompt_id(task, defend_start), "board": board, "ranking": ranking}
    return choices, facts


def defended_prompt_id(task, defend_start: bool = True, folder: Path | None = None) -> str | None:
    """The candidate id of the prompt the paired rules defend: the task's own (`TaskSpec.has_own_prompt`: hand-written,
    or the starting prompt of a task given only label names), as the search does; without `defend_start` only a
    hand-written one, as before; None for placeholder words. Where the search's `folder` marks the candidate it
    defended in candidates.json (`--label-synonyms`: the task's template with its words and their synonyms), that one."""
    own = task.has_own_prompt if defend_start else task.has_manual_prompt
    if not own:
        return None
    listed = Path(folder, "candidates.json") if folder is not None else None
    if listed is not None and listed.exists():
        marked = [entry for entry in json.loads(listed.read_text(encoding="utf-8")) if entry.get("task_prompt")]
        if marked:
            entry = marked[0]
            return candidate_id(make_candidate(entry["template"], entry["label_words"], entry.get("demonstrations", "off")))
    return candidate_id(make_candidate(task.template, Verbalizer.for_task(task)))


def replay(path: Path, alpha: float, rules: tuple[str, ...], race_only: bool = False,
           defend_start: bool = True) -> dict:
    choices, facts = replayed_choices(path, rules=rules, alpha=alpha, race_only=race_only, defend_start=defend_start)
    row = {"leaderboard": str(path), "task": facts["task"], "seeds": facts["seeds"], "steps": facts["steps"]}
    incumbent = [entry for entry in facts["ranking"] if entry.candidate_id == facts["incumbent"]]
    row["task_prompt_test"] = incumbent[0].mean_test if incumbent else None
    row["oracle"] = oracle(facts["ranking"], row["task_prompt_test"])
    for rule, chosen in choices.items():
        row[rule] = {"candidate": describe_candidate(chosen.entry.candidate), "dev": chosen.entry.mean_dev,
                     "test": chosen.entry.mean_test, "is_task_prompt": chosen.entry.candidate_id == facts["incumbent"],
                     **chosen.to_dict()}
    return row


def oracle(ranking, task_prompt_test) -> dict | None:
    """The final-rung candidate with the best test metric: the ceiling of any rule that picks among them (a rule
    cannot see test), and how many of them score above the task prompt on test."""
    scored = [entry for entry in ranking if entry.mean_test is not None]
    if not scored:
        return None
    best = max(scored, key=lambda entry: entry.mean_test)
    above = None if task_prompt_test is None else sum(entry.mean_test > task_prompt_test + 1e-9 for entry in scored)
    return {"candidate": describe_candidate(best.candidate), "dev": best.mean_dev, "test": best.mean_test,
            "final_rung": len(scored), "above_task_prompt": above}


def _test(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaderboards", nargs="+", required=True, type=Path)
    parser.add_argument("--rules", nargs="+", choices=SELECTIONS, default=list(SELECTIONS))
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="significance level of the paired rules")
    parser.add_argument("--race-only", action="store_true",
                        help="leave out finalist demonstration variants (and ensembles holding one): replay searches "
                             "whose race ran without demonstrations as they stood before variants were added")
    parser.add_argument("--defend-start", action=argparse.BooleanOptionalAction, default=True,
                        help="tasks given only label names: the paired rules defend their starting prompt (generic "
                             "template, label-name words) as they defend a hand-written one, as the search does "
                             "(default); --no-defend-start replays the rule before that, which defended only a "
                             "hand-written prompt")
    parser.add_argument("--name", default="selection")
    args = parser.parse_args()
    rules = tuple(args.rules)
    rows = [replay(path, args.alpha, rules, args.race_only, args.defend_start) for path in args.leaderboards]
    lines = [f"Rules replayed on {len(rows)} finished search(es)"
             + (" without their finalist demonstration variants (--race-only)" if args.race_only else "")
             + (" with only a hand-written prompt defended (--no-defend-start)" if not args.defend_start else "")
             + f"; paired rules at alpha {args.alpha}. Each cell: the "
             f"pick, its dev and test metric; for a paired rule the record of the strongest challenger against the "
             f"task's prompt (wins / losses, p).", "",
             "| search | task | " + " | ".join(rules) + " |", "|---|---|" + "---|" * len(rules)]
    for row in rows:
        cells = []
        for rule in rules:
            chosen = row[rule]
            cell = f"{chosen['candidate']}<br>dev {chosen['dev']:.3f}, test {_test(chosen['test'])}"
            if chosen["p_value"] is not None:
                cell += f"<br>{chosen['wins']} / {chosen['losses']} (p {chosen['p_value']:.3f})"
            cells.append(cell)
        lines.append(f"| `{row['leaderboard']}` | {row['task']} | " + " | ".join(cells) + " |")
    tests = {rule: [row[rule]["test"] for row in rows if row[rule]["test"] is not None] for rule in rules}
    lines += ["", "Mean test over the searches: " + ", ".join(f"{rule} {fmt(*mean_std(tests[rule]))}" for rule in rules)
              + "."]
    tasks = sorted({row["task"] for row in rows})
    manual = "task prompt (its own final-rung evaluation)"
    lines += ["", "Per task (test metric x 100, mean over the task's searches; the task prompt's own score from the same "
                  "final rung; + / = / - counts the searches whose pick scores above / equal to / below it; the ceiling is the best test metric "
                  "among each search's final-rung candidates, which no rule that cannot see test can beat, with how "
                  "many of those candidates score above the task prompt):", "",
              f"| task | searches | {manual} | " + " | ".join(rules) + " | best final-rung candidate on test (ceiling) |",
              "|---|---|---|" + "---|" * len(rules) + "---|"]
    for task in tasks:
        mine = [row for row in rows if row["task"] == task and row.get("task_prompt_test") is not None]
        if not mine:
            continue
        base = [100 * row["task_prompt_test"] for row in mine]
        cells = []
        for rule in rules:
            scores = [100 * row[rule]["test"] for row in mine]
            above = sum(s > b + 1e-9 for s, b in zip(scores, base))
            below = sum(s < b - 1e-9 for s, b in zip(scores, base))
            mean = sum(scores) / len(scores)
            cells.append(f"{mean:.1f} ({mean - sum(base) / len(base):+.1f}; {above}/{len(scores) - above - below}/{below})")
        oracles = [row["oracle"] for row in mine if row["oracle"]]
        best = sum(100 * o["test"] for o in oracles) / len(oracles) if oracles else None
        ceiling = "-" if best is None else (f"{best:.1f} ({best - sum(base) / len(base):+.1f}; "
                                            f"{sum(o['above_task_prompt'] for o in oracles)}/"
                                            f"{sum(o['final_rung'] for o in oracles)} above)")
        lines.append(f"| {task} | {len(mine)} | {sum(base) / len(base):.1f} | " + " | ".join(cells) + f" | {ceiling} |")
    save(args.name, "\n".join(lines), {"rows": rows, "args": {k: str(v) for k, v in vars(args).items()}})


if __name__ == "__main__":
    main()
