"""Label words by ranking (log-probability vs class-conditional PMI) and scoring (first token vs whole word).

    OMP_NUM_THREADS=1 python benchmarks/bench_label_ranking.py --tasks sst2 sst5 --seed 13 --k 20

For each task: the label search on the seed's training split with the manual template, once per
(ranking, scoring) pair; the words of the top assignments, their search score (training accuracy under
the scoring used) and their zero-shot train and dev accuracy through `PromptClassifier` (the scorer
the search and export use), beside the task's manual words. Saves results/label_ranking.md and .json
after every unit of work.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_benchmark_backbone, save  # noqa: E402

from autoprompt_search.auto_label import search_label_words  # noqa: E402
from autoprompt_search.data import load_split  # noqa: E402
from autoprompt_search.tasks import get_task  # noqa: E402
from autoprompt_search.training import PromptClassifier  # noqa: E402

VARIANTS = (("logprob", False), ("pmi", False), ("logprob", True), ("pmi", True))


def _zero_shot(backbone, task, mapping, train, dev, max_length) -> tuple[float, float]:
    classifier = PromptClassifier.build(backbone, task, task.template, mapping, max_length=max_length)
    return (classifier.evaluate(train, batch_size=16).metrics[task.metric],
            classifier.evaluate(dev, batch_size=16).metrics[task.metric])


def _report(args, tasks: list[dict]) -> None:
    lines = [f"# Label words by ranking and scoring ({args.model}, seed {args.seed}, k={args.k}, manual template)", "",
             f"Label search with {args.label_k} candidates per class and the top {args.n} assignments; zero-shot "
             "accuracy through `PromptClassifier` on the seed's k-shot train and dev splits. `search` is the "
             "search's own training score (first-token or whole-word). Rankings: `logprob` (LM-BFF, summed "
             f"log-probability) and `pmi` (class-conditional PMI among the {10 * args.label_k} most likely tokens "
             "per class).", ""]
    for entry in tasks:
        lines += [f"## {entry['task']}", "",
                  f"Manual words {entry['manual']['label_words']}: train {entry['manual']['train'] * 100:.1f}, "
                  f"dev {entry['manual']['dev'] * 100:.1f}.", "",
                  "| ranking | scoring | seconds | rank | words | search | zero-shot train | zero-shot dev |",
                  "|---|---|---|---|---|---|---|---|"]
        for run in entry["runs"]:
            for rank, m in enumerate(run["mappings"], start=1):
                words = " / ".join(m["label_words"].values())
                lines.append(f"| {run['ranking']} | {run['scoring']} | {run['seconds']:.0f} | {rank} | {words} | "
                             f"{m['search_score'] * 100:.1f} | {m['train'] * 100:.1f} | {m['dev'] * 100:.1f} |")
        lines.append("")
    save(args.name, "\n".join(lines), {"args": vars(args), "tasks": tasks})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "sst5"])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--label-k", type=int, default=20)
    parser.add_argument("-n", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--data-dir")
    parser.add_argument("--name", default="label_ranking")
    args = parser.parse_args()
    backbone, _ = load_benchmark_backbone(args.model, max_length=args.max_length)
    tasks: list[dict] = []
    for name in args.tasks:
        task = get_task(name)
        train = load_split(task, "train", data_dir=args.data_dir, k=args.k, seed=args.seed)
        dev = load_split(task, "dev", data_dir=args.data_dir, k=args.k, seed=args.seed)
        manual_train, manual_dev = _zero_shot(backbone, task, task.label_words, train, dev, args.max_length)
        entry = {"task": task.name, "train_examples": len(train), "dev_examples": len(dev),
                 "manual": {"label_words": dict(task.label_words), "train": manual_train, "dev": manual_dev}, "runs": []}
        tasks.append(entry)
        for ranking, whole in VARIANTS:
            start = time.perf_counter()
            result = search_label_words(backbone, task, task.template, train, k=args.label_k, n=args.n,
                                        ranking=ranking, whole_words=whole, max_length=args.max_length,
                                        batch_size=16, progress=False)
            seconds = time.perf_counter() - start
            mappings = []
            for assignment in result.assignments:
                words = result.label_words(assignment)
                if len(set(words.values())) < len(words):
                    continue
                train_acc, dev_acc = _zero_shot(backbone, task, words, train, dev, args.max_length)
                mappings.append({"label_words": words, "search_score": assignment.score, "train": train_acc,
                                 "dev": dev_acc})
            entry["runs"].append({"ranking": ranking, "scoring": result.scoring, "seconds": seconds,
                                  "candidates": {label: [result.words[t] for t in words]
                                                 for label, words in zip(task.labels, result.candidates)},
                                  "mappings": mappings})
            _report(args, tasks)


if __name__ == "__main__":
    main()
