"""Demonstrations benchmark (LM-BFF section 5 / Table 3): prompt-based fine-tuning with the manual
template without demonstrations, with random and with similarity-filtered demonstrations, and the
GPT-3 style in-context baseline (no training), over K=16 splits and seeds.

    python benchmarks/bench_demonstrations.py --model smollm2-135m --tasks SST-2 SST-5 MR CR TREC RTE \\
        --seeds 13 21 42 87 100 --steps 32 --test-limit 200 --inference-samples 4

Reports the test metric mean and std over the seeds per task and method, and the cost with and
without demonstrations: seconds per training step, seconds and tokens per test example (with
demonstrations a test example is scored once per inference set). Saves results/<name>.md and .json.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, load_benchmark_backbone, mean_std, save  # noqa: E402

from autoprompt_search.data import limit_examples, load_split  # noqa: E402
from autoprompt_search.demonstrations import (
    DemonstrationSampler,
    demo_lengths,
    demo_prompt_settings,
    demonstration_fn,
    with_demonstration_lengths,
)  # noqa: E402
from autoprompt_search.training import in_context_prompt  # noqa: E402
from autoprompt_search.tasks import TaskSpec, get_task  # noqa: E402
from autoprompt_search.prompts import Template  # noqa: E402
from autoprompt_search.training import EvalResult, TrainConfig, evaluate, fine_tune  # noqa: E402
from autoprompt_search.prompts import Prompt  # noqa: E402
from autoprompt_search.prompts import Verbalizer  # noqa: E402

METHODS = ("prompt", "prompt_random", "prompt_filtered", "in_context")
METHOD_NAMES = {
    "prompt": "prompt-based FT (manual)",
    "prompt_random": "prompt-based FT + random demonstrations",
    "prompt_filtered": "prompt-based FT + filtered demonstrations",
    "in_context": "in-context learning (no training)",
}
DEFAULT_TASKS = ("SST-2", "SST-5", "MR", "CR", "TREC", "RTE")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42, 87, 100])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128,
                        help="prompt length without demonstrations; with them LM-BFF's per-task rule applies")
    parser.add_argument("--test-limit", type=int, default=None, help="score a seeded random sample of N test examples (the same for every seed and method)")
    parser.add_argument("--inference-samples", type=int, default=None,
                        help="demonstration sets averaged per test query (default: LM-BFF's, 16 for most tasks)")
    parser.add_argument("--filter-rate", type=float, default=0.5)
    parser.add_argument("--encoder", default="minilm-l6", help="sentence encoder of filtered demonstrations")
    parser.add_argument("--in-context-max-length", type=int, default=512)
    parser.add_argument("--in-context-max-demos", type=int, default=32)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache-dir", default="runs/cache/embeddings")
    parser.add_argument("--name", default=None, help="results file name (default demonstrations_<model>)")
    return parser.parse_args()


# ---------------------------------------------------------------------------------------------
# one method on one seed


def make_sampler(mode: str, task: TaskSpec, train, queries, args, encoder_holder: dict) -> DemonstrationSampler:
    if mode == "random":
        return DemonstrationSampler(train, task, "random")
    from autoprompt_search.demonstrations import SentenceEncoder, embed_examples

    if "encoder" not in encoder_holder:
        encoder_holder["encoder"] = SentenceEncoder(args.encoder, device=args.device, show_progress=False)
    encoder = encoder_holder["encoder"]
    sampler = DemonstrationSampler(train, task, "filtered", args.filter_rate,
                                   embeddings=embed_examples(encoder, train, args.cache_dir),
                                   query_embeddings_fn=lambda qs: embed_examples(encoder, qs, args.cache_dir))
    sampler.prepare_queries(queries)
    return sampler


def cost_row(result: EvalResult, count: int) -> dict:
    return {"test": result.main, "test_seconds_per_example": result.seconds / count,
            "test_tokens_per_example": result.tokens / count}


def run_fine_tuning(backbone, pristine, task, prompt, splits, config, desc) -> dict:
    backbone.model.load_state_dict(pristine)
    train, dev, test = splits
    result = fine_tune(backbone, task, prompt, train, dev, config, test=test, progress=True, desc=desc)
    return {**cost_row(result.test, len(test)), "dev": result.dev.main, "best_step": result.best_step,
            "seconds_per_step": result.seconds_per_step, "train_seconds": result.seconds}


def run_in_context(backbone, pristine, task, template, verbalizer, splits, args, seed) -> dict:
    backbone.model.load_state_dict(pristine)
    train, _, test = splits
    prompt = in_context_prompt(backbone, task, template, verbalizer, train, max_demos=args.in_context_max_demos,
                               max_length=args.in_context_max_length, seed=seed)
    result = evaluate(backbone, task, prompt, test, batch_size=max(1, args.eval_batch_size // 4),
                      max_length=args.in_context_max_length, seed=seed, desc="in-context test", progress=True)
    counts = list(prompt.demonstrations.counts.values())
    return {**cost_row(result, len(test)), "mean_demonstrations": sum(counts) / max(1, len(counts)),
            "min_demonstrations": min(counts, default=0)}


def run_seed(backbone, pristine, task: TaskSpec, seed: int, args, encoder_holder: dict) -> dict[str, dict]:
    template, verbalizer = Template.parse(task.template), Verbalizer.for_task(task)
    train = load_split(task, "train", data_dir=args.data_dir, k=args.k, seed=seed)
    dev = load_split(task, "dev", data_dir=args.data_dir, k=args.k, seed=seed)
    test = limit_examples(load_split(task, "test", data_dir=args.data_dir, k=args.k, seed=seed), args.test_limit)
    splits = (train, dev, test)
    config = TrainConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, eval_every=args.eval_every,
                         eval_batch_size=args.eval_batch_size, max_length=args.max_length, seed=seed)
    samples = args.inference_samples or demo_lengths(task).num_inference_samples
    rows: dict[str, dict] = {}
    for method in args.methods:
        start = time.perf_counter()
        if method == "in_context":
            row = run_in_context(backbone, pristine, task, template, verbalizer, splits, args, seed)
        else:
            prompt = Prompt(template, verbalizer)
            if method != "prompt":
                mode = method.removeprefix("prompt_")
                sampler = make_sampler(mode, task, train, [*dev, *test], args, encoder_holder)
                prompt = with_demonstration_lengths(
                    Prompt(template, verbalizer, demonstration_fn(sampler), inference_samples=samples),
                    task, args.max_length)
            row = run_fine_tuning(backbone, pristine, task, prompt, splits, config, f"{task.name} {method} seed {seed}")
        rows[method] = {**row, "seed": seed, "wall_seconds": time.perf_counter() - start}
        print(f"{task.name} seed {seed} {method}: {rows[method]}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# report


def summarise(rows: list[dict]) -> dict:
    summary = {}
    for key in ("test", "dev", "seconds_per_step", "test_seconds_per_example", "test_tokens_per_example",
                "mean_demonstrations"):
        values = [r[key] for r in rows if key in r]
        if values:
            summary[key] = mean_std(values)
    return summary


def _ratio(value, base) -> str:
    return f"{value / base:.1f}x" if value and base else "-"


def task_markdown(task: TaskSpec, rows: dict[str, list[dict]], args) -> list[str]:
    settings = demo_prompt_settings(task, args.max_length)
    samples = args.inference_samples or demo_lengths(task).num_inference_samples
    lines = [f"### {task.name} (test {task.metric})",
             f"With demonstrations: max length {settings.max_length}, sentence limits first="
             f"{settings.limits.first} other={settings.limits.other}, {samples} inference sets per query.", "",
             "| method | test (mean ± std) | s / train step | s / test example | tokens / test example |",
             "|---|---|---|---|---|"]
    base = summarise(rows.get("prompt", []))
    for method in METHODS:
        if not rows.get(method):
            continue
        s = summarise(rows[method])
        step = s.get("seconds_per_step", (None,))[0]
        per_example, tokens = s["test_seconds_per_example"][0], s["test_tokens_per_example"][0]
        step_text = f"{step:.2f} ({_ratio(step, base.get('seconds_per_step', (None,))[0])})" if step else "-"
        example_text = f"{per_example:.3f} ({_ratio(per_example, base.get('test_seconds_per_example', (None,))[0])})"
        name = METHOD_NAMES[method]
        if method == "in_context":
            name += f", {s['mean_demonstrations'][0]:.1f} demonstrations on average"
        lines.append(f"| {name} | {fmt(*s['test'])} | {step_text} | {example_text} | {tokens:.0f} |")
    lines += ["", "| method | seed | dev | test | best step |", "|---|---|---|---|---|"]
    for method in METHODS:
        for r in rows.get(method, []):
            dev = f"{r['dev'] * 100:.1f}" if "dev" in r else "-"
            lines.append(f"| {method} | {r['seed']} | {dev} | {r['test'] * 100:.1f} | {r.get('best_step', '-')} |")
    return lines + [""]


def markdown(results: dict[str, dict[str, list[dict]]], args) -> str:
    tasks = list(results)
    lines = [f"## Demonstrations, {args.model}, K={args.k}, seeds {args.seeds}",
             f"steps={args.steps}, batch={args.batch_size}, lr={args.lr}, eval every {args.eval_every}, "
             f"max length {args.max_length} (without demonstrations), test examples: {args.test_limit or 'all'}, "
             f"filter rate {args.filter_rate} ({args.encoder}), in-context: up to {args.in_context_max_demos} "
             f"demonstrations in {args.in_context_max_length} tokens", "",
             "| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for method in METHODS:
        if not any(results[t].get(method) for t in tasks):
            continue
        cells = [fmt(*summarise(results[t][method])["test"]) if results[t].get(method) else "-" for t in tasks]
        lines.append(f"| {METHOD_NAMES[method]} | " + " | ".join(cells) + " |")
    lines.append("")
    for task_name in tasks:
        lines += task_markdown(get_task(task_name), results[task_name], args)
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    backbone, pristine = load_benchmark_backbone(args.model, args.threads, device=args.device,
                                                 max_length=args.max_length)
    encoder_holder: dict = {}
    results: dict[str, dict[str, list[dict]]] = {}
    name = args.name or "demonstrations_" + re.sub(r"[^a-z0-9.-]+", "-", Path(args.model).name.lower())
    for task_name in args.tasks:
        task = get_task(task_name)
        rows: dict[str, list[dict]] = {m: [] for m in args.methods}
        for seed in args.seeds:
            for method, row in run_seed(backbone, pristine, task, seed, args, encoder_holder).items():
                rows[method].append(row)
        results[task.name] = rows
        # saved after every task so that a run stopped part way keeps what it measured
        save(name, markdown(results, args), {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
