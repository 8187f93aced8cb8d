"""Does the generation score pick good templates? Zero-shot dev metric of every generated template.

    python benchmarks/bench_template_screening.py --templates results/generators_speed.json --seeds 13 21

Reads the templates of the last (widest) fast run saved by bench_generators.py, scores each zero-shot on
the dev split of every seed with the task's manual label words, and prints them in generation order
beside their dev metric, with the rank correlation between the two. This is what
`--template-screening zero_shot` (the search's default) uses to choose which generated templates
become candidates. Saves results/template_screening_<task>.md and .json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_benchmark_backbone, save  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from autoprompt_search.data import load_split  # noqa: E402
from autoprompt_search.tasks import get_task  # noqa: E402
from autoprompt_search.prompts import Template  # noqa: E402
from autoprompt_search.prompts import Prompt  # noqa: E402
from autoprompt_search.training import evaluate  # noqa: E402
from autoprompt_search.prompts import Verbalizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--templates", default="results/generators_speed.json")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    generated = json.loads(Path(args.templates).read_text())["rows"][-1]["fast_templates"]
    backbone, _ = load_benchmark_backbone(args.model, args.threads)
    task = get_task(args.task)
    verbalizer = Verbalizer.for_task(task)
    rows = []
    for rank, item in enumerate(generated):
        per_seed = {seed: evaluate(backbone, task, Prompt(Template.parse(item["template"]), verbalizer),
                                   load_split(task, "dev", data_dir=args.data_dir, seed=seed), seed=seed).main
                    for seed in args.seeds}
        rows.append({"rank": rank + 1, "template": item["template"], "score": item["score"], "dev": per_seed,
                     "mean_dev": statistics.fmean(per_seed.values())})
        print(rows[-1], flush=True)
    rho = spearmanr([r["score"] for r in rows], [r["mean_dev"] for r in rows])[0]
    best = max(rows, key=lambda r: (r["mean_dev"], -r["rank"]))
    lines = [f"{args.model}, {task.name}: the {len(rows)} templates of `{args.templates}` (last run), zero-shot "
             f"dev {task.metric} with the manual label words, seeds {args.seeds}", "",
             f"Spearman correlation between generation score and mean dev {task.metric}: {rho:.2f}. "
             f"Best by dev: rank {best['rank']} `{best['template']}` ({best['mean_dev'] * 100:.1f}); "
             f"rank 1 `{rows[0]['template']}` ({rows[0]['mean_dev'] * 100:.1f}).", "",
             "| rank | template | generation score | " + " | ".join(f"dev seed {s}" for s in args.seeds) + " | mean |",
             "|---|---|---|" + "---|" * (len(args.seeds) + 1)]
    for r in rows:
        lines.append(f"| {r['rank']} | `{r['template']}` | {r['score']:.1f} | "
                     + " | ".join(f"{r['dev'][s] * 100:.1f}" for s in args.seeds) + f" | {r['mean_dev'] * 100:.1f} |")
    save(f"template_screening_{task.name.lower()}", "\n".join(lines),
         {"args": vars(args), "spearman": rho, "rows": rows})


if __name__ == "__main__":
    main()
