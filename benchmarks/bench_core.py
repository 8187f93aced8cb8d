"""Core benchmark: zero-shot prompting, standard fine-tuning and prompt-based fine-tuning on one task.

    python benchmarks/bench_core.py --task sst2 --model smollm2-135m --seeds 13 21 42 87 100

Reports test metric mean and std over the seeds, time per training step and evaluation throughput
(tokens per second), and saves results/core_<task>.md and .json.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, mean_std, save  # noqa: E402

from autoprompt_search.models import load_backbone, load_classifier, quiet_transformers  # noqa: E402
from autoprompt_search.data import limit_examples, load_split  # noqa: E402
from autoprompt_search.tasks import get_task  # noqa: E402
from autoprompt_search.prompts import Template  # noqa: E402
from autoprompt_search.prompts import Prompt  # noqa: E402
from autoprompt_search.training import (
    TrainConfig,
    content_free_calibration,
    evaluate,
    fine_tune,
    set_seed,
)  # noqa: E402
from autoprompt_search.prompts import Verbalizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42, 87, 100])
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--test-limit", type=int, default=None, help="score only the first N test examples")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--methods", nargs="+", default=["zero_shot", "standard", "prompt"])
    args = parser.parse_args()
    quiet_transformers()

    task = get_task(args.task)
    prompt = Prompt(Template.parse(task.template), Verbalizer.for_task(task))
    backbone = load_backbone(args.model, device="cpu", max_length=args.max_length)
    pristine = copy.deepcopy(backbone.model.state_dict())
    rows: dict[str, list[dict]] = {m: [] for m in args.methods}
    for seed in args.seeds:
        train = load_split(task, "train", data_dir=args.data_dir, k=args.k, seed=seed)
        dev = load_split(task, "dev", data_dir=args.data_dir, k=args.k, seed=seed)
        test = limit_examples(load_split(task, "test", data_dir=args.data_dir, k=args.k, seed=seed), args.test_limit)
        config = TrainConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, eval_every=args.eval_every,
                             max_length=args.max_length, seed=seed)
        if "zero_shot" in args.methods and seed == args.seeds[0]:
            # Zero-shot does not depend on the seed's training data: the test set is the same for all seeds.
            backbone.model.load_state_dict(pristine)
            plain = evaluate(backbone, task, prompt, test, progress=True, desc="zero-shot test")
            calibration = content_free_calibration(backbone, task, prompt)
            calibrated = evaluate(backbone, task, prompt, test, calibration=calibration)
            rows["zero_shot"].append({"seed": seed, "test": plain.main, "test_calibrated": calibrated.main,
                                      "tokens_per_second": plain.tokens / plain.seconds})
            print(f"zero-shot: {plain.main:.4f} calibrated: {calibrated.main:.4f}", flush=True)
        if "prompt" in args.methods:
            backbone.model.load_state_dict(pristine)
            result = fine_tune(backbone, task, prompt, train, dev, config, test=test, desc=f"prompt FT seed {seed}")
            rows["prompt"].append(_row(seed, result))
            print(f"prompt seed {seed}: {rows['prompt'][-1]}", flush=True)
        if "standard" in args.methods:
            set_seed(seed)
            classifier = load_classifier(args.model, task.num_classes, device="cpu", max_length=args.max_length,
                                         seed=seed)
            result = fine_tune(classifier, task, None, train, dev, config, test=test, desc=f"standard FT seed {seed}")
            rows["standard"].append(_row(seed, result))
            print(f"standard seed {seed}: {rows['standard'][-1]}", flush=True)
            del classifier
    save(f"core_{task.name.lower()}", _markdown(task, args, rows), {"task": task.name, "args": vars(args), "rows": rows})


def _row(seed, result) -> dict:
    return {"seed": seed, "dev": result.dev.main, "test": result.test.main, "best_step": result.best_step,
            "seconds_per_step": result.seconds_per_step, "train_seconds": result.seconds,
            "tokens_per_second": result.test.tokens / result.test.seconds}


def _markdown(task, args, rows) -> str:
    lines = [f"## {task.name}, {args.model}, K={args.k}, seeds {args.seeds}",
             f"steps={args.steps}, batch={args.batch_size}, lr={args.lr}, eval every {args.eval_every}, "
             f"max length {args.max_length}, test examples: {args.test_limit or 'all'}", "",
             f"| method | test {task.metric} (mean ± std) | s / train step | eval tokens / s |", "|---|---|---|---|"]
    if rows.get("zero_shot"):
        r = rows["zero_shot"][0]
        lines.append(f"| zero-shot prompt (manual template) | {r['test'] * 100:.1f} | - | {r['tokens_per_second']:.0f} |")
        lines.append(f"| zero-shot prompt, contextual calibration | {r['test_calibrated'] * 100:.1f} | - | - |")
    names = {"standard": "standard fine-tuning (classification head)", "prompt": "prompt-based fine-tuning (manual)"}
    for key in ("standard", "prompt"):
        if rows.get(key):
            m, s = mean_std([r["test"] for r in rows[key]])
            step, _ = mean_std([r["seconds_per_step"] for r in rows[key]])
            tps, _ = mean_std([r["tokens_per_second"] for r in rows[key]])
            lines.append(f"| {names[key]} | {fmt(m, s)} | {step:.2f} | {tps:.0f} |")
    lines += ["", "Per seed:", "", "| method | seed | dev | test | best step |", "|---|---|---|---|---|"]
    for key in ("standard", "prompt"):
        for r in rows.get(key, []):
            lines.append(f"| {key} | {r['seed']} | {r['dev'] * 100:.1f} | {r['test'] * 100:.1f} | {r['best_step']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
