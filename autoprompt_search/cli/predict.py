"""`search-templates predict`: classify texts with an exported prompt."""
from __future__ import annotations

import json
import sys

from ..errors import UserError


def build_predict_parser(sub) -> None:
    parser = sub.add_parser("predict", help="classify texts with an exported prompt (or ensemble of prompts)")
    parser.add_argument("--prompt", required=True, help="the exported prompt JSON")
    parser.add_argument("--input", default="-", help="text file, one example per line (pairs: tab-separated); - for stdin")
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--format", choices=["tsv", "jsonl"], default="tsv", help="output format")
    parser.set_defaults(func=run_predict)


def run_predict(args) -> int:
    from ..models import quiet_transformers
    from ..export import read_inputs
    from ..training import load_prompt

    from ..prompts import read_document
    from ..search import SearchOptions

    problem = SearchOptions.device_problem(args.device)
    if problem:
        raise UserError(f"--device: got {args.device!r}, expected {problem}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size: got {args.batch_size}, expected an integer >= 1")
    loaded = read_document(args.prompt)  # the whole document checked before the model loads
    for member in loaded.members():  # one prompt, or each prompt of an ensemble
        member.verbalizer(), member.template()
    examples = read_inputs(sys.stdin if args.input == "-" else args.input, loaded.task().num_sentences,
                           source="stdin" if args.input == "-" else args.input)
    quiet_transformers()
    classifier = load_prompt(args.prompt, device=args.device)  # a PromptClassifier or an EnsembleClassifier
    for example, (label, probabilities) in zip(examples, classifier.predict(examples, batch_size=args.batch_size)):
        if args.format == "jsonl":
            print(json.dumps({"text": list(example.texts), "label": label, "probabilities": probabilities},
                             ensure_ascii=False))
        else:
            probs = " ".join(f"{k}={v:.4f}" for k, v in probabilities.items())
            print(f"{label}\t{probs}\t" + "\t".join(example.texts))
    return 0
