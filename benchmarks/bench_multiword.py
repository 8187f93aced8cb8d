"""Several label words per class against one, zero-shot, with the manual template.

    OMP_NUM_THREADS=1 python benchmarks/bench_multiword.py --tasks sst2 sst5 --seed 13 --test-limit 200

For each task: zero-shot accuracy through `PromptClassifier` (the scorer the search, export and predict
use) on the seed's k-shot dev split and a seeded sample of the test set, for
- the manual words, and the manual words with hand-written synonyms (`SYNONYMS`, first word = manual);
- the label search's best assignment (`--label-ranking`, k and n as given) and the multi-word mapping
  the search adds with `--label-words-per-class N` (`class_word_lists`);
each list scored with log-sum-exp and with mean. Saves results/<name>.md and .json after every task.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_benchmark_backbone, save  # noqa: E402

from autoprompt_search.auto_label import class_word_lists, search_label_words  # noqa: E402
from autoprompt_search.data import load_split  # noqa: E402
from autoprompt_search.prompts import Verbalizer  # noqa: E402
from autoprompt_search.tasks import get_task  # noqa: E402
from autoprompt_search.training import PromptClassifier  # noqa: E402

# Hand-written synonyms, each class's manual word first (so demonstrations would show the manual word).
SYNONYMS = {
    "SST-2": {"0": ["terrible", "bad", "awful"], "1": ["great", "good", "wonderful"]},
    "SST-5": {"0": ["terrible", "awful"], "1": ["bad", "poor"], "2": ["okay", "fine"], "3": ["good", "nice"],
              "4": ["great", "wonderful"]},
}


def _accuracy(backbone, task, mapping, examples, max_length) -> float:
    classifier = PromptClassifier.build(backbone, task, task.template, mapping, max_length=max_length)
    return classifier.evaluate(examples, batch_size=16).metrics[task.metric]


def _variants(task, searched: dict, lists: list[list[str]]) -> list[tuple[str, dict]]:
    variants = [("manual", dict(task.label_words))]
    for combine in ("logsumexp", "mean"):
        if task.name in SYNONYMS:
            variants.append((f"manual + synonyms, {combine}", {**SYNONYMS[task.name], "_combine": combine}))
    variants.append(("searched, best assignment", searched))
    for combine in ("logsumexp", "mean"):
        multi = Verbalizer.from_word_lists(task.labels, lists, combine)
        if multi.is_multiword:
            variants.append((f"searched, {max(map(len, lists))} words per class, {combine}", multi.to_mapping()))
    return variants


def _report(args, tasks: list[dict]) -> None:
    lines = [f"# Several label words per class, zero-shot ({args.model}, seed {args.seed}, k={args.k}, manual template)",
             "", f"Label search: ranking `{args.label_ranking}`, {args.label_k} candidates per class, top {args.n} "
             f"assignments; the multi-word mapping takes up to {args.per_class} words per class from them "
             "(`class_word_lists`). Accuracy through `PromptClassifier` on the k-shot dev split and a seeded "
             f"sample of at most {args.test_limit} test examples. No fine-tuning. `seconds`: wall time of dev + test "
             "on a machine shared with other jobs (not a speed measurement).", ""]
    for entry in tasks:
        lines += [f"## {entry['task']} (dev {entry['dev_examples']}, test {entry['test_examples']} examples)", "",
                  "| verbalizer | words | dev | test | seconds |", "|---|---|---|---|---|"]
        for row in entry["rows"]:
            words = " ".join(f"{k}:{'|'.join(v) if isinstance(v, list) else v}" for k, v in row["label_words"].items()
                             if k != "_combine")
            lines.append(f"| {row['variant']} | {words} | {row['dev'] * 100:.1f} | {row['test'] * 100:.1f} | "
                         f"{row['seconds']:.0f} |")
        lines.append("")
    save(args.name, "\n".join(lines), {"args": vars(args), "tasks": tasks})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "sst5"])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--label-k", type=int, default=20)
    parser.add_argument("--label-ranking", choices=["logprob", "pmi"], default="pmi")
    parser.add_argument("-n", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=3)
    parser.add_argument("--test-limit", type=int, default=400)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--data-dir")
    parser.add_argument("--name", default="multiword_verbalizer")
    args = parser.parse_args()
    backbone, _ = load_benchmark_backbone(args.model, max_length=args.max_length)
    tasks: list[dict] = []
    for name in args.tasks:
        task = get_task(name)
        train = load_split(task, "train", data_dir=args.data_dir, k=args.k, seed=args.seed)
        dev = load_split(task, "dev", data_dir=args.data_dir, k=args.k, seed=args.seed)
        test = load_split(task, "test", data_dir=args.data_dir, k=args.k, seed=args.seed)
        if len(test) > args.test_limit:
            test = random.Random(args.seed).sample(test, args.test_limit)
        result = search_label_words(backbone, task, task.template, train, k=args.label_k, n=args.n,
                                    ranking=args.label_ranking, max_length=args.max_length, batch_size=16,
                                    progress=False)
        searched = result.label_words(result.assignments[0])
        lists = class_word_lists(result, args.per_class)
        entry = {"task": task.name, "dev_examples": len(dev), "test_examples": len(test), "rows": []}
        tasks.append(entry)
        for variant, mapping in _variants(task, searched, lists):
            start = time.perf_counter()
            dev_acc = _accuracy(backbone, task, mapping, dev, args.max_length)
            test_acc = _accuracy(backbone, task, mapping, test, args.max_length)
            entry["rows"].append({"variant": variant, "label_words": mapping, "dev": dev_acc, "test": test_acc,
                                  "seconds": time.perf_counter() - start})
            _report(args, tasks)


if __name__ == "__main__":
    main()
