"""Quality of automatic templates (auto-T) against the paper's manual template, with a real backbone.

    python benchmarks/bench_template_quality.py --tasks sst2 mr cr sst5 trec rte --seeds 13 21 42

Per task: the causal generator (the backbone itself, as `search-templates` does offline) proposes
templates from the first seed's training set with the manual label words; the top `--candidates`
(round robin over the generation formats) are printed. Per seed, the auto template with the best
zero-shot dev metric is picked (the first rung of the search's successive halving), then it and the
manual template are each fine-tuned (prompt-based, manual label words) and scored on the test set.
Reports the test metric mean and std over the seeds. Saves results/template_quality.md and .json after
every task.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import command_line, fmt, load_benchmark_backbone, mean_std, previous_reports, save  # noqa: E402

from autoprompt_search.data import limit_examples, load_split  # noqa: E402
from autoprompt_search.auto_template import CausalGenerator, GeneratedTemplate  # noqa: E402
from autoprompt_search.auto_template import round_robin_by_format, screen_by_zero_shot  # noqa: E402
from autoprompt_search.tasks import get_task  # noqa: E402
from autoprompt_search.prompts import Template  # noqa: E402
from autoprompt_search.prompts import Prompt  # noqa: E402
from autoprompt_search.training import TrainConfig, fine_tune  # noqa: E402
from autoprompt_search.prompts import Verbalizer  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mr", "cr", "sst5", "trec", "rte"])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42])
    parser.add_argument("--beam", type=int, default=16, help="generator beam width (LM-BFF 100)")
    parser.add_argument("--generator-steps", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=6, help="generated templates compared on dev")
    parser.add_argument("--screening", choices=["score", "zero_shot"], default="score",
                        help="which generated templates are the candidates: the best by generation score (round "
                             "robin over formats) or the best by zero-shot dev metric on the first seed (the "
                             "search's --template-screening)")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--test-limit", type=int, default=None, help="seeded random sample of N test examples")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--name", default="template_quality")
    parser.add_argument("--resume", action="store_true",
                        help="keep the tasks already in results/<name>.json (same settings) and run the others")
    return parser.parse_args()


def generated_templates(backbone, task, train, dev, args) -> list[GeneratedTemplate]:
    generator = CausalGenerator(backbone.model, backbone.tokenizer, beam_width=args.beam,
                                max_steps=args.generator_steps, device=backbone.device)
    found = round_robin_by_format(generator.generate(task, train, label_words=task.label_words, progress=True))
    if args.screening == "score":
        return found[:args.candidates]
    kept = screen_by_zero_shot(backbone, task, found, dev, args.candidates, seed=args.seeds[0])
    return [GeneratedTemplate.from_dict(entry) for entry in kept]


def pick_on_dev(backbone, task, templates, dev, seed) -> tuple[int, list[float]]:
    """Index of the template with the best zero-shot dev metric (the search's screening; earlier
    generation rank wins ties) and every template's zero-shot dev metric."""
    ranked = screen_by_zero_shot(backbone, task, templates, dev, len(templates), seed=seed)
    metric = {entry["template"]: entry["zero_shot_dev"] for entry in ranked}
    names = [g.template for g in templates]
    return names.index(ranked[0]["template"]), [metric[name] for name in names]


def run_task(backbone, pristine, name: str, args) -> dict:
    task = get_task(name)
    manual_template, verbalizer = Template.parse(task.template), Verbalizer.for_task(task)
    split = lambda s, seed: load_split(task, s, data_dir=args.data_dir, seed=seed)  # noqa: E731
    backbone.model.load_state_dict(pristine)
    start = time.perf_counter()
    templates = generated_templates(backbone, task, split("train", args.seeds[0]), split("dev", args.seeds[0]), args)
    generation_seconds = time.perf_counter() - start
    print(f"{task.name}: generated in {generation_seconds:.0f} s: "
          + "; ".join(f"{g.template} ({g.format}, {g.score:.1f})" for g in templates), flush=True)
    test = limit_examples(split("test", args.seeds[0]), args.test_limit)
    seeds = []
    for seed in args.seeds:
        train, dev = split("train", seed), split("dev", seed)
        backbone.model.load_state_dict(pristine)
        pick, zero_shot_dev = pick_on_dev(backbone, task, templates, dev, seed)
        config = TrainConfig(steps=args.steps, seed=seed)
        row = {"seed": seed, "pick": templates[pick].template, "zero_shot_dev": zero_shot_dev}
        for label, template in (("manual", manual_template), ("auto", Template.parse(templates[pick].template))):
            backbone.model.load_state_dict(pristine)
            result = fine_tune(backbone, task, Prompt(template, verbalizer), train, dev, config, test=test,
                               progress=False)
            row[label] = {"dev": result.dev.main, "test": result.test.main}
        print(f"  seed {seed}: pick {row['pick']} (zero-shot dev {zero_shot_dev[pick]:.3f}); "
              f"manual test {row['manual']['test']:.3f}, auto test {row['auto']['test']:.3f}", flush=True)
        seeds.append(row)
    return {"task": task.name, "metric": task.metric, "manual_template": task.template,
            "generated": [g.to_dict() for g in templates], "generation_seconds": generation_seconds, "seeds": seeds}


def markdown(report: list[dict], args, commands: list[str]) -> str:
    chosen = ("by generation score" if args.screening == "score"
              else f"by zero-shot dev on seed {args.seeds[0]} among all generated")
    lines = [f"{args.model}, K=16, causal generator on seed {args.seeds[0]}'s training set (beam {args.beam}, "
             f"{args.generator_steps} steps, manual label words); {args.candidates} generated templates "
             f"({chosen}), the best "
             f"zero-shot dev one picked per seed; prompt-based fine-tuning {args.steps} steps "
             f"(lr {TrainConfig.lr}, batch {TrainConfig.batch_size}); seeds {args.seeds}; test examples: "
             f"{args.test_limit or 'all'} (seeded sample)", "",
             "| task | manual template (FT test) | best auto template (FT test) | generation (s) |", "|---|---|---|---|"]
    for r in report:
        manual = mean_std([s["manual"]["test"] for s in r["seeds"]])
        auto = mean_std([s["auto"]["test"] for s in r["seeds"]])
        lines.append(f"| {r['task']} | {fmt(*manual)} | {fmt(*auto)} | {r['generation_seconds']:.0f} |")
    if len(commands) > 1:
        lines += ["", "Tasks run by: " + "; ".join(f"`{c}`" for c in commands)]
    lines += ["", "Generated templates (generation score) and the pick per seed:", ""]
    for r in report:
        lines.append(f"- {r['task']} (manual `{r['manual_template']}`): " + ", ".join(
            f"`{g['template']}` ({g['format']}, {g['score']:.1f})" for g in r["generated"]))
        for s in r["seeds"]:
            lines.append(f"  - seed {s['seed']}: `{s['pick']}`; manual dev {s['manual']['dev'] * 100:.1f} "
                         f"test {s['manual']['test'] * 100:.1f}; auto dev {s['auto']['dev'] * 100:.1f} "
                         f"test {s['auto']['test'] * 100:.1f}")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    backbone, pristine = load_benchmark_backbone(args.model, args.threads)
    report, commands = previous_reports(args.name, args) if args.resume else ([], [])
    commands = commands + [command_line()]
    done = {r["task"] for r in report}
    for name in args.tasks:
        if get_task(name).name in done:
            print(f"{get_task(name).name}: kept from results/{args.name}.json", flush=True)
            continue
        report.append(run_task(backbone, pristine, name, args))
        save(args.name, markdown(report, args, commands), {"args": vars(args), "commands": commands, "tasks": report})


if __name__ == "__main__":
    main()
