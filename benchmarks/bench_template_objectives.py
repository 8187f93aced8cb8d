"""Template sources that aim at separating the classes, screened by zero-shot dev accuracy.

    OMP_NUM_THREADS=1 python benchmarks/bench_template_objectives.py --task sst2 --seed 13 --beam 16 --steps 10

Runs the causal generator (the backbone itself) with LM-BFF's likelihood objective and with the
discriminative objective, and the instruction source (the backbone asked in words for the phrase before
the label word), then scores every template zero-shot on the dev split of the seed with the task's manual
label words (`screen_by_zero_shot`, all of them kept). Saves results/template_objectives_<task>.md and
.json after every source.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_benchmark_backbone, save  # noqa: E402

from autoprompt_search.auto_template import CausalGenerator, InstructionGenerator, screen_by_zero_shot  # noqa: E402
from autoprompt_search.data import load_split  # noqa: E402
from autoprompt_search.prompts import Prompt, Template, Verbalizer  # noqa: E402
from autoprompt_search.tasks import get_task  # noqa: E402
from autoprompt_search.training import evaluate  # noqa: E402


def _report(args, task, manual: float, sources: dict) -> None:
    lines = [f"# Template sources on {task.name} ({args.model}, seed {args.seed})", "",
             f"Zero-shot dev {task.metric} (seed {args.seed}, {args.k}-shot dev split, manual label words) of every "
             f"template each source produced; the manual template `{task.template}` scores {manual * 100:.1f}.", "",
             "| source | templates | seconds | best dev | mean dev | top-3 by dev |", "|---|---|---|---|---|---|"]
    for name, src in sources.items():
        devs = [t["zero_shot_dev"] for t in src["templates"]]
        top = ", ".join(f"`{t['template']}` {t['zero_shot_dev'] * 100:.1f}" for t in src["templates"][:3])
        lines.append(f"| {name} | {len(devs)} | {src['seconds']:.0f} | "
                     f"{max(devs, default=float('nan')) * 100:.1f} | "
                     f"{(statistics.fmean(devs) if devs else float('nan')) * 100:.1f} | {top} |")
    for name, src in sources.items():
        lines += ["", f"## {name}", "", "| template | generation score | zero-shot dev |", "|---|---|---|"]
        lines += [f"| `{t['template']}` | {t['score']:.3f} | {t['zero_shot_dev'] * 100:.1f} |" for t in src["templates"]]
        if src.get("replies"):
            kept = sum(t is not None for _, t in src["replies"])
            lines += ["", f"Replies: {len(src['replies'])}, parsed into a template: {kept}. First replies:", ""]
            lines += [f"- {r[:100]!r} -> {'`' + t + '`' if t else 'dropped'}" for r, t in src["replies"][:12]]
    save(f"template_objectives_{task.name.lower()}", "\n".join(lines),
         {"args": vars(args), "manual_dev": manual, "sources": sources})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--beam", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--fluency-weight", type=float, default=0.1)
    parser.add_argument("--n-prompts", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    backbone, _ = load_benchmark_backbone(args.model, args.threads)
    task = get_task(args.task)
    train = load_split(task, "train", data_dir=args.data_dir, k=args.k, seed=args.seed)
    dev = load_split(task, "dev", data_dir=args.data_dir, k=args.k, seed=args.seed)
    manual = evaluate(backbone, task, Prompt(Template.parse(task.template), Verbalizer.for_task(task)), dev,
                      seed=args.seed).main
    makers = {
        "likelihood": lambda: CausalGenerator(backbone.model, backbone.tokenizer, beam_width=args.beam,
                                              max_steps=args.steps, device=backbone.device),
        "discriminative": lambda: CausalGenerator(backbone.model, backbone.tokenizer, beam_width=args.beam,
                                                  max_steps=args.steps, device=backbone.device,
                                                  objective="discriminative", fluency_weight=args.fluency_weight),
        "instruction": lambda: InstructionGenerator.from_model(backbone.model, backbone.tokenizer,
                                                               device=backbone.device, n_prompts=args.n_prompts,
                                                               samples_per_prompt=args.samples, seed=args.seed),
    }
    sources: dict = {}
    for name, make in makers.items():
        start = time.perf_counter()
        generator = make()
        found = generator.generate(task, train, label_words=task.label_words, progress=False)
        seconds = time.perf_counter() - start
        screened = screen_by_zero_shot(backbone, task, found, dev, len(found), seed=args.seed)
        sources[name] = {"seconds": seconds, "templates": screened,
                         "replies": getattr(generator, "last_replies", None)}
        print(name, f"{seconds:.0f}s", [(t["template"], round(t["zero_shot_dev"], 3)) for t in screened[:5]],
              flush=True)
        _report(args, task, manual, sources)


if __name__ == "__main__":
    main()
