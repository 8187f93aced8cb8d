"""What LoRA's frozen projections cost under bf16 autocast: training steps of SmolLM2 with LoRA, the frozen
weights cast by autocast in every forward pass and each adapter's input cast up to fp32 by peft (as before),
against the weights held in bf16 for the run and the inputs left in bf16 (`training.tuning.adapted_projections_in`,
what `fine_tune` does now). Each variant runs in a fresh process:
a warm-up step, then `--steps` profiled steps (forward and backward of one batch of 8 training prompts; no
optimiser) on each template. Reported per step: CPU seconds, the casts (`aten::_to_copy` calls) and the
bytes they allocated, the batch loss (the two variants must agree), and the process's peak resident set.

    python benchmarks/bench_lora_casts.py --steps 3 --threads 1

Saves results/<name>.{md,json}.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import child_result, save  # noqa: E402

VARIANTS = ("cast-every-pass", "held-in-bf16")
TEMPLATES = ("*cls**sent_0*_It_was*mask*.*sep+*", "*cls*_is_a*mask*_thing.*+sent_0**sep+*")


def measure(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from autoprompt_search.data import load_split
    from autoprompt_search.models import load_backbone
    from autoprompt_search.tasks import get_task
    from autoprompt_search.training import PromptClassifier, TrainConfig, adapted_projections_in, prepare_tuning
    from autoprompt_search.training.trainer import _encode, backward_batch

    task = get_task(args.task)
    backbone = load_backbone(args.model)
    config = TrainConfig(tuning="lora", precision="bf16", seed=args.seed)
    prepare_tuning(backbone.model, config)
    train = load_split(task, "train", data_dir=args.data_dir, seed=args.seed)[:args.batch_size]
    rows = []
    for template in args.templates:
        prompt = PromptClassifier.build(backbone, task, template, task.label_words).prompt
        encoded = [_encode(backbone, example, prompt, (), config.max_length) for example in train]
        held = adapted_projections_in(backbone.model, torch.bfloat16) if args.child == "held-in-bf16" \
            else contextlib.nullcontext()
        backbone.train(True)
        with held:
            loss = backward_batch(backbone, task, prompt, encoded, train, precision="bf16")  # warm-up
            backbone.model.zero_grad(set_to_none=True)
            cpu, casts, cast_bytes = 0.0, 0, 0
            for _ in range(args.steps):
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                            profile_memory=True) as profiler:
                    start = time.process_time()
                    loss = backward_batch(backbone, task, prompt, encoded, train, precision="bf16")
                    cpu += time.process_time() - start
                backbone.model.zero_grad(set_to_none=True)
                for event in profiler.key_averages():
                    if event.key == "aten::_to_copy":
                        casts += event.count
                        cast_bytes += event.cpu_memory_usage
        backbone.train(False)
        rows.append({"template": template, "cpu_s_per_step": cpu / args.steps, "casts_per_step": casts / args.steps,
                     "cast_mb_per_step": cast_bytes / args.steps / 2**20, "loss": loss})
    return {"variant": args.child, "rows": rows,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="SST-2")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--templates", nargs="+", default=list(TEMPLATES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--name", default="lora_casts")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    results = []
    for variant in VARIANTS:
        command = [sys.executable, __file__, "--child", variant, *sys.argv[1:]]
        results.append(child_result(command))
    lines = [f"{args.model}, {args.task} (k-shot seed {args.seed}), LoRA (rank 8) under bf16 autocast, one batch of "
             f"{args.batch_size} training prompts, forward and backward (no optimiser step), {args.steps} profiled "
             f"steps after a warm-up, {args.threads} thread(s); each variant in a fresh process. CPU seconds of the "
             "process; casts: `aten::_to_copy` calls and the memory they allocated, per step.", "",
             "| variant | template | CPU s / step | casts / step | cast MB / step | loss | peak RSS MB (process) |",
             "|---|---|---|---|---|---|---|"]
    for result in results:
        for row in result["rows"]:
            lines.append(f"| {result['variant']} | `{row['template']}` | {row['cpu_s_per_step']:.2f} | "
                         f"{row['casts_per_step']:.0f} | {row['cast_mb_per_step']:.0f} | {row['loss']:.6f} | "
                         f"{result['peak_rss_mb']:.0f} |")
    save(args.name, "\n".join(lines), {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
