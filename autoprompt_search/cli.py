"""`search-templates`: the command line.

    search-templates --task sst2 [options]        run the whole search (default command)
    search-templates render --task sst2 ...       show how templates render for a model
    search-templates labels --task sst2 ...       automatic label-word search
    search-templates generate --task sst2 ...     automatic template generation
    search-templates leaderboard --out DIR        print the ranking (and plot it)
    search-templates export --out DIR             write the best prompt as JSON
    search-templates predict --prompt best.json   classify texts with an exported prompt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import UserError


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="task name (sst2, SST-5, mr, trec, rte...) or a custom task JSON file")
    parser.add_argument("--data-dir", default=None,
                        help="LM-BFF data folder (default: $AUTOPROMPT_DATA_DIR, else ../shared/data/lmbff)")
    parser.add_argument("--k", type=int, default=16, help="examples per class in the k-shot splits (default 16)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m",
                        help="backbone: smollm2-135m (offline default), a local folder or a hub id such as roberta-large")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--max-length", type=int, default=128, help="maximum prompt length in tokens")


def resolve_task(name: str):
    from .tasks import get_task

    if name.endswith(".json") or Path(name).is_file():
        from .data import load_task_spec

        return load_task_spec(name)
    return get_task(name)


def read_templates(args, task) -> list:
    from .templates import Template, load_template_lines

    templates = [Template.parse(t) for t in (args.template or [])]
    if getattr(args, "template_file", None):
        templates += load_template_lines(args.template_file)
    return templates or [Template.parse(task.template)]


def read_verbalizer(args, task):
    from .verbalizers import Verbalizer

    if getattr(args, "mapping", None):
        return Verbalizer.from_mapping(task, args.mapping, source="--mapping")
    return Verbalizer.for_task(task)


# ---------------------------------------------------------------------------------------------
# render


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
    from .backbones import load_backbone, quiet_transformers
    from .data import load_split

    quiet_transformers()
    task = resolve_task(args.task)
    templates = read_templates(args, task)
    for template in templates:
        template.validate(num_sentences=task.num_sentences)
    verbalizer = read_verbalizer(args, task)
    examples = load_split(task, args.split, data_dir=args.data_dir, k=args.k, seed=args.seed)[:args.examples]
    backbone = load_backbone(args.model, device=args.device or "cpu", max_length=args.max_length)
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
                for word, continuation in zip(verbalizer.words, encoded.continuations):
                    print(f"    + {word!r:>14} -> {tokenizer.convert_ids_to_tokens(continuation)}")
        print()
    return 0


# ---------------------------------------------------------------------------------------------

SUBCOMMANDS = {"render": build_render_parser}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="search-templates", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    for build in SUBCOMMANDS.values():
        build(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help"):
        argv = ["search", *argv]
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UserError as error:
        print(f"search-templates: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("search-templates: interrupted; finished evaluations are saved, rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
