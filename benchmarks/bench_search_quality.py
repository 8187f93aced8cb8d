"""Search quality: the default search (its own budget, successive halving) against the manual prompt
fine-tuned with the same final budget, per task, on the full test sets.

    OMP_NUM_THREADS=1 python benchmarks/bench_search_quality.py --model smollm2-135m \\
        --tasks SST-2 SST-5 MR CR TREC RTE MRPC CoLA --seeds 13 21 42

For each task and seed (`--protocol per-seed`, the default, as LM-BFF and the tool's one-seed default do: a
search per k-shot split): `run_pipeline` with the default `SearchOptions` (only task, model, seed, output
folder, test sample, `--ensemble-size`, 3 here, and `--demonstrations` or `--finalist-demonstrations` where given,
changed) in runs/quality/<model>/<task>/seed<seed>/, whose leaderboard resumes by itself (`--finalist-demonstrations`
leaves the race as it is, so it shares the default search's folders and runs only the finalists' variants); its pick's test metric on that seed is the search's score for the
seed. `--protocol pooled` runs one search over all seeds instead (runs/quality/<model>/<task>/). Then the
manual prompt, evaluated per seed by the search's own evaluator (`PromptEvaluator`) at the final
budget, so both sides are trained and scored by the same code; per seed, the search's own final-rung row
of the manual prompt (halving keeps it there) is that evaluation already and is reused (on SST-2's three
seeds it equalled the recomputed one to the last digit). Reported per task: manual, the search's
pick and (when the search made one) its ensemble, each as mean (std) over seeds; the picked template
and words; and the compute the search used (evaluations, training steps, wall seconds).

Units of work (a task's search per seed or pooled, a task's manual seed) are saved to results/<name>.json as they finish;
the same command continues where a stopped run left off. Until every unit is done the table says
"partial" and lists what is missing. Targets (issue 14): the pick within 1 point of manual on every
task and above it on at least half; the ensemble at least the best single candidate.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_selection import replayed_choices  # noqa: E402
from common import RESULTS, command_line, environment, mean_std, resumable_state, save_merged  # noqa: E402

from autoprompt_search.data import load_task  # noqa: E402
from autoprompt_search.search import SearchOptions, run_pipeline  # noqa: E402
from autoprompt_search.search.evaluator import PromptEvaluator  # noqa: E402
from autoprompt_search.search.selection import is_version_of  # noqa: E402

DEFAULT_TASKS = ("SST-2", "SST-5", "MR", "CR", "TREC", "RTE", "MRPC", "CoLA")
RUN_ONLY = ("tasks", "threads", "data_dir", "name", "out_root", "merge", "reuse_default")
LARGE_TEST = 1000  # test sets above this many examples may be sampled (seeded, marked in the table)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42, 87, 100])
    parser.add_argument("--test-limit", type=int, default=None,
                        help=f"score a seeded sample of N test examples where the set is larger (N >= {LARGE_TEST})")
    parser.add_argument("--ensemble-size", type=int, default=3, help="the search's --ensemble-size (0: none)")
    parser.add_argument("--demonstrations", nargs="+", default=["off"],
                        help="the search's --demonstrations modes (default: the search's default, off); the first is "
                             "the manual prompt's, e.g. 'off random' lets prompts with demonstrations challenge it")
    parser.add_argument("--finalist-demonstrations", nargs="+", default=[], choices=["random", "filtered"],
                        help="the search's --finalist-demonstrations: after the race its best --demo-finalists "
                             "candidates are evaluated again with these demonstration modes. The race is the default "
                             "search's, in the same run folders, so a finished search is reused and only the variants run")
    parser.add_argument("--demo-finalists", type=int, default=2, help="the search's --demo-finalists")
    parser.add_argument("--label-neighbours", type=int, default=None,
                        help="the search's --label-neighbours (searched words near the task's own words); its runs "
                             "get folders of their own (<task>-label-neighbours-N)")
    parser.add_argument("--label-synonyms", type=int, default=None,
                        help="the search's --label-synonyms (one more candidate: the task's words with synonyms); its "
                             "runs get folders of their own (<task>-label-synonyms-N)")
    parser.add_argument("--reuse-default", action="store_true",
                        help="a variant's search (--label-synonyms, --label-neighbours, --embeddings) whose folder "
                             "has no leaderboard yet starts from a copy of the default search's finished folder of "
                             "the same seed (leaderboard, generated templates, searched words): the candidates both "
                             "share are the same evaluations, and only the variant's own run")
    parser.add_argument("--embeddings", choices=["train", "freeze", "auto"], default=None,
                        help="the search's --embeddings (default: the search's default)")
    parser.add_argument("--protocol", choices=("per-seed", "pooled"), default="per-seed",
                        help="a search per seed (LM-BFF; the default) or one search over all seeds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out-root", default="runs/quality")
    parser.add_argument("--name", default=None, help="results file name (default search_quality_<model>)")
    parser.add_argument("--merge", nargs="+", type=Path, default=None, metavar="RESULTS_JSON",
                        help="run nothing: join the per-seed units of these results files (the same settings but "
                             "their seeds) into the table of --seeds under --name, e.g. a first pass on seeds 13 21 42 "
                             "and a later run on 87 100. Units are taken as they were summarised, not replayed again")
    args = parser.parse_args()
    if args.test_limit is not None and args.test_limit < LARGE_TEST:
        parser.error(f"--test-limit: expected at least {LARGE_TEST} (the issue's floor for sampled test sets)")
    return args


def settings_of(args) -> dict:
    settings = {k: v for k, v in vars(args).items() if k not in RUN_ONLY}
    if settings["demonstrations"] == ["off"]:  # the default before the option existed: earlier files resume
        del settings["demonstrations"]
    if not settings["finalist_demonstrations"]:  # likewise
        del settings["finalist_demonstrations"], settings["demo_finalists"]
    if settings["label_neighbours"] is None:  # likewise
        del settings["label_neighbours"]
    if settings["embeddings"] is None:  # likewise
        del settings["embeddings"]
    if settings["label_synonyms"] is None:  # likewise
        del settings["label_synonyms"]
    return settings


def load_state(path: Path, args) -> dict:
    return resumable_state(path, settings_of(args), {"tasks": {}})


def search_options(args, task_name: str, seed: int | None = None) -> SearchOptions:
    """The search of one seed (per-seed protocol) or of all seeds (seed None: pooled)."""
    out = Path(args.out_root) / Path(args.model).name / task_name.lower()  # a folder model by its name
    if args.demonstrations != ["off"]:
        out = out.with_name(out.name + "-demos-" + "-".join(args.demonstrations))
    if args.label_neighbours is not None:  # another race: sharing a folder would mix its candidates with the default's
        out = out.with_name(out.name + f"-label-neighbours-{args.label_neighbours}")
    if args.embeddings is not None:  # another configuration: its own folder keeps each leaderboard to one
        out = out.with_name(out.name + f"-embeddings-{args.embeddings}")
    if args.label_synonyms is not None:  # another race (one more candidate)
        out = out.with_name(out.name + f"-label-synonyms-{args.label_synonyms}")
    if seed is not None:
        out = out / f"seed{seed}"
    extra = {} if args.embeddings is None else {"embeddings": args.embeddings}
    if args.label_synonyms is not None:
        extra["label_synonyms"] = args.label_synonyms
    return SearchOptions(task=task_name, model=args.model, seeds=(seed,) if seed is not None else tuple(args.seeds),
                         out=str(out), data_dir=args.data_dir, test_limit=args.test_limit, progress=False,
                         ensemble_size=args.ensemble_size, demonstrations=tuple(args.demonstrations),
                         finalist_demonstrations=tuple(args.finalist_demonstrations), demo_finalists=args.demo_finalists,
                         label_neighbours=args.label_neighbours, **extra)


VARIANT_FLAGS = ("label_synonyms", "label_neighbours", "embeddings")
REUSED_FILES = ("leaderboard.sqlite", "generated_templates.json", "label_words.json")
STARTED_FROM = "started_from.json"


def start_from_default(args, task_name: str, seed: int | None) -> Path | None:
    """Copy the default search's folder files (`REUSED_FILES`) into the variant's, when the variant has not started
    and the default has finished (its best.json written); the folder copied from, or None. Caches are keyed and
    rows belong to a configuration hash, so a copy can only be reused where the variant's search is the same."""
    default = argparse.Namespace(**{**vars(args), **{flag: None for flag in VARIANT_FLAGS}})
    source, target = Path(search_options(default, task_name, seed).out), Path(search_options(args, task_name, seed).out)
    if source == target or (target / "leaderboard.sqlite").exists() or not (source / "best.json").exists():
        return None
    target.mkdir(parents=True, exist_ok=True)
    for name in REUSED_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
    (target / STARTED_FROM).write_text(json.dumps({"copied_from": str(source)}) + "\n", encoding="utf-8")
    return source


def copied_from(args, task_name: str, seed: int | None) -> str | None:
    """The folder a variant's search was started from, read from the mark `start_from_default` leaves, so a variant
    stopped and resumed in a later run still reports that it began as a copy."""
    mark = Path(search_options(args, task_name, seed).out) / STARTED_FROM
    return json.loads(mark.read_text(encoding="utf-8"))["copied_from"] if mark.exists() else None


def search_units(args) -> list[int | None]:
    return list(args.seeds) if args.protocol == "per-seed" else [None]


def merged_search(entry: dict, args) -> dict | None:
    """One summary per task: the pooled search's, or the per-seed searches' joined (their picks' test
    per seed, their compute summed, the picked prompts listed per seed). None until all are done."""
    if args.protocol == "pooled":
        return entry.get("search")
    searches = entry.get("searches", {})
    if not all(str(seed) in searches for seed in args.seeds):
        return None
    parts = [searches[str(seed)] for seed in args.seeds]
    merged = {"pick": {"test_per_seed": {}, "prompts": []},
              "evaluations": sum(p["evaluations"] for p in parts), "train_steps": sum(p["train_steps"] for p in parts),
              "wall_seconds": sum(p["wall_seconds"] for p in parts),
              "peak_resident_mb": max((p.get("peak_resident_mb") or 0 for p in parts), default=0) or None}
    ensembles = {}
    for seed, part in zip(args.seeds, parts):
        merged["pick"]["test_per_seed"][str(seed)] = part["pick"]["test_per_seed"].get(str(seed),
                                                                                      part["pick"]["test_per_seed"].get(seed))
        merged["pick"]["prompts"].append((seed, part["pick"]))
        if "ensemble" in part:
            ensembles[str(seed)] = next(iter(part["ensemble"]["test_per_seed"].values()))
    if len(ensembles) == len(parts):
        merged["ensemble"] = {"test_per_seed": ensembles}
    return merged


def prompt_text(pick: dict) -> str:
    return (("(task prompt) " if pick.get("is_task_prompt") else "") + f"`{pick['template']}` {json.dumps(pick['label_words'])}"
            + (f" demos={pick['demonstrations']}" if pick.get("demonstrations", "off") != "off" else ""))


def summarise_search(options: SearchOptions, ensemble_id: str | None = None) -> dict:
    """The single candidate the search's export rule (`options.selection`) chooses from its leaderboard, replayed
    so that searches finished under an older rule are summarised under the current one; the ensemble row if the
    search made one (`ensemble_id`, the one this run of the search made, where a reused folder holds several);
    and the compute recorded in the leaderboard."""
    choices, facts = replayed_choices(Path(options.out) / "leaderboard.sqlite", rules=(options.selection,),
                                      alpha=options.selection_alpha)
    chosen = choices[options.selection]
    rows, ranking = facts["board"].rows(facts["config_hash"]), facts["ranking"]

    def per_seed_test(candidate_id: str) -> dict:
        return {str(r.seed): r.test_metric for r in rows if r.candidate_id == candidate_id and r.budget == options.max_steps}

    ensemble = next((entry for entry in ranking if "ensemble" in entry.candidate
                     and entry.candidate_id == (ensemble_id or entry.candidate_id)), None)
    # The pick is a single prompt: where the rule chose the ensemble, the best single candidate stands in.
    single = (chosen.entry if "ensemble" not in chosen.entry.candidate
              else next(entry for entry in ranking if "ensemble" not in entry.candidate))
    summary = {
        "pick": {"template": single.candidate["template"], "label_words": single.candidate["label_words"],
                 "demonstrations": single.candidate.get("demonstrations", "off"),
                 "candidate_id": single.candidate_id, "test_per_seed": per_seed_test(single.candidate_id),
                 # the task prompt itself or its version with finalist demonstrations
                 "is_task_prompt": any(entry.candidate_id == facts["incumbent"]
                                       and is_version_of(single.candidate, entry.candidate) for entry in ranking)},
        # "rule": the rule asked for; "decided_by": the one that chose ("dev" where the paired rule had no incumbent)
        "selection": {**chosen.to_dict(), "decided_by": chosen.rule, "rule": options.selection,
                      "alpha": options.selection_alpha},
        "candidates": len({r.candidate_id for r in rows}),
        "evaluations": len(rows),
        "train_steps": sum(r.steps for r in rows),
        "wall_seconds": sum(r.wall_time_s for r in rows),
        # the largest resident set an evaluation reached (rows stored before it was recorded have none)
        "peak_resident_mb": max((r.extra.get("resident_mb", {}).get("peak") or 0 for r in rows), default=0) or None,
    }
    if ensemble is not None:
        summary["ensemble"] = {"candidate_id": ensemble.candidate_id, "size": len(ensemble.candidate["ensemble"]),
                               "test_per_seed": per_seed_test(ensemble.candidate_id)}
    return summary


def summarised_under(summary: dict, options: SearchOptions) -> bool:
    chosen = summary.get("selection", {})
    return chosen.get("rule") == options.selection and chosen.get("alpha") == options.selection_alpha


def manual_from_search(args, task_name: str, seed: int) -> dict | None:
    """The manual prompt's final-rung row of the seed's own search, where it has one: halving keeps the task's
    prompt to the final rung and the search's evaluator trains it with the same seed and budget, so this row
    is what `manual_unit` would compute again (evaluation is deterministic)."""
    if args.protocol != "per-seed":
        return None
    options = search_options(args, task_name, seed)
    board_path = Path(options.out) / "leaderboard.sqlite"
    if not board_path.exists():
        return None
    _, facts = replayed_choices(board_path, rules=())
    rows = [r for r in facts["board"].rows(facts["config_hash"])
            if r.candidate_id == facts["manual"] and r.budget == options.max_steps and r.seed == seed
            and r.test_metric is not None]
    if not rows:
        return None
    row = rows[-1]
    return {"dev": row.dev_metric, "test": row.test_metric, "best_step": row.extra.get("best_step"),
            "seconds": row.wall_time_s, "from": "the search's own final-rung row"}


def manual_pair_from_search(entry: dict, args, task_name: str, seed: int) -> bool:
    """Record the seed's manual unit from its finished search as soon as there is one, so that a run
    stopped before the last seed keeps each finished seed's pair; True when one was recorded."""
    if str(seed) in entry["manual"]:
        return False
    manual = manual_from_search(args, task_name, seed)
    if manual is not None:
        entry["manual"][str(seed)] = manual
    return manual is not None


def manual_unit(options: SearchOptions, seed: int) -> dict:
    """The task's manual prompt through the search's own evaluator at the final budget."""
    task = load_task(options.task)
    evaluator = PromptEvaluator(options.settings())
    candidate = {"template": task.template, "label_words": dict(task.label_words), "demonstrations": "off"}
    start = time.perf_counter()
    outcome = evaluator(candidate, seed, options.max_steps)
    return {"dev": outcome.dev_metric, "test": outcome.test_metric, "best_step": outcome.extra.get("best_step"),
            "seconds": time.perf_counter() - start}


def cell(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean, std = mean_std(values)
    return f"{mean * 100:.1f} ({std * 100:.1f})"


def table_tasks(state: dict, args) -> list[str]:
    """The issue's tasks in their order, then any other task this run or an earlier one (another process on
    the same results file, perhaps) ran: the table covers the whole file, not just this run's --tasks."""
    others = [t for t in [*state["tasks"], *args.tasks] if t not in DEFAULT_TASKS]
    return list(DEFAULT_TASKS) + list(dict.fromkeys(others))


def finished_seeds_of_unfinished_tasks(state: dict, args) -> list[str]:
    """Per-seed results of the tasks the table cannot summarise yet (some seeds still missing)."""
    lines = []
    for task_name in table_tasks(state, args):
        entry = state["tasks"].get(task_name, {})
        searches, manual = entry.get("searches", {}), entry.get("manual", {})
        if args.protocol != "per-seed" or not searches or merged_search(entry, args) is not None:
            continue
        for seed, search in sorted(searches.items()):
            ensemble = (search.get("ensemble") or {}).get("test_per_seed", {}).get(seed)
            lines.append(f"- {task_name} seed {seed}: pick {prompt_text(search['pick'])}, test "
                         f"{search['pick']['test_per_seed'][seed] * 100:.1f}"
                         + (f"; ensemble {ensemble * 100:.1f}" if ensemble is not None else "")
                         + (f"; manual {manual[seed]['test'] * 100:.1f}" if seed in manual else "; manual not run")
                         + f"; {search['selection']['reason']}; {search['evaluations']} evaluations, "
                         f"{search['wall_seconds']:.0f} s")
    return ["", "Finished seeds of unfinished tasks:", *lines] if lines else []


RULE_TEXT = {"paired": "`--selection paired`: the task's prompt unless a final-rung candidate wins significantly more "
                       "of the same dev examples",
             "paired-loss": "`--selection paired-loss`: the task's prompt unless a final-rung candidate ranked above it "
                            "gives the gold class a significantly higher log-probability on the same dev examples",
             "dev": "`--selection dev`: the best mean dev metric"}


def export_rules(state: dict) -> str:
    """The export rule(s) the file's searches were summarised under (files merged from older runs may mix)."""
    rules = sorted({search.get("selection", {}).get("rule", "paired") for entry in state["tasks"].values()
                    for search in entry.get("searches", {}).values()})
    return "; ".join(RULE_TEXT.get(rule, rule) for rule in rules) or RULE_TEXT["paired-loss"]


def markdown(state: dict, args) -> str:
    protocol = ("one search per seed, its pick scored on that seed" if args.protocol == "per-seed"
                else "one search over all seeds")
    if args.demonstrations != ["off"]:
        protocol += f", the search with --demonstrations {' '.join(args.demonstrations)}"
    if args.finalist_demonstrations:
        protocol += (f", then --finalist-demonstrations {' '.join(args.finalist_demonstrations)} for the race's best "
                     f"{args.demo_finalists}")
    lines = [f"## Default search vs manual prompt, {args.model}, seeds {args.seeds}, {protocol}"
             + ("" if len(args.seeds) >= 5 else " (first pass: fewer than 5 seeds)"), "",
             "Test metric mean (std) over seeds; manual = the task's manual prompt fine-tuned with the "
             "search's final budget by the same evaluator; search pick = the single candidate the default export "
             f"rule ({export_rules(state)}) chooses, replayed from each search's leaderboard; \"(task prompt)\" marks a pick "
             "that is the manual prompt itself (trained by the same evaluator with the same seed and budget as the manual column; "
             "with \"demos=\" after it, the manual prompt with demonstrations, which the manual column does not have).", "",
             "| task | manual | search pick (exported single) | ensemble | pick - manual | picked prompt | evaluations | train steps | search s | peak MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    missing, met_floor, wins, done_tasks, ensembles, ensemble_ok = [], 0, 0, 0, 0, 0
    for task_name in table_tasks(state, args):
        entry = state["tasks"].get(task_name, {})
        manual = entry.get("manual", {})
        search = merged_search(entry, args)
        missing += [f"{task_name} manual seed {s}" for s in args.seeds if str(s) not in manual]
        if args.protocol == "pooled" and search is None:
            missing.append(f"{task_name} search")
        elif args.protocol == "per-seed":
            missing += [f"{task_name} search seed {s}" for s in args.seeds
                        if str(s) not in entry.get("searches", {})]
        manual_tests, pick_tests, ensemble_tests = (list(t.values()) for t in seed_tests(entry, args))
        diff = "-"
        if ensemble_tests and pick_tests:
            ensembles += 1
            ensemble_ok += mean_std(ensemble_tests)[0] >= mean_std(pick_tests)[0]
        if search and len(manual_tests) == len(args.seeds):
            delta = (mean_std(pick_tests)[0] - mean_std(manual_tests)[0]) * 100
            diff = f"{delta:+.1f}"
            done_tasks += 1
            met_floor += delta >= -1.0
            wins += delta > 0
        if search is None:
            prompt = "-"
        elif "prompts" in search["pick"]:
            prompt = "<br>".join(f"{seed}: {prompt_text(pick)}" for seed, pick in search["pick"]["prompts"])
        else:
            prompt = prompt_text(search["pick"])
        compute = (f"{search['evaluations']} | {search['train_steps']} | {search['wall_seconds']:.0f} | "
                   f"{search.get('peak_resident_mb') or '-'}" if search else "- | - | - | -")
        lines.append(f"| {task_name} | {cell(manual_tests)} | {cell(pick_tests)} | "
                     f"{cell(ensemble_tests)} | {diff} | {prompt} | {compute} |")
    lines += ["", f"Targets over the {done_tasks} finished task(s): pick within 1 point of manual on "
              f"{met_floor}/{done_tasks}; above manual on {wins}/{done_tasks}; ensemble at least the best single "
              f"candidate on {ensemble_ok}/{ensembles} task(s) with an ensemble."]
    if args.test_limit:
        lines.append(f"Test sets larger than {args.test_limit} examples were scored on a seeded sample of {args.test_limit}.")
    copies = [f"{task_name} seed{'s' if len(seeds) > 1 else ''} {', '.join(sorted(seeds, key=int))}"
              for task_name, entry in state["tasks"].items() if (seeds := entry.get("started_from"))]
    if copies:
        lines.append("Started from a copy of the default search's finished folder (`--reuse-default`: its evaluations "
                     f"of the candidates both races share are reused; the compute columns count them too): "
                     f"{'; '.join(copies)}.")
    lines += finished_seeds_of_unfinished_tasks(state, args)
    if missing:
        lines += ["", f"Partial: not run yet: {', '.join(missing)}."]
    return "\n".join(lines)


def seed_tests(entry: dict, args) -> tuple[dict, dict, dict]:
    """A task's test metrics by seed (str): manual (the seeds run so far), and once the search is complete its pick
    and ensemble (empty otherwise)."""
    manual = entry.get("manual", {})
    search = merged_search(entry, args) or {}
    return ({str(s): manual[str(s)]["test"] for s in args.seeds if str(s) in manual},
            {str(s): v for s, v in search.get("pick", {}).get("test_per_seed", {}).items()},
            {str(s): v for s, v in search.get("ensemble", {}).get("test_per_seed", {}).items()})


def differences_from_manual(state: dict, args) -> list[tuple[str, list[float], list[float]]]:
    """Per finished task (every seed of the manual prompt and of the search): the pick's and the ensemble's test
    metric minus the manual prompt's on the same seed, in points (the ensemble's list empty without one)."""
    rows = []
    for task_name in table_tasks(state, args):
        manual, pick, ensemble = seed_tests(state["tasks"].get(task_name, {}), args)
        if len(manual) == len(args.seeds) and pick:
            rows.append((task_name, *[[100 * (side[s] - manual[s]) for s in manual if s in side]
                                      for side in (pick, ensemble)]))
    return rows


def plot(state: dict, args, path: Path) -> Path | None:
    """`differences_from_manual` as bars (mean over seeds) and dots (seeds), pick and ensemble side by side per
    task, with the target's line 1 point below manual. None when no task is finished."""
    rows = differences_from_manual(state, args)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(1.0 + 1.1 * len(rows), 3.6))
    for side, (offset, colour, name) in enumerate(((-0.18, "#6baed6", "search pick"), (0.18, "#74c476", "ensemble"))):
        drawn = [(i, row[1 + side]) for i, row in enumerate(rows) if row[1 + side]]
        axis.bar([i + offset for i, _ in drawn], [mean_std(d)[0] for _, d in drawn], width=0.34, color=colour,
                 edgecolor="#404040", label=name)
        for i, diffs in drawn:
            axis.scatter([i + offset] * len(diffs), diffs, color="#08306b", s=9, zorder=3)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.axhline(-1, color="#de2d26", linewidth=0.8, linestyle="--", label="1 point below manual")
    axis.set_xticks(range(len(rows)), [row[0] for row in rows])
    axis.set_ylabel("minus manual prompt, test points")
    unfinished = len(table_tasks(state, args)) - len(rows)
    axis.set_title(f"{args.model}, seeds {', '.join(map(str, args.seeds))}: bar = mean of the seeds' differences, "
                   f"dots = seeds" + (f" (partial: {unfinished} task(s) not finished)" if unfinished else ""), fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def save_state(path: Path, state: dict, args) -> None:
    state["environment"] = environment()
    save_merged(path, state)
    commands = "\n".join(f"`{c}`" for c in state["commands"])
    figure = plot(state, args, path.with_suffix(".png"))
    shown = f"\n\nPlot: `{figure.name}`" if figure else ""
    path.with_suffix(".md").write_text(f"Commands:\n\n{commands}\n\nEnvironment: `{json.dumps(state['environment'])}`"
                                       f"\n\n{markdown(state, args)}{shown}\n", encoding="utf-8")


def merged_state(paths: Sequence[Path], args) -> dict:
    """The per-seed units of several results files under one state; refused when their settings differ in
    more than the seeds, or when two files hold different results for the same unit."""
    wanted = {k: v for k, v in settings_of(args).items() if k != "seeds"}
    state = {"settings": settings_of(args), "tasks": {}, "commands": [], "merged_from": [str(p) for p in paths]}
    for path in paths:
        saved = json.loads(path.read_text(encoding="utf-8"))
        theirs = {k: v for k, v in saved["settings"].items() if k != "seeds"}
        if theirs != wanted:
            changed = sorted(k for k in theirs.keys() | wanted.keys() if theirs.get(k) != wanted.get(k))
            raise SystemExit(f"{path}: cannot merge, settings differ in {changed} (besides seeds)")
        if saved["settings"].get("protocol", "per-seed") != "per-seed":
            raise SystemExit(f"{path}: cannot merge, only per-seed units can be joined")
        state["commands"] += [c for c in saved.get("commands", []) if c not in state["commands"]]
        for task_name, entry in saved["tasks"].items():
            mine = state["tasks"].setdefault(task_name, {"manual": {}, "searches": {}})
            for part in ("manual", "searches"):
                for seed, unit in entry.get(part, {}).items():
                    if seed in mine[part] and mine[part][seed] != unit:
                        raise SystemExit(f"{path}: {task_name} {part} seed {seed} differs from an earlier file's")
                    mine[part][seed] = unit
    return state


def main() -> None:
    args = parse_args()
    if args.merge:
        name = args.name or f"search_quality_{args.model.replace('/', '_')}_merged"
        path = RESULTS / f"{name}.json"
        state = merged_state(args.merge, args)
        state["commands"].append(command_line())
        save_state(path, state, args)
        print(markdown(state, args), flush=True)
        print(f"saved {path} and {path.with_suffix('.md')}")
        return
    import torch

    torch.set_num_threads(args.threads)
    args.tasks = [load_task(t).name for t in args.tasks]
    name = args.name or f"search_quality_{args.model.replace('/', '_')}"
    path = RESULTS / f"{name}.json"
    state = load_state(path, args)
    if command_line() not in state["commands"]:
        state["commands"].append(command_line())
    save_state(path, state, args)
    for task_name in args.tasks:
        entry = state["tasks"].setdefault(task_name, {"manual": {}})
        for seed in search_units(args):
            options = search_options(args, task_name, seed)
            done = entry.get("search") if seed is None else entry.setdefault("searches", {}).get(str(seed))
            if done is not None and summarised_under(done, options):
                if seed is not None and manual_pair_from_search(entry, args, task_name, seed):
                    save_state(path, state, args)
                continue
            if done is None:
                copied = start_from_default(args, task_name, seed) if args.reuse_default else None
                if copied is not None:
                    print(f"{task_name} seed {seed}: starting from a copy of {copied}", flush=True)
                if (origin := copied_from(args, task_name, seed)) is not None:
                    entry.setdefault("started_from", {})[str(seed)] = origin
                start = time.perf_counter()
                result = run_pipeline(options)
                summary = summarise_search(options, next((e.candidate_id for e in result.ranking
                                                          if "ensemble" in e.candidate), None))
                summary["pipeline_seconds"] = time.perf_counter() - start
            else:  # finished under another export rule: the leaderboard holds all it needs
                summary = {**summarise_search(options, (done.get("ensemble") or {}).get("candidate_id")),
                           "pipeline_seconds": done.get("pipeline_seconds")}
            if seed is None:
                entry["search"] = summary
            else:
                entry["searches"][str(seed)] = summary
                manual_pair_from_search(entry, args, task_name, seed)
            save_state(path, state, args)
        options = search_options(args, task_name)
        for seed in args.seeds:
            if str(seed) not in entry["manual"]:
                entry["manual"][str(seed)] = manual_from_search(args, task_name, seed) or manual_unit(options, seed)
                save_state(path, state, args)
        print(markdown(state, args), flush=True)
    print(f"saved {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
