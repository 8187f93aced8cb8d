"""Token embeddings trained or frozen under full fine-tuning (`TrainConfig(embeddings=...)`): prompt-FT test
metric, CPU seconds per training step and peak memory, side by side, on a real backbone.

    python benchmarks/bench_embeddings.py --model gemma3-270m --tasks sst2 cr trec --seeds 13 21 42 \
        --test-limit 500 --threads 1 --name embeddings_gemma3-270m

Each run is prompt-based fine-tuning with the task's manual prompt for `--steps` steps (dev every 8 steps
and at step 0, best dev checkpoint), then a seeded sample of `--test-limit` test examples, in a process of
its own on `--threads` threads, so that its peak resident memory is its own. CPU seconds per step leave
dev and test scoring out (on a shared machine wall time grows with the load, CPU time much less). Runs go
task by task, seed by seed, one variant after the other, and the results file is rewritten after each run:
a stopped benchmark keeps what it measured and the same command goes on where it stopped (runs saved with
other settings are refused). Saves results/<name>.md and .json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (RESULTS, command_line, count_scoring_cpu, environment, fmt, mean_std,  # noqa: E402
                    resumable_state, save_merged)

SETTINGS = ("model", "k", "steps", "batch_size", "lr", "max_length", "test_limit", "precision")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", nargs="+", default=["sst2"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[13, 21, 42])
    parser.add_argument("--variants", nargs="+", default=["train", "freeze"], choices=["train", "freeze"])
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--test-limit", type=int, default=500)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=os.environ.get("AUTOPROMPT_DATA_DIR", "../shared/data/lmbff"))
    parser.add_argument("--name", default="embeddings")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_worker(args) -> dict:
    """One fine-tuning run in this process: `args.variant` on `args.task`, split and seed `args.seed`."""
    import torch

    from autoprompt_search.data import limit_examples, load_split
    from autoprompt_search.models import load_backbone, quiet_transformers
    from autoprompt_search.tasks import get_task
    from autoprompt_search.training import PromptClassifier, TrainConfig, count_parameters, trainer

    torch.set_num_threads(args.threads)
    quiet_transformers()
    task = get_task(args.task)
    backbone = load_backbone(args.model, device="cpu", max_length=args.max_length)
    classifier = PromptClassifier.build(backbone, task, task.template, task.label_words, max_length=args.max_length)
    train = load_split(task, "train", data_dir=args.data_dir, k=args.k, seed=args.seed)
    dev = load_split(task, "dev", data_dir=args.data_dir, k=args.k, seed=args.seed)
    test = limit_examples(load_split(task, "test", data_dir=args.data_dir, k=args.k, seed=args.seed), args.test_limit)
    config = TrainConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, eval_every=8,
                         max_length=args.max_length, seed=args.seed, precision=args.precision,
                         embeddings=args.variant)
    scoring_cpu = count_scoring_cpu(trainer)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    result = classifier.fit(train, dev, config, test=test, progress=False)
    cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    trainable, total = count_parameters(backbone.model)
    return {"task": task.name, "variant": args.variant, "seed": args.seed, "metric": task.metric,
            "dev": result.dev.main, "test": result.test.main, "best_step": result.best_step,
            "cpu_seconds_per_step": (cpu - scoring_cpu[0]) / args.steps, "scoring_cpu_seconds": scoring_cpu[0],
            "wall_seconds": wall, "trainable_parameters": trainable, "total_parameters": total,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "load_average": os.getloadavg()[0], "test_examples": len(test), "dev_examples": len(dev)}


def run_one(args, task: str, seed: int, variant: str) -> dict:
    command = [sys.executable, __file__, "--worker", "--task", task, "--seed", str(seed), "--variant", variant,
               "--threads", str(args.threads), "--data-dir", args.data_dir]
    for name in SETTINGS:
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    print(f"running {task} seed {seed} embeddings={variant}", file=sys.stderr, flush=True)
    out = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if out.returncode:
        raise SystemExit(f"a run failed (exit {out.returncode}): {' '.join(command)}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(args, state: dict) -> str:
    runs = list(state["runs"].values())
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    lines = [f"## {args.model}: token embeddings trained or frozen under full fine-tuning", "",
             f"Prompt-based fine-tuning with each task's manual prompt, {args.steps} steps at batch {args.batch_size}, "
             f"lr {args.lr:g}, precision {args.precision}, {args.threads} thread(s) per run. Dev: the seed's dev split, "
             f"best checkpoint (dev at step 0 and every 8 steps). Test: **a seeded sample of at most {args.test_limit} "
             f"test examples per seed** (the whole set where smaller).", "",
             "| task | embeddings | seeds done | dev | test | best steps | CPU s / step | trainable parameters | "
             "peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]
    for task in tasks:
        for variant in args.variants:
            group = [r for r in runs if r["task"] == task and r["variant"] == variant]
            if not group:
                continue
            cpu = mean_std([r["cpu_seconds_per_step"] for r in group])
            lines.append(f"| {task} | {variant} | {' '.join(str(r['seed']) for r in group)} | "
                         f"{fmt(*mean_std([r['dev'] for r in group]))} | {fmt(*mean_std([r['test'] for r in group]))} | "
                         f"{' '.join(str(r['best_step']) for r in group)} | {cpu[0]:.2f} ± {cpu[1]:.2f} | "
                         f"{group[0]['trainable_parameters']:,} of {group[0]['total_parameters']:,} | "
                         f"{max(r['peak_rss_mb'] for r in group):.0f} |")
    paired = [(r, state["runs"].get(_key(r["task"], r["seed"], "train"))) for r in runs if r["variant"] == "freeze"]
    paired = [(f, t) for f, t in paired if t is not None]
    if paired:
        difference = mean_std([f["test"] - t["test"] for f, t in paired])
        ratio = mean_std([f["cpu_seconds_per_step"] / t["cpu_seconds_per_step"] for f, t in paired])
        lines += ["", f"Over the {len(paired)} task-seed pairs run both ways: test freeze - train "
                      f"{fmt(*difference)} points; CPU s per step freeze / train {ratio[0]:.2f} ± {ratio[1]:.2f}."]
    missing = [f"{task} seed {seed} {variant}" for task in args.tasks for seed in args.seeds for variant in args.variants
               if _key(_task_name(task), seed, variant) not in state["runs"]]
    if missing:
        lines += ["", "Partial: not run yet: " + ", ".join(missing) + "."]
    lines += ["", "Per run (load avg: the 1-minute load average as the run ended):", "",
              "| task | seed | embeddings | dev | test | best step | CPU s / step | wall s | peak RSS MB | load avg |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['task']} | {r['seed']} | {r['variant']} | {100 * r['dev']:.1f} | {100 * r['test']:.1f} | "
                     f"{r['best_step']} | {r['cpu_seconds_per_step']:.2f} | {r['wall_seconds']:.0f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['load_average']:.1f} |")
    return "\n".join(lines)


def _key(task: str, seed: int, variant: str) -> str:
    return f"{task}/{seed}/{variant}"


def _task_name(task: str) -> str:
    from autoprompt_search.tasks import get_task

    return get_task(task).name


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(run_worker(args)))
        return
    path = RESULTS / f"{args.name}.json"
    state = resumable_state(path, {name: getattr(args, name) for name in SETTINGS}, {"runs": {}})
    if command_line() not in state["commands"]:
        state["commands"].append(command_line())
    for task in args.tasks:
        for seed in args.seeds:
            for variant in args.variants:
                key = _key(_task_name(task), seed, variant)
                if key in state["runs"]:
                    continue
                state["runs"][key] = run_one(args, task, seed, variant)
                state["environment"] = environment()
                save_merged(path, state)
                _write_markdown(args, state)
    _write_markdown(args, state)


def _write_markdown(args, state: dict) -> None:
    header = "Commands:\n\n" + "\n".join(f"`{c}`" for c in state["commands"]) + "\n\n"
    header += f"Environment: `{json.dumps(state.get('environment', environment()))}`\n\n"
    (RESULTS / f"{args.name}.md").write_text(header + report(args, state) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
