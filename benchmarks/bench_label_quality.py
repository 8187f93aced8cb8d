"""Quality of automatic label words (auto-L) against the paper's manual words, with a real backbone.

    python benchmarks/bench_label_quality.py --tasks sst2 sst5 mr cr trec --seeds 13 21 42

Per task: the label search runs on the first seed's training set with the task's manual template
(per-class top-k words, exact top-n assignments by zero-shot training accuracy). Reported:
1. zero-shot test metric of the top searched mapping vs the manual words;
2. per seed, prompt-based fine-tuning of the top `--rerank` searched mappings, re-ranked by dev, and the
   test metric of the winner vs fine-tuning with the manual words (mean ± std over seeds).
The found words are printed so a person can judge them. Saves results/label_quality.md and .json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, load_benchmark_backbone, mean_std, save  # noqa: E402

from autoprompt_search.data import limit_examples, load_split  # noqa: E402
from autoprompt_search.errors import UserError  # noqa: E402
from autoprompt_search.auto_label import search_label_words  # noqa: E402
from autoprompt_search.tasks import get_task  # noqa: E402
from autoprompt_search.prompts import Template  # noqa: E402
from autoprompt_search.prompts import Prompt  # noqa: E402
from autoprompt_search.training import TrainConfig, evaluate, fine_tune  # noqa: E402
from autoprompt_search.prompts import Verbalizer  # noqa: E402


def parse_template_overrides(values: list[str]) -> dict[str, str]:
    overrides = {}
    for value in values:
        name, sep, template = value.partition("=")
        if not sep or not template:
            raise SystemExit(f"--template expects TASK=TEMPLATE, got {value!r}")
        overrides[get_task(name).name] = template
    return overrides


def report_markdown(report: list[dict], args) -> str:
    lines = [f"{args.model}, K=16, label search on seed {args.seeds[0]} (k={args.label_k}, n={args.n}), "
             f"re-rank top {args.rerank} by dev after {args.steps} fine-tuning steps, seeds {args.seeds}, "
             f"test examples: {args.test_limit or 'all'} (seeded sample)", "",
             "| task | template | top searched words | zero-shot manual | zero-shot auto | fine-tuned manual "
             "| fine-tuned auto (re-ranked) |",
             "|---|---|---|---|---|---|---|"]
    for r in report:
        if "skipped" in r:
            lines.append(f"| {r['task']} | | not applicable: {r['skipped']} | | | | |")
            continue
        words = ", ".join(f"{k}:{v}" for k, v in r["top_mappings"][0].items())
        lines.append(f"| {r['task']} | `{r['template']}` | {words} | {r['zero_shot_manual'] * 100:.1f} | "
                     f"{r['zero_shot_auto'] * 100:.1f} | {fmt(*mean_std(r['fine_tuned_manual']))} | "
                     f"{fmt(*mean_std(r['fine_tuned_auto']))} |")
    lines += ["", "Top searched mappings (train zero-shot accuracy) and the mapping picked on dev per seed:", ""]
    for r in report:
        if "skipped" in r:
            continue
        lines.append(f"- {r['task']}: " + "; ".join(
            f"{m} ({score:.3f})" for m, score in zip(r["top_mappings"], r["train_scores"])))
        lines.append("  - picked: " + "; ".join(f"seed {s}: {p}" for s, p in zip(args.seeds, r["reranked_picks"])))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "sst5", "mr", "cr", "trec"])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42])
    parser.add_argument("--label-k", type=int, default=100)
    parser.add_argument("--n", type=int, default=10, help="assignments kept by zero-shot training accuracy")
    parser.add_argument("--rerank", type=int, default=2, help="top assignments fine-tuned and re-ranked by dev")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--template", action="append", default=[], metavar="TASK=TEMPLATE",
                        help="use TEMPLATE instead of TASK's manual template, for manual and searched words alike "
                             "(e.g. a template with the label after the input for a causal backbone on TREC)")
    args = parser.parse_args()
    overrides = parse_template_overrides(args.template)
    backbone, pristine = load_benchmark_backbone(args.model, device="cpu")
    report = []
    for name in args.tasks:
        task = get_task(name)
        template = Template.parse(overrides.get(task.name, task.template))
        manual = Verbalizer.for_task(task)
        train = load_split(task, "train", data_dir=args.data_dir, seed=args.seeds[0])
        try:
            found = search_label_words(backbone, task, template, train, k=args.label_k, n=args.n, progress=False)
        except UserError as error:
            print(f"{task.name}: label search not applicable: {error}", flush=True)
            report.append({"task": task.name, "skipped": str(error)})
            continue
        mappings = [Verbalizer.from_mapping(task, a.label_words(task.labels, backbone.token_to_word), source="search")
                    for a in found.assignments]
        print(f"{task.name}: top mappings " + "; ".join(
            f"{m.to_json()} (train acc {a.score:.3f})" for m, a in zip(mappings[:5], found.assignments)), flush=True)
        test = limit_examples(load_split(task, "test", data_dir=args.data_dir, seed=args.seeds[0]), args.test_limit)
        backbone.model.load_state_dict(pristine)
        zero_manual = evaluate(backbone, task, Prompt(template, manual), test).main
        zero_auto = evaluate(backbone, task, Prompt(template, mappings[0]), test).main
        tuned_manual, tuned_auto, picks = [], [], []
        for seed in args.seeds:
            split = {s: load_split(task, s, data_dir=args.data_dir, seed=seed) for s in ("train", "dev")}
            config = TrainConfig(steps=args.steps, seed=seed)
            results = []
            for verbalizer in [manual, *mappings[:args.rerank]]:
                backbone.model.load_state_dict(pristine)
                result = fine_tune(backbone, task, Prompt(template, verbalizer), split["train"], split["dev"], config,
                                   test=test, progress=False)
                results.append((verbalizer, result))
            tuned_manual.append(results[0][1].test.main)
            best_auto = max(results[1:], key=lambda item: item[1].dev.main)
            tuned_auto.append(best_auto[1].test.main)
            picks.append(best_auto[0].to_mapping())
            print(f"  seed {seed}: manual {tuned_manual[-1]:.3f}, auto {tuned_auto[-1]:.3f} {picks[-1]}", flush=True)
        report.append({"task": task.name, "metric": task.metric, "template": template.to_lmbff(),
                       "top_mappings": [m.to_mapping() for m in mappings],
                       "train_scores": [a.score for a in found.assignments],
                       "zero_shot_manual": zero_manual, "zero_shot_auto": zero_auto,
                       "fine_tuned_manual": tuned_manual, "fine_tuned_auto": tuned_auto, "reranked_picks": picks})
        save("label_quality", report_markdown(report, args), {"args": vars(args), "tasks": report})


if __name__ == "__main__":
    main()
