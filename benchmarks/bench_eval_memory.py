"""Scoring a test set with a causal backbone: seconds and peak resident memory per template, with the
vocabulary projection of the continuation tokens done at once or in chunks (models/causal.py,
rows of logits per chunk). A label-first template (`is a [MASK] thing. <sentence>`) makes the causal model
score every sentence token once per class, which is what drove a demo search's peak to 10 GB.

    python benchmarks/bench_eval_memory.py --task SST-2 --chunks 0 512 --threads 2

`--chunks 0` scores all rows of a batch at once (the code before chunking). `--orders input` batches examples
sorted by their input length alone (the code before sorting by padded length, which for a label-first template
left every batch padded to its longest sentence). Each (template, chunk, order) is measured in a fresh process, so
that one measurement's heap cannot lower or raise the next one's peak.
Saves results/<name>.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import child_result, save  # noqa: E402

TEMPLATES = ("*cls**sent_0*_It_was*mask*.*sep+*", "*cls*_is_a*mask*_thing.*+sent_0**sep+*")


def measure(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from autoprompt_search.data import load_split, load_task
    from autoprompt_search.models import causal, load_backbone
    from autoprompt_search.prompts import Prompt, Template, Verbalizer
    from autoprompt_search.training import peak_resident_mb, reset_peak_resident, resident_mb
    from autoprompt_search.training import trainer
    from autoprompt_search.training.trainer import evaluate

    # Rows per chunk as given (0: every row at once) instead of the vocabulary-sized default.
    causal.rows_per_chunk = lambda vocabulary, budget: args.child_chunk or 10**9
    if args.child_order == "input":
        trainer.padded_length = lambda item: len(item.input_ids)
    task = load_task(args.task)
    test = load_split(task, "test", data_dir=args.data_dir)[:args.test_limit or None]
    backbone = load_backbone(args.model)
    prompt = Prompt(Template.parse(args.child_template), Verbalizer.for_task(task))
    before = resident_mb()
    reset_peak_resident()
    start = time.perf_counter()
    result = evaluate(backbone, task, prompt, test, precision=args.precision, batch_size=args.batch_size)
    return {"template": args.child_template, "chunk": args.child_chunk, "order": args.child_order, "seconds": time.perf_counter() - start,
            "peak_mb": peak_resident_mb(), "before_mb": before, "metric": result.main, "examples": len(test)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="SST-2")
    parser.add_argument("--templates", nargs="+", default=list(TEMPLATES))
    parser.add_argument("--chunks", type=int, nargs="+", default=[0, 512])
    parser.add_argument("--orders", nargs="+", default=["padded"], choices=["input", "padded"],
                        help="sort examples into batches by padded length (the code) or by input length (before)")
    parser.add_argument("--test-limit", type=int, default=0, help="first N test examples (0: all)")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--name", default="eval_memory")
    parser.add_argument("--child-template", help=argparse.SUPPRESS)
    parser.add_argument("--child-chunk", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-order", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_template is not None:
        print(json.dumps(measure(args)))
        return
    rows = []
    for template in args.templates:
        for chunk in args.chunks:
            for order in args.orders:
                command = [sys.executable, __file__, "--model", args.model, "--task", args.task,
                           "--precision", args.precision, "--batch-size", str(args.batch_size),
                           "--threads", str(args.threads), "--test-limit", str(args.test_limit),
                           "--child-template", template, "--child-chunk", str(chunk), "--child-order", order]
                if args.data_dir:
                    command += ["--data-dir", args.data_dir]
                rows.append(child_result(command))
                print(rows[-1], flush=True)
    examples = f"first {args.test_limit}" if args.test_limit else "all"
    lines = [f"{args.model}, {args.task} test set ({examples} examples), {args.precision}, batch {args.batch_size}, "
             f"{args.threads} thread(s); peak = the process's largest resident set during the scoring (VmHWM reset "
             "after loading); batches by = the length examples are sorted by before batching.", "",
             "| template | rows per vocabulary chunk | batches by | seconds | peak MB | resident before MB | test metric |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        order = {"input": "input length", "padded": "padded length", None: "input length"}[row.get("order")]
        lines.append(f"| `{row['template']}` | {row['chunk'] or 'all at once'} | {order} | {row['seconds']:.1f} | "
                     f"{row['peak_mb']:.0f} | {row['before_mb']:.0f} | {row['metric']:.4f} |")
    save(args.name, "\n".join(lines), {"rows": rows})


if __name__ == "__main__":
    main()
