"""Learning rate x training steps: a small sweep over several tasks to choose TrainConfig's defaults
(issue 14; the current 5e-5 and 32 steps come from a single SST-2 pilot).

    OMP_NUM_THREADS=1 python benchmarks/bench_lr_steps.py --model smollm2-135m \\
        --tasks SST-2 CR SST-5 TREC --seeds 13 21 42 --lrs 1e-5 2e-5 5e-5 1e-4 --steps 16 32 64

Each unit is (task, seed, lr, steps): prompt-based fine-tuning of the task's manual prompt from the
pretrained weights, dev scored at step 0 and every --eval-every steps, the best dev checkpoint scored on
a seeded sample of --test-limit test examples (the same sample for every unit). Every unit is saved to
results/<name>.json as soon as it finishes, and results/<name>.md (and .png) are rebuilt; running the
same command again skips finished units, and other settings under the same name are refused.

Order: seeds outermost, then tasks, then the (lr, steps) cells. A run stopped after its first seed has
thus already given every task a complete grid on that seed, so the regret table compares all cells on the
same data from early on; further seeds only tighten it. (Cells outermost would give early precise
numbers for a few cells and nothing on the others, which cannot choose a default.)

The Markdown has one lr x steps grid per task (test mean ± std over seeds, dev mean), and an overall grid
of regret: how many points each cell's test mean lies below its task's best cell, averaged over tasks;
the cell with the lowest mean regret is the candidate default.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (RESULTS, command_line, environment, load_benchmark_backbone, mean_std,  # noqa: E402
                    resumable_state, save_merged)

from autoprompt_search.data import limit_examples, load_split, load_task, resolve_data_dir  # noqa: E402
from autoprompt_search.training import PromptClassifier, TrainConfig  # noqa: E402
from autoprompt_search.training.precision import resolve_precision  # noqa: E402

RUN_ONLY = ("tasks", "seeds", "lrs", "steps", "threads", "data_dir", "name")
DEFAULT_CELL = (TrainConfig.lr, TrainConfig.steps)
TEST_SAMPLE_SEED = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", nargs="+", default=["SST-2", "CR", "SST-5", "TREC"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42])
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-5, 2e-5, 5e-5, 1e-4])
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    parser.add_argument("--test-limit", type=int, default=500,
                        help="score a seeded random sample of N test examples, the same for every unit (0: all)")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                        help="training and scoring precision (auto, as the search: bf16 where the CPU has it)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--data-dir", default=None,
                        help="LM-BFF data folder (default: $AUTOPROMPT_DATA_DIR, else ../shared/data/lmbff)")
    parser.add_argument("--name", default=None,
                        help="results file name under results/, or an absolute path without suffix "
                             "(default lr_steps_<model>)")
    return parser.parse_args(argv)


def settings_of(args) -> dict:
    return {k: v for k, v in vars(args).items() if k not in RUN_ONLY}


def lr_text(lr: float) -> str:
    return f"{lr:g}"


def unit_key(task: str, seed: int, lr: float, steps: int) -> str:
    return f"{task}|{seed}|{lr_text(lr)}|{steps}"


def grid_cells(lrs, steps) -> list[tuple[float, int]]:
    return [(lr, s) for lr in lrs for s in steps]


def planned_units(tasks, seeds, lrs, steps) -> list[tuple[str, int, float, int]]:
    return [(task, seed, lr, s) for seed in seeds for task in tasks for lr, s in grid_cells(lrs, steps)]


def union(*lists) -> list:
    return list(dict.fromkeys(x for values in lists for x in values))


# ---------------------------------------------------------------------------------------------------
# summary (pure functions of the saved units)

def task_summary(units: dict, task: str, seeds, cells) -> dict:
    """Per cell: test mean/std and dev mean over the seeds used, and the best cell by test mean.

    The seeds used are those every cell of the task has, so that a partial run never compares a cell
    averaged over three seeds with one seen on a single (easier or harder) seed; when no seed is
    complete yet, every finished unit is used and `comparable` is False."""
    complete = [s for s in seeds if all(unit_key(task, s, lr, st) in units for lr, st in cells)]
    used = complete or list(seeds)
    stats = {}
    for cell in cells:
        rows = [units[unit_key(task, s, *cell)] for s in used if unit_key(task, s, *cell) in units]
        if not rows:
            continue
        test_mean, test_std = mean_std([r["test"] for r in rows])
        dev_mean, _ = mean_std([r["dev"] for r in rows])
        stats[cell] = {"test": test_mean, "test_std": test_std, "dev": dev_mean, "n": len(rows),
                       "seconds": sum(r["seconds"] for r in rows) / len(rows)}
    # ties keep the first cell in grid order (smaller lr, then fewer steps)
    best = max(stats, key=lambda c: stats[c]["test"], default=None)
    return {"seeds": [s for s in used if any(unit_key(task, s, *c) in units for c in cells)],
            "comparable": bool(complete), "cells": stats, "best": best}


def summarize(units: dict, tasks, seeds, cells) -> dict:
    """Per-task summaries and the overall regret of each cell: the mean over tasks of (task's best
    cell test mean - the cell's test mean), in the metric's units (lower is better)."""
    per_task = {task: task_summary(units, task, seeds, cells) for task in tasks}
    regrets: dict[tuple, list[float]] = {cell: [] for cell in cells}
    for summary in per_task.values():
        if summary["best"] is None:
            continue
        best = summary["cells"][summary["best"]]["test"]
        for cell, stats in summary["cells"].items():
            regrets[cell].append(best - stats["test"])
    tasks_with_data = sum(1 for s in per_task.values() if s["best"] is not None)
    regret = {cell: {"mean": sum(values) / len(values), "tasks": len(values)}
              for cell, values in regrets.items() if values}
    # only a cell seen on every task that has data can be the overall best: a missing task is no zero regret
    eligible = [c for c in cells if c in regret and regret[c]["tasks"] == tasks_with_data]
    best = min(eligible, key=lambda c: regret[c]["mean"], default=None)
    return {"tasks": per_task, "regret": regret, "best": best, "tasks_with_data": tasks_with_data}


def missing_units(units: dict, tasks, seeds, lrs, steps) -> list[str]:
    return [unit_key(*u) for u in planned_units(tasks, seeds, lrs, steps) if unit_key(*u) not in units]


def _points(value: float) -> str:
    return f"{value * 100:.1f}"


def _grid_table(lrs, steps, cell_text) -> list[str]:
    lines = ["| lr \\ steps | " + " | ".join(str(s) for s in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for lr in lrs:
        lines.append(f"| {lr_text(lr)} | " + " | ".join(cell_text((lr, s)) for s in steps) + " |")
    return lines


def markdown(units: dict, grid: dict, settings: dict) -> str:
    tasks, seeds, lrs, steps = grid["tasks"], grid["seeds"], grid["lrs"], grid["steps"]
    cells = grid_cells(lrs, steps)
    summary = summarize(units, tasks, seeds, cells)
    missing = missing_units(units, tasks, seeds, lrs, steps)
    default_in_grid = DEFAULT_CELL in cells
    test_limit = settings.get("test_limit") or "all"
    lines = [f"## Learning rate x steps: {settings.get('model')}, K={settings.get('k')}, seeds {seeds}"
             + (" (partial)" if missing else ""), "",
             f"Prompt-based fine-tuning of each task's manual prompt from the pretrained weights, batch "
             f"{settings.get('batch_size')}, linear decay to 0, dev scored at step 0 and every "
             f"{settings.get('eval_every')} steps; the best dev checkpoint (step 0 included) scored on "
             f"{test_limit} test examples (a seeded sample, the same for every unit).", "",
             "Cells: test mean ± std over seeds, dev mean in brackets; **bold**: the task's best cell by test "
             f"mean; †: the current default (lr {lr_text(DEFAULT_CELL[0])}, {DEFAULT_CELL[1]} steps)"
             + ("" if default_in_grid else ", not in this grid") + "."]
    for task in tasks:
        task_sum = summary["tasks"][task]
        if task_sum["best"] is None:
            lines += ["", f"### {task}", "", "No unit finished yet."]
            continue
        seeds_note = (f"seeds {task_sum['seeds']}" if task_sum["comparable"]
                      else f"partial seeds per cell, none complete yet: {task_sum['seeds']}")

        def cell_text(cell, stats=task_sum["cells"], best=task_sum["best"]):
            if cell not in stats:
                return "-"
            s = stats[cell]
            text = f"{_points(s['test'])} ± {_points(s['test_std'])} ({_points(s['dev'])})"
            if s["n"] < len(task_sum["seeds"]):
                text += f" n={s['n']}"
            if cell == best:
                text = f"**{text}**"
            return text + (" †" if cell == DEFAULT_CELL else "")

        lines += ["", f"### {task} ({seeds_note})", "", *_grid_table(lrs, steps, cell_text)]
        best = task_sum["best"]
        lines += ["", f"Best: lr {lr_text(best[0])}, {best[1]} steps, test {_points(task_sum['cells'][best]['test'])}."]

    regret = summary["regret"]
    if regret:
        total = summary["tasks_with_data"]

        def regret_text(cell):
            if cell not in regret:
                return "-"
            r = regret[cell]
            text = _points(r["mean"]) + ("" if r["tasks"] == total else f" ({r['tasks']}/{total} tasks)")
            if cell == summary["best"]:
                text = f"**{text}**"
            return text + (" †" if cell == DEFAULT_CELL else "")

        lines += ["", f"### Overall: points below each task's best cell, mean over {total} task(s) (lower is better)",
                  "", *_grid_table(lrs, steps, regret_text)]
        best = summary["best"]
        if best is not None:
            line = (f"Best overall by mean regret: lr {lr_text(best[0])}, {best[1]} steps "
                    f"({_points(regret[best]['mean'])} points below the per-task best)")
            if best == DEFAULT_CELL:
                line += "; it is the current default."
            elif DEFAULT_CELL in regret and regret[DEFAULT_CELL]["tasks"] == total:
                gain = regret[DEFAULT_CELL]["mean"] - regret[best]["mean"]
                line += (f"; it beats the current default (lr {lr_text(DEFAULT_CELL[0])}, {DEFAULT_CELL[1]} steps, "
                         f"{_points(regret[DEFAULT_CELL]['mean'])}) by {_points(gain)} points of test metric on average.")
            else:
                line += "; the current default has no result on every task to compare with."
            lines += ["", line + (" (partial: may change)" if missing else "")]

    lines += ["", "### Units", "", "| task | seed | lr | steps | dev | test | best step | dev history (step: dev) "
              "| s | s / train step |", "|---|---|---|---|---|---|---|---|---|---|"]
    for task, seed, lr, s in planned_units(tasks, seeds, lrs, steps):
        row = units.get(unit_key(task, seed, lr, s))
        if row is None:
            continue
        history = ", ".join(f"{step}: {_points(value)}" for step, value in row["history"])
        lines.append(f"| {task} | {seed} | {lr_text(lr)} | {s} | {_points(row['dev'])} | {_points(row['test'])} | "
                     f"{row['best_step']} | {history} | {row['seconds']:.0f} | {row['seconds_per_step']:.2f} |")
    if missing:
        lines += ["", f"Partial: {len(missing)} of {len(planned_units(tasks, seeds, lrs, steps))} unit(s) not run "
                  f"yet: {', '.join(missing)}."]
    lines += ["", "Seconds are wall-clock on a shared CPU; compare them within this run only."]
    return "\n".join(lines)


def plot(units: dict, grid: dict, path: Path) -> None:
    """Test mean vs steps, one line per lr, one panel per task with data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = grid_cells(grid["lrs"], grid["steps"])
    summary = summarize(units, grid["tasks"], grid["seeds"], cells)
    tasks = [t for t in grid["tasks"] if summary["tasks"][t]["best"] is not None]
    if not tasks:
        return
    figure, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.5), dpi=100, squeeze=False)
    for axis, task in zip(axes[0], tasks):
        stats = summary["tasks"][task]["cells"]
        for lr in grid["lrs"]:
            points = [(s, stats[(lr, s)]) for s in grid["steps"] if (lr, s) in stats]
            if not points:
                continue
            axis.errorbar([s for s, _ in points], [p["test"] * 100 for _, p in points],
                          yerr=[p["test_std"] * 100 for _, p in points], marker="o", capsize=3, label=f"lr {lr_text(lr)}")
        axis.set_xscale("log", base=2)
        axis.set_xticks(grid["steps"])
        axis.set_xticklabels([str(s) for s in grid["steps"]])
        axis.set_title(task)
        axis.set_xlabel("training steps")
        axis.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("test (mean ± std over seeds)")
    axes[0][0].legend(fontsize=7, loc="best")
    figure.tight_layout()
    temporary = path.with_suffix(".png.tmp")
    figure.savefig(temporary, format="png")
    plt.close(figure)
    temporary.replace(path)


# ---------------------------------------------------------------------------------------------------
# running

def save_state(path: Path, state: dict) -> None:
    state["environment"] = environment()
    save_merged(path, state)
    commands = "\n".join(f"`{c}`" for c in state["commands"])
    path.with_suffix(".md").write_text(
        f"Commands:\n\n{commands}\n\nEnvironment: `{json.dumps(state['environment'])}`\n\n"
        + markdown(state["units"], state["grid"], state["settings"]) + "\n", encoding="utf-8")
    try:
        plot(state["units"], state["grid"], path.with_suffix(".png"))
    except Exception as error:  # a plotting problem must not stop an hours-long sweep; the JSON is what counts
        print(f"plot not written: {error!r}", flush=True)


def run_unit(backbone, pristine, task, args, seed: int, lr: float, steps: int, test, start_dev=None):
    backbone.model.load_state_dict(pristine)
    train = load_split(task, "train", data_dir=args.data_dir, k=args.k, seed=seed)
    dev = load_split(task, "dev", data_dir=args.data_dir, k=args.k, seed=seed)
    classifier = PromptClassifier.build(backbone, task, task.template, task.label_words, seed=seed)
    config = TrainConfig(steps=steps, lr=lr, batch_size=args.batch_size, eval_every=args.eval_every, seed=seed,
                         max_length=classifier.max_length, precision=resolve_precision(args.precision, backbone.device))
    result = classifier.fit(train, dev, config, test=test, progress=False, initial_state=pristine, start_dev=start_dev)
    row = {"task": task.name, "seed": seed, "lr": lr, "steps": steps, "dev": result.dev.main, "test": result.test.main,
           "best_step": result.best_step, "history": [[step, value] for step, value in result.history],
           "dev_examples": len(dev), "test_examples": len(test), "seconds": result.seconds,
           "seconds_per_step": result.seconds_per_step}
    return row, result.start_dev


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    resolve_data_dir(args.data_dir)  # a wrong data folder fails now, not after the model has loaded
    tasks = [load_task(t) for t in args.tasks]
    name = args.name or f"lr_steps_{Path(args.model).name.lower()}"
    path = RESULTS / f"{name}.json"  # an absolute --name replaces RESULTS altogether
    path.parent.mkdir(parents=True, exist_ok=True)
    state = resumable_state(path, settings_of(args), {"units": {}, "grid": {}})
    if command_line() not in state["commands"]:
        state["commands"].append(command_line())
    old = state["grid"]
    # lists only grow, so the report keeps counting units an earlier command planned as missing
    state["grid"] = {"tasks": union(old.get("tasks", []), [t.name for t in tasks]),
                     "seeds": union(old.get("seeds", []), args.seeds),
                     "lrs": union(old.get("lrs", []), args.lrs),
                     "steps": union(old.get("steps", []), args.steps)}
    todo = [u for u in planned_units([t.name for t in tasks], args.seeds, args.lrs, args.steps)
            if unit_key(*u) not in state["units"]]
    print(f"{len(todo)} unit(s) to run, {len(state['units'])} already saved in {path}", flush=True)
    save_state(path, state)
    if not todo:
        return
    backbone, pristine = load_benchmark_backbone(args.model, threads=args.threads)
    by_name = {t.name: t for t in tasks}
    tests: dict[str, list] = {}
    start_devs: dict[tuple[str, int], object] = {}  # step-0 dev result is the same for every cell of (task, seed)
    for number, (task_name, seed, lr, steps) in enumerate(todo, 1):
        task = by_name[task_name]
        if task_name not in tests:
            tests[task_name] = limit_examples(load_split(task, "test", data_dir=args.data_dir, k=args.k, seed=seed),
                                              args.test_limit or None, seed=TEST_SAMPLE_SEED)
        start = time.perf_counter()
        row, start_dev = run_unit(backbone, pristine, task, args, seed, lr, steps, tests[task_name],
                                  start_devs.get((task_name, seed)))
        start_devs[(task_name, seed)] = start_dev
        row["wall_seconds"] = time.perf_counter() - start
        state["units"][unit_key(task_name, seed, lr, steps)] = row
        save_state(path, state)
        print(f"[{number}/{len(todo)}] {task_name} seed={seed} lr={lr_text(lr)} steps={steps}: dev {_points(row['dev'])} "
              f"test {_points(row['test'])} best step {row['best_step']} ({row['wall_seconds']:.0f} s)", flush=True)
    print(f"saved {path}, {path.with_suffix('.md')} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
