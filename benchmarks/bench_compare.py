"""Has prompt-based fine-tuning beaten standard fine-tuning? `search-templates compare` on several tasks,
one table: per task the zero-shot prompt, prompt-based fine-tuning of the task's manual prompt and a
classification head on the same backbone, k-shot splits, seeds and budget (test metric, mean ± std).

    python benchmarks/bench_compare.py --tasks SST-2 CR TREC RTE --model smollm2-135m

Each task runs in its own folder under --root (default runs/compare-bench/<model>/<task>), which keeps every
finished unit: a stopped run continues where it stopped. Saves results/<name>.{md,json} after every unit, the
units included (without their per-example scores), so that where the run folders are gone (a new machine) the
same command puts them back and goes on; tasks not finished are listed as partial.

    python benchmarks/bench_compare.py --merge results/compare_a.json results/compare_b.json --name compare_x

tables tasks from several results files made with the same settings (a later file's task replaces an earlier's).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, save, saved_under_same_args  # noqa: E402

from autoprompt_search.comparison import (  # noqa: E402
    DEFAULT_SEEDS, ComparisonOptions, ComparisonSummary, MethodSummary, ResultStore, cell, planned_units,
    run_comparison, unit_key)
from autoprompt_search.search import write_json_atomic  # noqa: E402
from autoprompt_search.tasks import get_task  # noqa: E402
from autoprompt_search.training import TrainConfig  # noqa: E402

# What says only where and what to run now; the rest must match for a results file to be resumed or merged.
RUN_ONLY_ARGS = ("tasks", "root", "name", "collect", "merge", "data_dir")
PER_EXAMPLE = ("dev_labels", "dev_scores", "test_labels", "test_scores", "traceback")


def task_options(args, task: str) -> ComparisonOptions:
    return ComparisonOptions(task=task, model=args.model, methods=tuple(args.methods), seeds=tuple(args.seeds),
                             steps=args.steps, lr=args.lr,
                             standard_steps=args.standard_steps, standard_lr=args.standard_lr,
                             test_limit=args.test_limit, data_dir=args.data_dir,
                             out=str(Path(args.root) / args.model / task.lower()), progress=True)


def table(summaries: dict) -> tuple[str, list[str]]:
    lines = ["| task | metric | zero-shot prompt | prompt-based fine-tuning | standard fine-tuning | prompt - standard "
             "| seeds prompt ahead |", "|---|---|---|---|---|---|---|"]
    partial = []
    for task, summary in summaries.items():
        versus = summary.prompt_against_standard()
        difference = "-" if versus is None else f"{100 * versus[0]:+.1f}"
        ahead = "-" if versus is None else f"{versus[1]}/{versus[2]}"
        lines.append(f"| {summary.task} | {summary.metric} | {cell(summary.method('zero-shot'))} | "
                     f"{cell(summary.method('prompt'))} | {cell(summary.method('standard'))} | {difference} | {ahead} |")
        if summary.missing:
            partial.append(f"{task} ({', '.join(summary.missing)})")
    return "\n".join(lines), partial


def kept_store(store_file: Path) -> dict | None:
    """A task's comparison.json without per-example labels and scores (what the table needs, a few kB)."""
    if not store_file.exists():
        return None
    saved = json.loads(store_file.read_text(encoding="utf-8"))
    saved["units"] = {key: {k: v for k, v in unit.items() if k not in PER_EXAMPLE}
                      for key, unit in saved.get("units", {}).items()}
    return saved


def restore_store(folder: Path, kept: dict | None) -> bool:
    """Put a kept store back where the task's folder has none; True when it did."""
    target = folder / "comparison.json"
    if kept is None or target.exists():
        return False
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(target, kept, indent=1)  # as ResultStore writes it
    return True


def saved_summary(task: str, saved: dict) -> ComparisonSummary:
    """A task's summary from a results file (also one written before units were kept in it); units of the
    file's plan that it lacks are listed as missing."""
    methods = [MethodSummary(method, {int(k): v for k, v in found.get("test", {}).items()},
                             {int(k): v for k, v in found.get("dev", {}).items()},
                             {int(k): v for k, v in found.get("best_step", {}).items()}, found.get("seconds", 0.0))
               for method, found in saved["tasks"][task].items()]
    args = saved["args"]
    units = planned_units(argparse.Namespace(methods=args["methods"], seeds=args["seeds"]), [{}])
    done = {(m.method, seed) for m in methods for seed in m.tests}
    missing = [unit_key(method, seed) for method, seed, _ in units if (method, seed) not in done]
    metric = saved.get("metrics", {}).get(task) or get_task(task).metric
    return ComparisonSummary(task, metric, methods, missing, {})


def merged_summaries(paths: list[str]) -> tuple[dict, dict]:
    """Tasks from several results files (later files win), and the settings they share."""
    summaries, settings = {}, None
    for path in paths:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
        these = {k: v for k, v in saved["args"].items() if k not in RUN_ONLY_ARGS}
        if settings is not None and these != settings:
            changed = sorted(k for k in these.keys() | settings.keys() if these.get(k) != settings.get(k))
            raise SystemExit(f"{path}: made with other settings than {paths[0]} ({', '.join(changed)}); cannot merge")
        settings = these
        for task, methods in saved["tasks"].items():
            if any(found.get("test") for found in methods.values()):
                summaries[task] = saved_summary(task, saved)
    return summaries, settings


def write(args, summaries: dict, stores: dict, settings: dict, sources: list[str] | None = None) -> None:
    text, partial = table(summaries)
    if not sources:
        partial += [f"{task} (not tabled yet: running or to come)" for task in args.tasks if task not in summaries]
    budget = f"{settings['steps']} steps at learning rate {settings['lr']}"
    if settings.get("standard_steps") or settings.get("standard_lr"):
        budget += (f"; standard fine-tuning {settings.get('standard_steps') or settings['steps']} steps at "
                   f"{settings.get('standard_lr') or settings['lr']}")
    markdown = "\n".join([
        f"# Prompt-based vs standard fine-tuning, {settings['model']}, K=16, seeds {settings['seeds']}"
        + (" (partial)" if partial else ""), "",
        f"Each task's manual prompt; {budget}, batch {TrainConfig.batch_size}; each method keeps its best dev "
        f"checkpoint (step 0 included); test metric x 100, mean ± std over seeds "
        f"(test examples: {settings.get('test_limit') or 'all'}). Zero-shot scoring does not depend on the seed, so it "
        f"ran once.", *([f"Tabled from {', '.join(sources)} (a later file's task replaces an earlier's)."]
                        if sources else []),
        "", text] + ([f"", f"Partial: {'; '.join(partial)}."] if partial else []))
    tasks = {task: {m.method: {"test": m.tests, "dev": m.devs, "best_step": m.best_steps, "seconds": m.seconds}
                    for m in s.methods} for task, s in summaries.items()}
    save(args.name or f"compare_{settings['model']}", markdown,
         {"args": {**settings, **{k: getattr(args, k) for k in RUN_ONLY_ARGS}}, "tasks": tasks,
          "metrics": {task: s.metric for task, s in summaries.items()}, "stores": stores})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["SST-2", "SST-5", "MR", "CR", "TREC", "RTE", "MRPC", "CoLA"])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--methods", nargs="+", default=["zero-shot", "prompt", "standard"])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--standard-steps", type=int, default=None)
    parser.add_argument("--standard-lr", type=float, default=None)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--root", default="runs/compare-bench")
    parser.add_argument("--name", default=None, help="results file name (default: compare_<model>)")
    parser.add_argument("--collect", action="store_true",
                        help="run nothing: table what the task folders hold, the rest marked partial")
    parser.add_argument("--merge", nargs="+", default=None, metavar="RESULTS_JSON",
                        help="run nothing: table the tasks of these results files (same settings)")
    args = parser.parse_args()
    if args.merge:
        summaries, settings = merged_summaries(args.merge)
        write(args, summaries, {}, settings, sources=args.merge)
        return
    settings = {k: v for k, v in vars(args).items() if k not in RUN_ONLY_ARGS}
    earlier = saved_under_same_args(RESULTS / f"{args.name or f'compare_{args.model}'}.json", args,
                                    lambda key: key in RUN_ONLY_ARGS) or {}
    stores = dict(earlier.get("stores", {}))
    summaries = {}
    for task in args.tasks:  # each task resumes from its own folder, put back from the results file if gone
        options = task_options(args, task)
        folder = Path(options.out)
        if restore_store(folder, stores.get(task)):
            print(f"{folder}: put back from the results file, {len(stores[task]['units'])} unit(s)", flush=True)
        print(f"== {task}: {options.out}", flush=True)

        def keep(store: ResultStore, task=task) -> None:
            stores[task] = kept_store(store.path)
            write(args, summaries, stores, settings)

        summaries[task] = run_comparison(options, run_units=not args.collect, after_unit=keep)
        stored = kept_store(folder / "comparison.json")
        if stored is not None:
            stores[task] = stored
        write(args, summaries, stores, settings)


if __name__ == "__main__":
    main()
