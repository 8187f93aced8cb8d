"""Prompts from nothing: a task given only as data and label names, searched from the generic template
and the label names, against the manual prompt fine-tuned with the same budget.

    python benchmarks/bench_prompts_from_labels.py --tasks sst2 cr --work /tmp/prompts_from_labels
    python benchmarks/bench_prompts_from_labels.py ... --finalist-demonstrations random  # the search's finalists
                                                                                        # also with demonstrations

Each task's first-seed k-shot split is written as CSV files under --work (not in the repository) with
two custom task files: one with only data, text column, labels and label names ("from labels"), one
with the manual template and words as well ("manual"). Both run the whole search (`run_pipeline`)
with the same training budget and seeds; the manual one has no other candidate (fine-tuned once at
the full budget, as is the starting prompt alone with `--start-only`). Reported per task:
test metric of each search's pick (mean ± std over training seeds, on the same test sample), the
ratio (the issue's target: >= 90% of the manual prompt), and where the pick's template and words came
from. `--collect` only gathers the finished tasks under --work into results/ (for runs made in
parallel, one task per process).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, mean_std, save  # noqa: E402

from autoprompt_search.data import load_split  # noqa: E402
from autoprompt_search.prompts import read_document  # noqa: E402
from autoprompt_search.search import SearchOptions, run_pipeline  # noqa: E402
from autoprompt_search.tasks import get_task  # noqa: E402


def write_custom_tasks(task_name: str, work: Path, k: int, data_seed: int) -> dict[str, Path]:
    task = get_task(task_name)
    folder = work / task.name
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for example in load_split(task, split, k=k, seed=data_seed):
                writer.writerow([example.texts[0], example.label])
    base = {"data": {s: f"{s}.csv" for s in ("train", "dev", "test")}, "text_columns": ["text"],
            "label_column": "label", "labels": list(task.labels), "label_names": list(task.label_names)}
    files = {}
    for mode, extra in (("from_labels", {}), ("manual", {"template": task.template, "label_words": task.label_words})):
        path = folder / f"{mode}.json"
        path.write_text(json.dumps({"name": f"{task.name}-{mode}", **base, **extra}, indent=1), encoding="utf-8")
        files[mode] = path
    return files


def search_settings(args, searched: bool) -> dict:
    """The SearchOptions fields this benchmark sets besides task, model, output, seeds and test sample.
    `--default-search`: none for the from-labels search (the search a user gets), and for the manual prompt
    only those that leave it the sole candidate, fine-tuned once at the default full budget."""
    alone = {"n_templates": 0, "generator": "none", "n_mappings": 0, "strategy": "exhaustive"}
    if args.default_search:
        return {"finalist_demonstrations": tuple(args.finalist_demonstrations),
                "label_neighbours": args.label_neighbours} if searched else alone
    chosen = {"beam_width": args.beam_width, "label_k": args.label_k, "screening_split": args.screening_split,
              "min_steps": args.min_steps, "max_steps": args.max_steps}
    if not searched:
        return {**chosen, **alone}
    return {**chosen, "n_templates": args.n_templates, "generator": "auto", "n_mappings": args.n_mappings,
            "strategy": "halving", "finalist_demonstrations": tuple(args.finalist_demonstrations),
            "label_neighbours": args.label_neighbours}


def run_task(task_name: str, args) -> dict:
    files = write_custom_tasks(task_name, args.work, args.k, args.data_seed)
    report = {"task": get_task(task_name).name}
    for mode, path in files.items():
        out = args.work / get_task(task_name).name / f"run-{mode}"
        searched = mode == "from_labels" and not args.start_only
        options = SearchOptions(**search_settings(args, searched), task=str(path), model=args.model, out=str(out),
                                seeds=tuple(args.seeds), test_limit=args.test_limit, device="cpu", progress=False)
        started = time.time()
        messages: list[str] = []
        run_pipeline(options, say=lambda m: (messages.append(str(m)), print(m, flush=True)))
        document = read_document(out / "best.json").document
        test = [v for v in document["test"]["per_seed"].values()]
        report[mode] = {"template": document["template"]["lmbff"], "label_words": document["label_words"],
                        "demonstrations": document["demonstrations"]["mode"],
                        "template_source": document["found_by"].get("template_source"),
                        "label_words_source": document["found_by"].get("label_words_source"),
                        "dev": document["dev"]["per_seed"], "test": document["test"]["per_seed"],
                        "test_mean_std": mean_std(test), "seconds": round(time.time() - started, 1),
                        "evaluations": document["found_by"].get("evaluations_run"),
                        "candidates": len(json.loads((out / "candidates.json").read_text()))}
    manual, found = report["manual"]["test_mean_std"][0], report["from_labels"]["test_mean_std"][0]
    report["ratio"] = found / manual if manual else None
    (args.work / f"{report['task']}.report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def search_description(args) -> str:
    """What the from-labels search ran with, for the tables' footnotes."""
    defaults = SearchOptions(task="")
    search = (f"the default search (SearchOptions' own settings: halving {defaults.min_steps} -> {defaults.max_steps} "
              f"steps, {defaults.n_templates} generated templates, {defaults.n_mappings} searched mappings; the manual "
              f"prompt fine-tuned once at {defaults.max_steps} steps)" if args.default_search else
              f"each prompt fine-tuned {args.max_steps} steps" if args.start_only else
              f"halving {args.min_steps} -> {args.max_steps} steps; {args.n_templates} generated templates (beam "
              f"{args.beam_width}, screened zero-shot on {args.screening_split}), {args.n_mappings} searched "
              f"mappings (label k {args.label_k})")
    if args.label_neighbours:
        search += (f"; searched words from the {args.label_neighbours} nearest tokens of each label name "
                   "(`--label-neighbours`)")
    if args.finalist_demonstrations:
        search += (f"; then the race's best {SearchOptions.demo_finalists} with "
                   f"{' and '.join(args.finalist_demonstrations)} demonstrations (`--finalist-demonstrations`; the "
                   "manual prompt is fine-tuned without)")
    return search


def markdown(reports: list[dict], args) -> str:
    lines = ["| task | manual prompt (test) | from label names (test) | ratio | picked template (source) | "
             "picked words (source) | demonstrations | candidates / evaluations / seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in reports:
        m, f = r["manual"], r["from_labels"]
        lines.append(f"| {r['task']} | {fmt(*m['test_mean_std'])} | {fmt(*f['test_mean_std'])} | "
                     f"{r['ratio'] * 100:.1f}% | `{f['template']}` ({', '.join(f['template_source'] or [])}) | "
                     f"{f['label_words']} ({f['label_words_source']}) | {f.get('demonstrations', 'off')} | "
                     f"{f['candidates']} / {f['evaluations']} / {f['seconds']:.0f} (manual: {m['evaluations']} / "
                     f"{m['seconds']:.0f}) |")
    lines.append("")
    if args.collect:
        lines.append("Collected from runs made one task per process: the same command with `--tasks <task> "
                     "--no-save` in place of `--tasks ... --collect`.")
    if args.start_only:
        lines.append("`--start-only`: no templates generated and no words searched; 'from label names' is the "
                     "search's starting prompt alone (generic template, words read from the label names).")
    search = search_description(args)
    lines.append(f"Model {args.model}; the k-shot split of data seed {args.data_seed} (K={args.k}) as a custom task; "
                 f"training seeds {args.seeds}; {search}; test: a seeded sample of {args.test_limit} examples, "
                 "the same for both prompts.")
    return "\n".join(lines)


def seed_args(args, data_seed: int) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "work": args.work / f"seed{data_seed}", "data_seed": data_seed,
                                 "seeds": [data_seed]})


def per_seed_main(args) -> None:
    """`--data-seeds`: run (unless --collect) and table one search per split; a split or task not finished yet
    is listed as missing and the table marked partial."""
    reports: dict[str, dict[int, dict]] = {}
    for data_seed in args.data_seeds:
        for task in args.tasks:
            name = get_task(task).name
            report = args.work / f"seed{data_seed}" / f"{name}.report.json"
            if not args.collect and not report.exists():
                run_task(task, seed_args(args, data_seed))
            if report.exists():
                reports.setdefault(name, {})[data_seed] = json.loads(report.read_text())
    if args.no_save:
        return
    save(args.name, per_seed_markdown(reports, args), {"args": {k: str(v) if isinstance(v, Path) else v
                                                                for k, v in vars(args).items()}, "reports": reports})


def per_seed_markdown(reports: dict[str, dict[int, dict]], args) -> str:
    lines = ["| task | split | manual prompt (test) | from label names (test) | ratio | picked template (source) | "
             "picked words (source) |", "|---|---|---|---|---|---|---|"]
    summary = ["| task | splits | manual (mean ± std) | from label names (mean ± std) | ratio of means | "
               "splits at >= 90% |", "|---|---|---|---|---|---|"]
    missing = []
    for task in [get_task(t).name for t in args.tasks]:
        found = reports.get(task, {})
        missing += [f"{task} split {d}" for d in args.data_seeds if d not in found]
        for data_seed, r in sorted(found.items()):
            m, f = r["manual"], r["from_labels"]
            lines.append(f"| {task} | {data_seed} | {m['test_mean_std'][0] * 100:.1f} | "
                         f"{f['test_mean_std'][0] * 100:.1f} | {r['ratio'] * 100:.1f}% | `{f['template']}` "
                         f"({', '.join(f['template_source'] or [])}) | {f['label_words']} ({f['label_words_source']}) |")
        if found:
            manual = mean_std([r["manual"]["test_mean_std"][0] for r in found.values()])
            ours = mean_std([r["from_labels"]["test_mean_std"][0] for r in found.values()])
            at_90 = sum(r["ratio"] >= 0.9 for r in found.values())
            summary.append(f"| {task} | {len(found)} | {fmt(*manual)} | {fmt(*ours)} | {ours[0] / manual[0] * 100:.1f}% "
                           f"| {at_90} / {len(found)} |")
    notes = [f"Model {args.model}; per split D (K={args.k}): a custom task of that split, trained on seed D; "
             f"{search_description(args)}; "
             f"test: a seeded sample of at most {args.test_limit} examples, the same for both prompts. The target "
             "(issue 14): from label names alone at least 90% of the manual prompt."]
    if missing:
        notes.append(f"Partial: not finished: {', '.join(missing)}.")
    return "\n".join(summary + [""] + lines + [""] + notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["sst2", "cr"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/prompts_from_labels"))
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--data-seed", type=int, default=13)
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21])
    parser.add_argument("--n-templates", type=int, default=3)
    parser.add_argument("--beam-width", type=int, default=8)
    parser.add_argument("--n-mappings", type=int, default=2)
    parser.add_argument("--label-k", type=int, default=10)
    parser.add_argument("--screening-split", default="dev", choices=["dev", "train"])
    parser.add_argument("--min-steps", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=16)
    parser.add_argument("--test-limit", type=int, default=500)
    parser.add_argument("--finalist-demonstrations", nargs="+", default=[], choices=["random", "filtered"],
                        help="the from-labels search's --finalist-demonstrations (the manual prompt stays without)")
    parser.add_argument("--label-neighbours", type=int,
                        help="the from-labels search's --label-neighbours (candidate words near each label name)")
    parser.add_argument("--default-search", action="store_true",
                        help="the search's own defaults (budget, templates, mappings) in place of the small settings "
                             "above; the manual prompt at the default full budget")
    parser.add_argument("--collect", action="store_true", help="only gather finished tasks into results/")
    parser.add_argument("--start-only", action="store_true",
                        help="no generation or label search: the generic template with the label-name words alone")
    parser.add_argument("--no-save", action="store_true", help="leave the reports under --work only")
    parser.add_argument("--name", default="prompts_from_labels")
    parser.add_argument("--data-seeds", type=int, nargs="+",
                        help="one search per k-shot split, each trained on its own seed (the per-seed protocol of "
                             "bench_search_quality), under --work/seed<D>; the table gives each seed and the mean")
    args = parser.parse_args()
    args.work = args.work.resolve()
    if args.data_seeds:
        return per_seed_main(args)
    if not args.collect:
        for task in args.tasks:
            run_task(task, args)
    if args.no_save:
        return
    reports = [json.loads((args.work / f"{get_task(t).name}.report.json").read_text()) for t in args.tasks]
    save(args.name, markdown(reports, args), {"args": {k: str(v) if isinstance(v, Path) else v
                                                       for k, v in vars(args).items()}, "tasks": reports})


if __name__ == "__main__":
    main()
