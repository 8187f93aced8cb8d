"""Attention implementation on the CPU: torch's fused SDPA kernel against the plain (eager) attention, for
prompt-based training steps and for scoring, in one process, alternating so that both see the same load.
(The backbones train with eager attention on the CPU and score with the model's own, models/base.py.)

    python benchmarks/bench_attention.py --steps 4 --rounds 2 --threads 1

CPU seconds (user + system) of `--steps` bf16 training steps of SmolLM2 on SST-2 (batch 8, the manual
prompt), and of scoring `--test-limit` test sentences with the manual and a label-first template.
Saves results/<name>.{md,json}.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save  # noqa: E402

IMPLEMENTATIONS = ("sdpa", "eager")
TEMPLATES = ("*cls**sent_0*_It_was*mask*.*sep+*", "*cls*_is_a*mask*_thing.*+sent_0**sep+*")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--test-limit", type=int, default=128)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--name", default="speed_attention")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from autoprompt_search.data import load_split, load_task
    from autoprompt_search.models import load_backbone
    from autoprompt_search.prompts import Prompt, Template, Verbalizer
    from autoprompt_search.training import TrainConfig, evaluate, fine_tune

    task = load_task("SST-2")
    train = load_split(task, "train", data_dir=args.data_dir)
    test = load_split(task, "test", data_dir=args.data_dir)[:args.test_limit]
    backbone = load_backbone(args.model, device="cpu")
    backbone._train_attention = None  # the benchmark sets the attention itself, for training and scoring alike
    prompts = {template: Prompt(Template.parse(template), Verbalizer.for_task(task)) for template in TEMPLATES}
    manual = prompts[TEMPLATES[0]]

    def config(steps: int) -> TrainConfig:
        return TrainConfig(steps=steps, batch_size=8, lr=5e-5, eval_every=10**6, precision=args.precision,
                           eval_at_start=False, seed=1)

    fine_tune(backbone, task, manual, train, None, config(1), progress=False)  # warm-up
    times: dict[tuple[str, str], list[float]] = {}
    metrics: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for implementation in IMPLEMENTATIONS:
            backbone.model.set_attn_implementation(implementation)
            start = cpu_seconds()
            fine_tune(backbone, task, manual, train, None, config(args.steps), progress=False)
            times.setdefault(("training", implementation), []).append(cpu_seconds() - start)
            for template, prompt in prompts.items():
                start = cpu_seconds()
                result = evaluate(backbone, task, prompt, test, precision=args.precision)
                times.setdefault((f"scoring `{template}`", implementation), []).append(cpu_seconds() - start)
                metrics[(template, implementation)] = result.main
    lines = [f"{args.model}, SST-2, {args.precision}, {args.threads} thread(s); CPU seconds, mean over {args.rounds} "
             f"alternating rounds. Training: {args.steps} steps of batch 8 with the manual prompt (the weights keep "
             f"training from round to round, the same for both). Scoring: the first {args.test_limit} test sentences.",
             "", "| work | sdpa s | eager s | eager / sdpa |", "|---|---|---|---|"]
    for work in dict.fromkeys(key[0] for key in times):
        sdpa, eager = (statistics.fmean(times[(work, i)]) for i in IMPLEMENTATIONS)
        lines.append(f"| {work} | {sdpa:.2f} | {eager:.2f} | {eager / sdpa:.2f}x |")
    lines += ["", "Test accuracy of the last round's scoring (the models differ by the training rounds between them):", "",
              "| template | sdpa | eager |", "|---|---|---|"]
    for template in TEMPLATES:
        lines.append(f"| `{template}` | {metrics[(template, 'sdpa')]:.4f} | {metrics[(template, 'eager')]:.4f} |")
    save(args.name, "\n".join(lines), {"times": {f"{w}|{i}": v for (w, i), v in times.items()},
                                       "metrics": {f"{t}|{i}": v for (t, i), v in metrics.items()}})


if __name__ == "__main__":
    main()
