"""Backbones side by side on one task: zero-shot prompting, prompt-based fine-tuning and prompt-based
fine-tuning with demonstrations, per model and seed, on the full test set, through the public
`PromptClassifier` API (the object a user holds).

    OMP_NUM_THREADS=1 python benchmarks/bench_backbones.py --models smollm2-135m gemma3-270m --task sst2 \\
        --seeds 13 21 42 87 100 --demonstrations random --inference-samples 2

Every (model, method, seed) is one unit of work, saved to results/<name>.json as soon as it finishes;
running the same command again skips finished units (different settings under the same name are
refused), so a run stopped at the end of a session continues in the next. The Markdown table says
"partial" and lists what is missing until every unit is done.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (RESULTS, command_line, environment, fmt, load_benchmark_backbone, mean_std,  # noqa: E402
                    resumable_state, save_merged)

from autoprompt_search.data import load_split, load_task  # noqa: E402
from autoprompt_search.demonstrations import DemonstrationConfig, DemonstrationSampler  # noqa: E402
from autoprompt_search.training import PromptClassifier, TrainConfig  # noqa: E402

METHODS = ("zero_shot", "prompt", "prompt_demos")
RUN_ONLY = ("models", "methods", "threads", "data_dir", "name")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42, 87, 100])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    parser.add_argument("--demonstrations", choices=("random", "filtered"), default="random")
    parser.add_argument("--inference-samples", type=int, default=2,
                        help="demonstration sets averaged per dev/test query (LM-BFF 16)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--name", default=None, help="results file name (default backbones_<task>)")
    return parser.parse_args()


def settings_of(args) -> dict:
    return {k: v for k, v in vars(args).items() if k not in RUN_ONLY}


def load_state(path: Path, args) -> dict:
    return resumable_state(path, settings_of(args), {"units": {}})


def unit_key(model: str, method: str, seed: int | None) -> str:
    return f"{model}|{method}|{'-' if seed is None else seed}"


def run_unit(backbone, pristine, task, args, method: str, seed: int | None) -> dict:
    backbone.model.load_state_dict(pristine)
    test = load_split(task, "test", data_dir=args.data_dir)
    if method == "zero_shot":  # the test set does not depend on the seed
        classifier = PromptClassifier.build(backbone, task, task.template, task.label_words)
        result = classifier.evaluate(test)
        return {"test": result.main, "test_examples": len(test), "seconds": result.seconds,
                "tokens_per_second": result.tokens / max(result.seconds, 1e-9)}
    train = load_split(task, "train", data_dir=args.data_dir, k=args.k, seed=seed)
    dev = load_split(task, "dev", data_dir=args.data_dir, k=args.k, seed=seed)
    sampler = None
    if method == "prompt_demos":
        sampler = DemonstrationSampler.from_config(train, task, DemonstrationConfig(mode=args.demonstrations),
                                                   cache_dir=RESULTS.parent / "runs" / "cache" / "embeddings",
                                                   show_progress=False)
    classifier = PromptClassifier.build(backbone, task, task.template, task.label_words, sampler=sampler,
                                        inference_samples=args.inference_samples, seed=seed)
    config = TrainConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, eval_every=args.eval_every,
                         seed=seed, max_length=classifier.max_length)
    result = classifier.fit(train, dev, config, test=test, progress=False)
    return {"dev": result.dev.main, "test": result.test.main, "best_step": result.best_step,
            "dev_examples": len(dev), "test_examples": len(test), "seconds": result.seconds,
            "seconds_per_step": result.seconds_per_step}


def planned_units(args) -> list[tuple[str, str, int | None]]:
    units = []
    for model in args.models:
        for method in args.methods:
            for seed in ([None] if method == "zero_shot" else args.seeds):
                units.append((model, method, seed))
    return units


NAMES = {"zero_shot": "zero-shot prompt (manual)", "prompt": "prompt-based FT (manual)",
         "prompt_demos": "prompt-based FT + {demos} demonstrations"}


def markdown(state: dict, args, all_models: list[str]) -> str:
    units = state["units"]
    seeds = args.seeds
    missing = [unit_key(m, meth, s) for m in all_models for meth in METHODS
               for s in ([None] if meth == "zero_shot" else seeds) if unit_key(m, meth, s) not in units]
    task = load_task(args.task)
    lines = [f"## {task.name}, K={args.k}, seeds {seeds}, full test set"
             + (" (partial)" if missing else ""), "",
             f"steps={args.steps}, batch={args.batch_size}, lr={args.lr}, eval every {args.eval_every}; "
             f"demonstrations: {args.demonstrations}, {args.inference_samples} inference sets per query; "
             "best dev checkpoint (step 0 included) scored on test.", "",
             "| model | method | test (mean ± std) | seeds done | s / train step |", "|---|---|---|---|---|"]
    for model in all_models:
        for method in METHODS:
            rows = [units[unit_key(model, method, s)] for s in ([None] if method == "zero_shot" else seeds)
                    if unit_key(model, method, s) in units]
            if not rows:
                continue
            mean, std = mean_std([r["test"] for r in rows])
            cell = f"{mean * 100:.1f}" if method == "zero_shot" else fmt(mean, std)
            steps = [r["seconds_per_step"] for r in rows if "seconds_per_step" in r]
            step_cell = f"{sum(steps) / len(steps):.2f}" if steps else "-"
            done = "-" if method == "zero_shot" else f"{len(rows)}/{len(seeds)}"
            lines.append(f"| {model} | {NAMES[method].format(demos=args.demonstrations)} | {cell} | {done} | {step_cell} |")
    lines += ["", "Per seed:", "", "| model | method | seed | dev | test | best step |", "|---|---|---|---|---|---|"]
    for key, row in units.items():
        model, method, seed = key.split("|")
        if method == "zero_shot":
            continue
        lines.append(f"| {model} | {method} | {seed} | {row['dev'] * 100:.1f} | {row['test'] * 100:.1f} | {row['best_step']} |")
    if missing:
        lines += ["", f"Partial: {len(missing)} unit(s) not run yet: {', '.join(missing)}."]
    lines += ["", "Seconds per step are wall-clock on a shared 2-core CPU with one torch thread; compare them "
              "within a row, not across runs."]
    return "\n".join(lines)


def save_state(path: Path, state: dict, args, all_models: list[str]) -> None:
    state["environment"] = environment()
    save_merged(path, state)
    commands = "\n".join(f"`{c}`" for c in state["commands"])
    path.with_suffix(".md").write_text(f"Commands:\n\n{commands}\n\nEnvironment: `{json.dumps(state['environment'])}`\n\n"
                                       + markdown(state, args, all_models) + "\n", encoding="utf-8")


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    name = args.name or f"backbones_{load_task(args.task).name.lower()}"
    path = RESULTS / f"{name}.json"
    state = load_state(path, args)
    if command_line() not in state["commands"]:
        state["commands"].append(command_line())
    all_models = list(dict.fromkeys([*state.get("models", []), *args.models]))
    state["models"] = all_models
    task = load_task(args.task)
    for model in args.models:
        todo = [u for u in planned_units(args) if u[0] == model and unit_key(*u) not in state["units"]]
        if not todo:
            continue
        backbone, pristine = load_benchmark_backbone(model, threads=args.threads)
        for _, method, seed in todo:
            start = time.perf_counter()
            row = run_unit(backbone, pristine, task, args, method, seed)
            row["wall_seconds"] = time.perf_counter() - start
            state["units"][unit_key(model, method, seed)] = row
            save_state(path, state, args, all_models)
            print(f"{model} {method} seed={seed}: test {row['test'] * 100:.1f} ({row['wall_seconds']:.0f} s)", flush=True)
        del backbone, pristine
    save_state(path, state, args, all_models)
    print(f"saved {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
