"""Has prompt-based fine-tuning beaten standard fine-tuning? `search-templates compare` on several tasks,
one table: per task the zero-shot prompt, prompt-based fine-tuning of the task's manual prompt and a
classification head on the same backbone, k-shot splits, seeds and budget (test metric, mean ± std).

    python benchmarks/bench_compare.py --tasks SST-2 CR TREC RTE --model smollm2-135m

Each task runs in its own folder under --root (default runs/compare-bench/<model>/<task>), which keeps every
finished unit: a stopped run continues where it stopped. Saves results/<name>.{md,json}; tasks not finished
are listed as partial.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save  # noqa: E402

from autoprompt_search.comparison import DEFAULT_SEEDS, ComparisonOptions, cell, run_comparison  # noqa: E402
from autoprompt_search.training import TrainConfig  # noqa: E402


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
    args = parser.parse_args()
    summaries = {}
    for task in args.tasks:  # each task resumes from its own folder
        options = task_options(args, task)
        print(f"== {task}: {options.out}", flush=True)
        summaries[task] = run_comparison(options, run_units=not args.collect)
    text, partial = table(summaries)
    budget = f"{args.steps} steps at learning rate {args.lr}"
    if args.standard_steps or args.standard_lr:
        budget += (f"; standard fine-tuning {args.standard_steps or args.steps} steps at "
                   f"{args.standard_lr or args.lr}")
    markdown = "\n".join([
        f"# Prompt-based vs standard fine-tuning, {args.model}, K=16, seeds {args.seeds}"
        + (" (partial)" if partial else ""), "",
        f"Each task's manual prompt; {budget}, batch {TrainConfig.batch_size}; each method keeps its best dev "
        f"checkpoint (step 0 included); test metric x 100, mean ± std over seeds "
        f"(test examples: {args.test_limit or 'all'}). Zero-shot scoring does not depend on the seed, so it ran once.",
        "", text] + ([f"", f"Partial: {'; '.join(partial)}."] if partial else []))
    save(args.name or f"compare_{args.model}", markdown,
         {"args": vars(args), "tasks": {task: {m.method: {"test": m.tests, "dev": m.devs, "best_step": m.best_steps}
                                               for m in s.methods} for task, s in summaries.items()}})


if __name__ == "__main__":
    main()
