"""Full fine-tuning against LoRA (`TrainConfig(tuning="lora")`) on a real backbone: prompt-FT accuracy,
seconds per training step, peak memory and trainable parameters, side by side.

    python benchmarks/bench_lora.py --model smollm2-135m --task sst2 --seeds 13 21 42 --test-limit 200 \
        --full-lr 5e-5 --lora-lrs 5e-4 1e-3

Each run is prompt-based fine-tuning with the task's manual prompt for `--steps` steps at
`--batch-size` (dev every 8 steps and at step 0, best dev checkpoint), then the test set on a
seeded sample of `--test-limit` examples. Every run is a process of its own on `--threads` threads,
so its peak resident memory (ru_maxrss, model loading included) is its own. Seconds per step are
given as wall time and as the process's CPU time per training step (dev/test scoring excluded):
on a shared machine the wall time grows with the load, the CPU time much less. Runs go seed by seed
(full, then each LoRA rate), and the results are saved after each run, so a stopped benchmark keeps
what it measured; `--resume` skips the runs already saved with the same settings, and `--parallel`
runs a seed's runs at the same time (their CPU time per step stays comparable; wall time does not).
Saves results/lora_<task>.md and .json.
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

from common import RESULTS, count_scoring_cpu, fmt, mean_std, save  # noqa: E402

SETTINGS = ("model", "task", "k", "steps", "batch_size", "max_length", "test_limit", "threads", "lora_rank",
            "lora_alpha", "data_dir")


def run_worker(args) -> dict:
    """One fine-tuning run (this process): `args.tuning` at `args.lr` on `args.seed`."""
    import torch

    from autoprompt_search.data import limit_examples, load_split
    from autoprompt_search.models import load_backbone, quiet_transformers
    from autoprompt_search.tasks import get_task
    from autoprompt_search.training import PromptClassifier, TrainConfig, count_parameters, trainer

    torch.set_num_threads(args.threads)
    quiet_transformers()
    task = get_task(args.task)
    backbone = load_backbone(args.model, device="cpu", max_length=args.max_length)
    loaded_rss = _peak_rss_mb()
    classifier = PromptClassifier.build(backbone, task, task.template, task.label_words, max_length=args.max_length)
    train = load_split(task, "train", data_dir=args.data_dir, k=args.k, seed=args.seed)
    dev = load_split(task, "dev", data_dir=args.data_dir, k=args.k, seed=args.seed)
    test = limit_examples(load_split(task, "test", data_dir=args.data_dir, k=args.k, seed=args.seed), args.test_limit)
    config = TrainConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, eval_every=8,
                         max_length=args.max_length, seed=args.seed, tuning=args.tuning, lora_rank=args.lora_rank,
                         lora_alpha=args.lora_alpha)
    scoring_cpu = count_scoring_cpu(trainer)
    if args.speed:  # training steps only: one warm-up step, then the measured ones, no dev or test
        classifier.fit(train, None, TrainConfig(**{**config.to_dict(), "steps": 1}), progress=False)
        dev = test = None
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    result = classifier.fit(train, dev, config, test=test, progress=False)
    cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    trainable, total = count_parameters(backbone.model)
    return {"tuning": args.tuning, "lr": args.lr, "seed": args.seed, "dev": result.dev.main if dev else None,
            "test": result.test.main if test else None, "best_step": result.best_step, "wall_seconds": wall, "wall_seconds_per_step": result.seconds_per_step,
            "cpu_seconds_per_step": (cpu - scoring_cpu[0]) / args.steps, "scoring_cpu_seconds": scoring_cpu[0],
            "first_loss": result.train_losses[0], "last_loss": result.train_losses[-1],
            "trainable_parameters": trainable, "total_parameters": total, "rss_after_load_mb": loaded_rss,
            "peak_rss_mb": _peak_rss_mb(), "load_average": os.getloadavg(), "test_examples": len(test or ()),
            "dev_examples": len(dev or ())}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _start(args, tuning: str, lr: float, seed: int) -> subprocess.Popen:
    command = [sys.executable, __file__, "--worker", "--tuning", tuning, "--lr", repr(lr), "--seed", str(seed)]
    command += ["--speed"] if args.speed else []
    for name in SETTINGS:
        if getattr(args, name) is not None:
            command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    print(f"running {tuning} lr={lr:g} seed={seed}", file=sys.stderr, flush=True)
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"a run failed (exit {process.returncode}): {process.args}")
    run = json.loads(out.strip().splitlines()[-1])
    print(json.dumps(run), file=sys.stderr, flush=True)
    return run


def _groups(args) -> list[tuple[str, float]]:
    return [("full", args.full_lr), *[("lora", lr) for lr in args.lora_lrs[:1 if args.speed else None]]]


def report(args, runs: list[dict]) -> str:
    from autoprompt_search.tasks import get_task

    lines = [f"## {args.model}, {get_task(args.task).name}: full fine-tuning vs LoRA (rank {args.lora_rank}, alpha "
             f"{args.lora_alpha:g}, on every attention and MLP projection)", "",
             (f"Speed only: {args.steps} training steps at batch {args.batch_size} after one warm-up step, "
              f"{args.threads} thread(s), no dev or test scoring." if args.speed else
              f"Prompt-based fine-tuning, manual prompt, {args.steps} steps at batch {args.batch_size}, {args.threads} "
              f"thread(s). Dev: each seed's dev split, best checkpoint (dev every 8 steps and at step 0). Test: **a "
              f"seeded sample of {args.test_limit} test examples per seed, not the full test set.**"), "",
             "| tuning | lr | seeds done | dev acc | test acc (sample) | best steps | CPU s / step | wall s / step "
             "| trainable parameters | peak RSS (MB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for tuning, lr in _groups(args):
        group = [r for r in runs if r["tuning"] == tuning and r["lr"] == lr]
        if not group:
            continue
        dev, test = mean_std([r["dev"] for r in group]), mean_std([r["test"] for r in group])
        cpu = mean_std([r["cpu_seconds_per_step"] for r in group])
        wall = mean_std([r["wall_seconds_per_step"] for r in group])
        share = group[0]["trainable_parameters"] / group[0]["total_parameters"]
        lines.append(f"| {tuning} | {lr:g} | {' '.join(str(r['seed']) for r in group)} | {fmt(*dev)} | {fmt(*test)} | "
                     f"{' '.join(str(r['best_step']) for r in group)} | {cpu[0]:.2f} ± {cpu[1]:.2f} | "
                     f"{wall[0]:.1f} ± {wall[1]:.1f} | {group[0]['trainable_parameters']:,} ({share:.2%}) | "
                     f"{max(r['peak_rss_mb'] for r in group):.0f} |")
    lines += ["", "Per run (load avg: the machine's 1-minute load average as the run ended; 2 cores shared with "
              "other jobs):", "", "| tuning | lr | seed | dev | test | best step | first / last loss | CPU s / step "
              "| wall s / step | peak RSS (MB) | load avg |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['tuning']} | {r['lr']:g} | {r['seed']} | {_number(r['dev'])} | {_number(r['test'])} | "
                     f"{r['best_step']} | {r['first_loss']:.3f} / {r['last_loss']:.3f} | "
                     f"{r['cpu_seconds_per_step']:.2f} | {r['wall_seconds_per_step']:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['load_average'][0]:.1f} |")
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42])
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--test-limit", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full-lr", type=float, default=5e-5)
    parser.add_argument("--lora-lrs", type=float, nargs="+", default=[5e-4, 1e-3])
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--lora-alpha", type=float, default=16.0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--name", default=None, help="results/<name>.md (default lora_<task>)")
    parser.add_argument("--speed", action="store_true",
                        help="time --steps training steps (after a warm-up step) of full and LoRA at the first "
                             "--lora-lrs value, without dev or test; saves results/lora_speed_<task>")
    parser.add_argument("--parallel", action="store_true", help="run a seed's runs at the same time")
    parser.add_argument("--resume", action="store_true", help="skip the runs saved by an earlier run with these settings")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tuning", choices=["full", "lora"], help=argparse.SUPPRESS)
    parser.add_argument("--lr", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args)))
        return
    from autoprompt_search.tasks import get_task

    name = args.name or f"lora_{'speed_' if args.speed else ''}{get_task(args.task).name.lower()}"
    run_only = ("resume", "name", "parallel", "seeds")  # runs are keyed by seed: more seeds extend a saved run
    settings = {key: value for key, value in vars(args).items() if key not in run_only}
    runs: list[dict] = []
    if args.resume and (RESULTS / f"{name}.json").exists():
        saved = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))
        if {k: v for k, v in saved["args"].items() if k not in run_only} != settings:
            raise SystemExit(f"results/{name}.json was made with other settings; use another --name")
        runs = saved["runs"]
    for seed in args.seeds:
        pending = [(tuning, lr) for tuning, lr in _groups(args)
                   if not any(r["tuning"] == tuning and r["lr"] == lr and r["seed"] == seed for r in runs)]
        batches = [pending] if args.parallel else [[job] for job in pending]  # --parallel: a seed's runs at once
        for batch in filter(None, batches):
            for process in [_start(args, tuning, lr, seed) for tuning, lr in batch]:
                runs.append(_finish(process))
                save(name, report(args, runs), {"args": vars(args), "runs": runs})


if __name__ == "__main__":
    main()
