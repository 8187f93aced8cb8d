"""`search-templates generate`: automatic template generation (LM-BFF auto-T)."""
from __future__ import annotations

from dataclasses import replace

from ..errors import UserError

from .common import add_model_arguments, add_task_arguments, check_model_arguments, read_verbalizer, resolve_task
from .task_prompt import words_to_generate_around


def build_generate_parser(sub) -> None:
    parser = sub.add_parser("generate", help="automatic template generation (LM-BFF auto-T)")
    add_task_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--generator", default="auto",
                        help="auto (T5 if cached, else the --model causal LM), causal, or a T5 name/folder")
    parser.add_argument("--seed", type=int, default=13, help="which k-shot split to generate from")
    parser.add_argument("--beam-width", type=int, default=100, help="beam width (LM-BFF: 100)")
    parser.add_argument("-n", "--n-templates", type=int, default=20, help="templates to print and save")
    parser.add_argument("--mapping", help="label words as JSON (default: the task's words; for a task file without "
                        "label_words, words from the label names or else searched, as the search does)")
    parser.add_argument("--label-k", type=int, default=20,
                        help="candidate words per class when the label words must be searched (the search's default)")
    parser.add_argument("--output", default=None, help="save templates here (one per line) plus a .json with scores")
    parser.set_defaults(func=run_generate)


def run_generate(args) -> int:
    from ..models import load_backbone, quiet_transformers
    from ..data import load_split
    from ..auto_template import GeneratedTemplate, save_templates
    from ..search import SearchOptions, generate_templates

    quiet_transformers()
    task = resolve_task(args.task)
    if args.mapping:
        verbalizer = read_verbalizer(args, task)  # templates are generated around each class's first word
        task = replace(task, label_words=dict(zip(verbalizer.labels, verbalizer.words)))
    train = load_split(task, "train", data_dir=args.data_dir, k=args.k, seed=args.seed)
    for flag, value in (("--beam-width", args.beam_width), ("-n/--n-templates", args.n_templates),
                        ("--label-k", args.label_k)):
        if value < 1:
            raise UserError(f"{flag}: got {value}, expected an integer >= 1")
    check_model_arguments(args)
    backbone = load_backbone(args.model, device=args.device, max_length=args.max_length)
    options = SearchOptions(task=task.name, model=args.model, generator=args.generator, k=args.k,
                            seeds=(args.seed,), beam_width=args.beam_width, n_templates=args.n_templates,
                            device=args.device, n_mappings=1, label_k=args.label_k, max_length=args.max_length)
    if args.mapping:
        print(f"label words: --mapping {verbalizer.to_mapping()}")
    else:
        task, origin = words_to_generate_around(task, options, train, backbone)
        print(origin)
    found = [GeneratedTemplate.from_dict(item) for item in generate_templates(options, task, train, backbone)]
    for rank, item in enumerate(found, start=1):
        print(f"{rank:3d}  {item.score:10.3f}  {item.format:4s}  {item.readable}")
    if args.output:
        paths = save_templates(found, args.output)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0
