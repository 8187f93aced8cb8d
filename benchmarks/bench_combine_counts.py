"""Does a class gain from having more label words than another? Zero-shot, on the search's own synonyms.

    OMP_NUM_THREADS=1 python benchmarks/bench_combine_counts.py --tasks sst2 sst5 mr cr --seeds 13 21 42 87 100

For each task and seed: the word lists `search --label-synonyms N` gives the task's prompt on that seed's
training split (the same function, template and sentence encoder), then zero-shot accuracy through
`PromptClassifier` (the scorer of the search, export and predict) on the seed's dev split and the test sample
the search scores (`--test-limit`), for the manual words and for the lists combined by log-sum-exp (the
sum of the words' probabilities) and by log-mean-exp (their mean). With as many words in every class
the two give the same class probabilities (tested in tests/test_multiword_verbalizer.py), so log-mean-exp
is evaluated only where the lists differ in length. Also the share of test predictions per class, beside
the share of the gold labels. No fine-tuning. The test sample is the same for every seed, so a word list
already scored on it (the manual words, on every seed after the first) is not scored again, and its row's
`seconds` then count the dev split only. Resumable: a finished task and seed is not rerun; saves
results/<name>.md and .json after each.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (RESULTS, command_line, environment, load_benchmark_backbone, mean_std,  # noqa: E402
                    resumable_state, write_json_atomic)

from autoprompt_search.auto_label import search_synonyms  # noqa: E402
from autoprompt_search.data import limit_examples, load_split, load_task, resolve_data_dir  # noqa: E402
from autoprompt_search.demonstrations import SentenceEncoder  # noqa: E402
from autoprompt_search.prompts import Verbalizer  # noqa: E402
from autoprompt_search.search import label_search_template  # noqa: E402
from autoprompt_search.training import PromptClassifier  # noqa: E402

COMBINES = ("logsumexp", "logmeanexp")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", nargs="+", default=["sst2", "sst5", "mr", "cr"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[13, 21, 42, 87, 100])
    parser.add_argument("--synonyms", type=int, default=2, help="the search's --label-synonyms")
    parser.add_argument("--encoder", default="minilm-l6", help="the search's --demo-encoder")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--test-limit", type=int, default=500)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir")
    parser.add_argument("--name", default="combine_counts")
    return parser.parse_args(argv)


def settings_of(args) -> dict:
    return {"model": args.model, "synonyms": args.synonyms, "encoder": args.encoder, "k": args.k,
            "test_limit": args.test_limit, "max_length": args.max_length}


def _shares(labels, num_classes: int) -> list[float]:
    counts = Counter(labels)
    return [counts.get(c, 0) / max(len(labels), 1) for c in range(num_classes)]


def _evaluate(backbone, task, template, verbalizer, examples, max_length) -> tuple[float, list[int]]:
    classifier = PromptClassifier.build(backbone, task, template, verbalizer, max_length=max_length)
    result = classifier.evaluate(examples, batch_size=16)
    return result.metrics[task.metric], [task.label_index(p) for p in result.predictions]


def _test_key(task_name: str, label_words: dict) -> str:
    return json.dumps([task_name, label_words], sort_keys=True)


def known_test_results(units: dict) -> dict:
    """What saved units already measured on the test sample, by task and label words."""
    known = {}
    for unit in units.values():
        for row in unit["rows"]:
            known[_test_key(unit["task"], row["label_words"])] = (row["test"], row["test_shares"])
    return known


def run_unit(backbone, encoder, task, seed: int, args, known_test: dict | None = None) -> dict:
    known_test = {} if known_test is None else known_test
    train = load_split(task, "train", data_dir=args.data_dir, k=args.k, seed=seed)
    dev = load_split(task, "dev", data_dir=args.data_dir, k=args.k, seed=seed)
    test = limit_examples(load_split(task, "test", data_dir=args.data_dir, k=args.k, seed=seed), args.test_limit)
    template = label_search_template(task, backbone)
    choice = search_synonyms(backbone, task, template, train, args.synonyms, encoder.encode,
                             max_length=args.max_length, progress=False)
    lists = [list(words) for words in choice.words]
    gold = [task.label_index(e.label) for e in test]
    unit = {"task": task.name, "seed": seed, "word_lists": lists, "unequal": len({len(w) for w in lists}) > 1,
            "gold_shares": _shares(gold, len(task.labels)), "rows": []}
    variants = [("manual", Verbalizer.for_task(task))]
    if any(len(words) > 1 for words in lists):
        combines = COMBINES if unit["unequal"] else COMBINES[:1]
        variants += [(combine, Verbalizer.from_word_lists(task.labels, lists, combine)) for combine in combines]
    for name, verbalizer in variants:
        start = time.perf_counter()
        dev_metric, _ = _evaluate(backbone, task, task.template, verbalizer, dev, args.max_length)
        key = _test_key(task.name, verbalizer.to_mapping())
        if key not in known_test:
            test_metric, predictions = _evaluate(backbone, task, task.template, verbalizer, test, args.max_length)
            known_test[key] = (test_metric, _shares(predictions, len(task.labels)))
        test_metric, test_shares = known_test[key]
        unit["rows"].append({"variant": name, "label_words": verbalizer.to_mapping(), "dev": dev_metric,
                             "test": test_metric, "test_shares": test_shares,
                             "seconds": time.perf_counter() - start})
    return unit


def _percent_shares(shares) -> str:
    return " ".join(f"{share * 100:.0f}" for share in shares)


def report(state: dict) -> str:
    settings = state["settings"]
    lines = [f"# Label-word counts per class: log-sum-exp against log-mean-exp, zero-shot ({settings['model']})", "",
             f"Word lists: the task's words with up to {settings['synonyms']} synonyms each, found on each seed's "
             f"k={settings['k']} training split as `search --label-synonyms {settings['synonyms']}` finds them; "
             f"the task's manual template; dev = the seed's dev split, test = the search's test sample (at most "
             f"{settings['test_limit']}). Shares: percent of test predictions per class, in label order. "
             "log-mean-exp is run only where the lists differ in length (elsewhere it equals log-sum-exp).", "",
             "| task | seed | word lists | manual dev / test | log-sum-exp dev / test | log-mean-exp dev / test "
             "| gold shares | manual shares | log-sum-exp shares | log-mean-exp shares |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    gains = []
    for key in sorted(state["units"], key=lambda k: (state["units"][k]["task"], state["units"][k]["seed"])):
        unit = state["units"][key]
        rows = {row["variant"]: row for row in unit["rows"]}
        cells = []
        for variant in ("manual", *COMBINES):
            row = rows.get(variant)
            cells.append(f"{row['dev'] * 100:.1f} / {row['test'] * 100:.1f}" if row else "-")
        shares = [_percent_shares(rows[v]["test_shares"]) if v in rows else "-" for v in ("manual", *COMBINES)]
        words = " ".join(f"{label}:{'|'.join(words)}" for label, words in enumerate(unit["word_lists"]))
        lines.append(f"| {unit['task']} | {unit['seed']} | {words} | {' | '.join(cells)} | "
                     f"{_percent_shares(unit['gold_shares'])} | {' | '.join(shares)} |")
        if "logmeanexp" in rows:
            gains.append(rows["logmeanexp"]["test"] - rows["logsumexp"]["test"])
    lines.append("")
    if gains:
        mean, std = mean_std([g * 100 for g in gains])
        lines.append(f"Where the lists differ in length ({len(gains)} task-seeds): log-mean-exp - log-sum-exp test "
                     f"{mean:+.2f} ± {std:.2f} points; better on {sum(g > 0 for g in gains)}, worse on "
                     f"{sum(g < 0 for g in gains)}.")
    else:
        lines.append("No task and seed so far has lists of different lengths.")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    resolve_data_dir(args.data_dir)
    tasks = [load_task(name) for name in args.tasks]
    path = RESULTS / f"{args.name}.json"
    state = resumable_state(path, settings_of(args), {"units": {}})
    if command_line() not in state["commands"]:
        state["commands"].append(command_line())
    state["environment"] = environment()
    todo = [(task, seed) for task in tasks for seed in args.seeds if f"{task.name}/{seed}" not in state["units"]]
    print(f"{len(todo)} task-seed(s) to run, {len(state['units'])} saved in {path}", flush=True)
    if todo:
        backbone, _ = load_benchmark_backbone(args.model, threads=args.threads, max_length=args.max_length)
        encoder = SentenceEncoder(args.encoder, show_progress=False)
        known_test = known_test_results(state["units"])
        for task, seed in todo:
            state["units"][f"{task.name}/{seed}"] = run_unit(backbone, encoder, task, seed, args, known_test)
            _save(path, state)
            print(f"{task.name} seed {seed} done", flush=True)
    _save(path, state)


def _save(path: Path, state: dict) -> None:
    write_json_atomic(path, state)
    commands = "\n".join(f"`{command}`" for command in state["commands"])
    markdown = f"Commands:\n\n{commands}\n\nEnvironment: `{state['environment']}`\n\n{report(state)}\n"
    path.with_suffix(".md").write_text(markdown, encoding="utf-8")


if __name__ == "__main__":
    main()
