"""`search-templates render`: print how templates render on the first examples of a task."""
from __future__ import annotations

from .common import (add_model_arguments, add_task_arguments, check_model_arguments, read_templates,
                     read_verbalizer, resolve_task)


def build_render_parser(sub) -> None:
    parser = sub.add_parser("render", help="print how templates render on the first examples of a task")
    add_task_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--template", action="append", help="template (LM-BFF or readable syntax); repeatable")
    parser.add_argument("--template-file", help="file with one template per line (LM-BFF's format)")
    parser.add_argument("--mapping", help="label words as JSON, e.g. '{\"0\": \"terrible\", \"1\": \"great\"}'")
    parser.add_argument("--split", default="train", choices=["train", "dev", "test"])
    parser.add_argument("--seed", type=int, default=13, help="which k-shot split (13, 21, 42, 87, 100)")
    parser.add_argument("-n", "--examples", type=int, default=3, help="how many examples to show")
    parser.set_defaults(func=run_render)


def run_render(args) -> int:
    from ..models import load_encoder, quiet_transformers
    from ..data import load_split

    quiet_transformers()
    task = resolve_task(args.task)
    templates = read_templates(args, task)
    for template in templates:  # render shows prompts without demonstrations
        template.validate(num_sentences=task.num_sentences, num_labels=task.num_classes, demonstrations=False)
    verbalizer = read_verbalizer(args, task)
    check_model_arguments(args)
    examples = load_split(task, args.split, data_dir=args.data_dir, k=args.k, seed=args.seed)[:args.examples]
    backbone = load_encoder(args.model, max_length=args.max_length)  # render needs the tokenizer, not the weights
    tokenizer = backbone.tokenizer
    for template in templates:
        print(f"template  {template.to_lmbff()}")
        print(f"readable  {template.to_readable()}")
        print(f"words     {verbalizer.to_json()}")
        for example in examples:
            encoded = backbone.encode(example, template, verbalizer)
            print(f"  label {example.label!r}")
            print(f"    text    {encoded.text}")
            print(f"    tokens  {tokenizer.convert_ids_to_tokens(encoded.input_ids)}")
            if encoded.continuations:
                for word, continuation in zip(verbalizer.all_words, encoded.continuations):
                    print(f"    + {word!r:>14} -> {tokenizer.convert_ids_to_tokens(continuation)}")
        print()
    return 0
