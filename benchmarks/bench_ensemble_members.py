"""Ensemble member rules replayed on finished searches: the ensemble each search stored (rule `top`: the race's
top m averaged, as LM-BFF) against the one `--ensemble-members forward` builds from the same stored
evaluations (the export's single pick, then those of the same m that raise its mean dev gold log-probability
when averaged in), each compared with the single pick on test.

    python benchmarks/bench_ensemble_members.py --leaderboards runs/quality/smollm2-135m/*/seed*/leaderboard.sqlite

No model is loaded: both ensembles are scored from the members' stored per-example predictions, as the
search scores them, so the replay equals what the search would store and export under each rule. Where
`forward` adds no member, its ensemble is the pick alone. Saves results/<name>.{md,json}.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import mean_std, save  # noqa: E402
from bench_selection import replayed_choices  # noqa: E402

from autoprompt_search.search import forward_members, rank_key, score_ensemble  # noqa: E402
from autoprompt_search.search.ensemble import forward_pool, is_ensemble  # noqa: E402
from autoprompt_search.search.predictions import load_predictions  # noqa: E402
from autoprompt_search.search.records import aggregate, candidate_id  # noqa: E402
from autoprompt_search.search.selection import DEFAULT_ALPHA, select_final  # noqa: E402
from autoprompt_search.data import load_task  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaderboards", nargs="+", type=Path, required=True)
    parser.add_argument("--selection", default="paired-loss", help="the export rule that chooses the single pick")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA)
    parser.add_argument("--name", default="ensemble_members")
    return parser.parse_args()


def replay(path: Path, rule: str, alpha: float) -> dict | None:
    """One search: its pick, its stored top-m ensemble and the forward ensemble, with their test metrics
    (mean over the search's seeds). None for a search that stored no ensemble."""
    _, facts = replayed_choices(path, rules=())
    board, config_hash, steps, seeds = facts["board"], facts["config_hash"], facts["steps"], facts["seeds"]
    task = load_task(facts["task"])
    stored = [entry for entry in facts["ranking"] if is_ensemble(entry.candidate)]
    if not stored:
        return None
    top = max(stored, key=lambda e: len(e.candidate["ensemble"]))  # the top-m one where a forward one was stored too
    singles = [entry for entry in facts["ranking"] if not is_ensemble(entry.candidate)]

    def dev(cid, seed):
        return load_predictions(board, config_hash, cid, seed, steps).get("dev")

    def choose(ranking):
        return select_final(ranking, task, rule=rule, incumbent_id=facts["incumbent"], seeds=seeds,
                            dev_predictions=dev, alpha=alpha)

    pick = choose(singles).entry
    members = [candidate_id(member) for member in top.candidate["ensemble"]]
    chosen = forward_members(board, config_hash, task, pick.candidate_id,
                             forward_pool(members, pick.candidate_id, len(members)), seeds, steps, len(members))
    by_id = {entry.candidate_id: entry for entry in singles}
    if len(chosen) > 1:
        rows = [score_ensemble(board, config_hash, [by_id[cid].candidate for cid in chosen], task, seed, steps,
                               rung=0) for seed in seeds]
        forward = aggregate(rows)
        exported = choose(sorted([*singles, forward], key=rank_key)).entry
    else:
        forward = exported = pick
    return {"leaderboard": str(path), "task": task.name, "seeds": seeds, "steps": steps,
            "pick": {"candidate_id": pick.candidate_id, "test": pick.mean_test, "dev": pick.mean_dev,
                     "is_task_prompt": pick.candidate_id == facts["incumbent"]},
            "top": {"members": members, "test": top.mean_test, "dev": top.mean_dev,
                    "contains_pick": pick.candidate_id in members},
            "forward": {"members": chosen, "test": forward.mean_test, "dev": forward.mean_dev},
            "exported_with_forward": {"is_ensemble": is_ensemble(exported.candidate), "test": exported.mean_test}}


def markdown(searches: list[dict], args) -> str:
    lines = [f"## Ensemble members, top vs forward, replayed on {len(searches)} finished searches", "",
             f"pick = the single prompt the export rule `{args.selection}` chooses; top = the ensemble the search "
             "stored (the race's top m, probabilities averaged); forward = the pick, then those of the same m "
             "(the pick added where it was not among them) that raise the mean dev gold log-probability when averaged "
             "in (the pick alone where none does); export = what the rule exports when the forward ensemble competes "
             "with the singles. Test metric x 100, mean over the searches of a task.", "",
             "| task | searches | pick | top | forward | export | top >= pick | forward >= pick | forward members (size: searches) |",
             "|---|---|---|---|---|---|---|---|---|"]
    tasks = sorted({s["task"] for s in searches})
    totals = {"top": 0, "forward": 0}
    for task in tasks + ["all"]:
        rows = [s for s in searches if task in ("all", s["task"])]
        means = {key: mean_std([r[key]["test"] for r in rows])[0] * 100 for key in ("pick", "top", "forward")}
        export = mean_std([r["exported_with_forward"]["test"] for r in rows])[0] * 100
        ok = {key: sum(r[key]["test"] >= r["pick"]["test"] - 1e-12 for r in rows) for key in ("top", "forward")}
        task_ok = {key: means[key] >= means["pick"] - 1e-9 for key in ("top", "forward")}
        if task != "all":
            for key in totals:
                totals[key] += task_ok[key]
        sizes = {}
        for r in rows:
            sizes[len(r["forward"]["members"])] = sizes.get(len(r["forward"]["members"]), 0) + 1
        lines.append(f"| {task} | {len(rows)} | {means['pick']:.1f} | {means['top']:.1f} | {means['forward']:.1f} | "
                     f"{export:.1f} | {ok['top']}/{len(rows)} | {ok['forward']}/{len(rows)} | "
                     f"{', '.join(f'{k}: {v}' for k, v in sorted(sizes.items()))} |")
    lines += ["", f"Tasks whose mean ensemble is at least the mean pick: top {totals['top']}/{len(tasks)}, "
              f"forward {totals['forward']}/{len(tasks)}."]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    searches = [found for path in args.leaderboards for found in [replay(path, args.selection, args.alpha)] if found]
    if not searches:
        raise SystemExit("no search with a stored ensemble among the leaderboards")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent).stdout.strip()
    save(args.name, f"Code: commit {commit}\n\n" + markdown(searches, args),
         {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                   if k != "leaderboards"}, "commit": commit, "searches": searches})


if __name__ == "__main__":
    main()
