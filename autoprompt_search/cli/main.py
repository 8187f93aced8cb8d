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

from ..errors import UserError


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
    from ..tasks import get_task

    if name.endswith(".json") or Path(name).is_file():
        from ..data import load_task_spec

        return load_task_spec(name)
    return get_task(name)


def read_templates(args, task) -> list:
    from ..prompts import Template, load_template_lines

    templates = [Template.parse(t) for t in (args.template or [])]
    if getattr(args, "template_file", None):
        templates += load_template_lines(args.template_file)
    return templates or [Template.parse(task.template)]


def read_verbalizer(args, task):
    from ..prompts import Verbalizer

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
    from ..models import load_backbone, quiet_transformers
    from ..data import load_split

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
# search (the default command)


def _read_config_file(path: str) -> dict:
    import json
    import tomllib

    file = Path(path)
    if not file.is_file():
        raise UserError(f"config file {file} does not exist")
    text = file.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise UserError(f"config file {file}: {error}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {file}: expected a table/object of options")
    return {key.replace("-", "_"): value for key, value in data.items()}


def build_search_parser(sub) -> None:
    from ..search import SearchOptions

    d = SearchOptions(task="")
    parser = sub.add_parser("search", help="run the whole LM-BFF search (the default command)")
    parser.add_argument("--config", help="TOML or JSON file of options (command-line flags override it)")
    parser.add_argument("--task", help="task name or custom task JSON file")
    parser.add_argument("--data-dir", help="LM-BFF data folder (default: $AUTOPROMPT_DATA_DIR, else ../shared/data/lmbff)")
    parser.add_argument("--k", type=int, help=f"examples per class (default {d.k})")
    parser.add_argument("--model", help=f"backbone (default {d.model}; e.g. roberta-large with a network)")
    parser.add_argument("--generator", help="template generator: auto (T5 if available offline, else the "
                        "backbone), causal, none, or a T5 model name/folder")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"k-shot split seeds (default {list(d.seeds)})")
    parser.add_argument("--out", help="output folder (default runs/<task>)")
    parser.add_argument("--n-templates", type=int, help=f"generated templates to evaluate (default {d.n_templates})")
    parser.add_argument("--beam-width", type=int, help=f"generator beam width (default {d.beam_width}; LM-BFF 100)")
    parser.add_argument("--generator-steps", type=int, help="generator decoding steps (default 18 for T5, 10 causal)")
    parser.add_argument("--template-screening", choices=["zero_shot", "score"],
                        help="generated templates kept: best zero-shot dev metric among all generated (default) "
                             "or best generation score")
    parser.add_argument("--n-mappings", type=int, help=f"searched label-word mappings (default {d.n_mappings})")
    parser.add_argument("--label-k", type=int, help=f"candidate words per class in label search (default {d.label_k}; LM-BFF 100)")
    parser.add_argument("--template-file", dest="template_files", action="append", help="file of templates, one per line")
    parser.add_argument("--mapping-file", dest="mapping_files", action="append", help="file of label-word mappings, one per line")
    parser.add_argument("--demonstrations", nargs="+", choices=["off", "random", "filtered"],
                        help="demonstration modes to try (default off)")
    parser.add_argument("--filter-rate", dest="demo_filter_rate", type=float,
                        help=f"filtered demonstrations: share of each class most similar to the query (default {d.demo_filter_rate})")
    parser.add_argument("--inference-samples", dest="demo_inference_samples", type=int,
                        help=f"demonstration sets averaged per query (default {d.demo_inference_samples}; LM-BFF 16)")
    parser.add_argument("--demo-encoder", help=f"sentence encoder of filtered demonstrations (default {d.demo_encoder})")
    parser.add_argument("--strategy", choices=["halving", "exhaustive"], help="budget strategy (default halving)")
    parser.add_argument("--min-steps", type=int, help=f"steps of the first fine-tuning rung (default {d.min_steps})")
    parser.add_argument("--max-steps", type=int, help=f"full training budget (default {d.max_steps}; paper 1000)")
    parser.add_argument("--eta", type=float, help=f"halving rate (default {d.eta})")
    parser.add_argument("--lr", type=float, help=f"learning rate (default {d.lr}; paper 1e-5)")
    parser.add_argument("--batch-size", type=int, help=f"training batch size (default {d.batch_size})")
    parser.add_argument("--max-length", type=int, help=f"maximum prompt length (default {d.max_length})")
    parser.add_argument("--jobs", type=int, help="parallel evaluations (default 1)")
    parser.add_argument("--backend", choices=["loky", "dask", "ray", "serial"], help="parallel backend (default loky)")
    parser.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (with --backend dask)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--no-test", dest="test", action="store_false", default=None,
                        help="do not score the test set at the final rung")
    parser.add_argument("--test-limit", type=int, help="score a seeded random sample of N test examples")
    parser.add_argument("--quiet", dest="progress", action="store_false", default=None, help="no progress bars")
    parser.set_defaults(func=run_search_command)


def search_options_from(args):
    from ..search import SearchOptions

    values = _read_config_file(args.config) if args.config else {}
    for name in SearchOptions.__dataclass_fields__:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    if not values.get("task"):
        raise UserError("--task is required (e.g. --task sst2), directly or in the --config file")
    values.setdefault("out", f"runs/{Path(str(values['task'])).stem.lower()}")
    return SearchOptions.from_dict(values, source=args.config or "command line")


def run_search_command(args) -> int:
    from ..models import quiet_transformers
    from ..search import run_pipeline

    quiet_transformers()
    run_pipeline(search_options_from(args))
    return 0


# ---------------------------------------------------------------------------------------------
# labels / generate


def build_labels_parser(sub) -> None:
    parser = sub.add_parser("labels", help="automatic label-word search (LM-BFF auto-L)")
    add_task_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--seed", type=int, default=13, help="which k-shot split to search on")
    parser.add_argument("--template", action="append", help="template (default: the task's manual one)")
    parser.add_argument("--label-k", type=int, default=100, help="candidate words per class (LM-BFF: 100)")
    parser.add_argument("-n", "--n-mappings", type=int, default=10, help="mappings to keep (LM-BFF: 100)")
    parser.add_argument("--seed-words", help="JSON label -> word; with --neighbours keeps only their nearest tokens")
    parser.add_argument("--neighbours", type=int, help="nearest-neighbour filter size (LM-BFF's TREC setting)")
    parser.add_argument("--output", help="write the ranked mappings as JSON here")
    parser.set_defaults(func=run_labels)


def run_labels(args) -> int:
    import json

    from ..models import load_backbone, quiet_transformers
    from ..data import load_split
    from ..auto_label import search_label_words
    from ..prompts import parse_mapping_text

    quiet_transformers()
    task = resolve_task(args.task)
    template = read_templates(args, task)[0]
    train = load_split(task, "train", data_dir=args.data_dir, k=args.k, seed=args.seed)
    backbone = load_backbone(args.model, device=args.device, max_length=args.max_length)
    seed_words = parse_mapping_text(args.seed_words, source="--seed-words") if args.seed_words else None
    result = search_label_words(backbone, task, template, train, k=args.label_k, n=args.n_mappings,
                                seed_words=seed_words, neighbours=args.neighbours)
    records = []
    for rank, assignment in enumerate(result.assignments, start=1):
        words = assignment.label_words(task.labels, backbone.token_to_word)
        records.append({"rank": rank, "label_words": words, "train_" + result.metric: assignment.score})
        print(f"{rank:3d}  {result.metric} {assignment.score:.4f}  {json.dumps(words, ensure_ascii=False)}")
    if args.output:
        Path(args.output).write_text(json.dumps({"task": task.name, "model": args.model, "template": template.to_lmbff(),
                                                 "mappings": records}, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


def build_generate_parser(sub) -> None:
    parser = sub.add_parser("generate", help="automatic template generation (LM-BFF auto-T)")
    add_task_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--generator", default="auto",
                        help="auto (T5 if cached, else the --model causal LM), causal, or a T5 name/folder")
    parser.add_argument("--seed", type=int, default=13, help="which k-shot split to generate from")
    parser.add_argument("--beam-width", type=int, default=100, help="beam width (LM-BFF: 100)")
    parser.add_argument("-n", "--n-templates", type=int, default=20, help="templates to print and save")
    parser.add_argument("--mapping", help="label words as JSON (default: the task's manual words)")
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
        from dataclasses import replace

        task = replace(task, label_words=read_verbalizer(args, task).to_mapping())
    train = load_split(task, "train", data_dir=args.data_dir, k=args.k, seed=args.seed)
    backbone = load_backbone(args.model, device=args.device, max_length=args.max_length)
    options = SearchOptions(task=task.name, model=args.model, generator=args.generator, k=args.k,
                            seeds=(args.seed,), beam_width=args.beam_width, n_templates=args.n_templates,
                            device=args.device)
    found = [GeneratedTemplate.from_dict(item) for item in generate_templates(options, task, train, backbone)]
    for rank, item in enumerate(found, start=1):
        print(f"{rank:3d}  {item.score:10.3f}  {item.format:4s}  {item.readable}")
    if args.output:
        paths = save_templates(found, args.output)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


# ---------------------------------------------------------------------------------------------
# leaderboard / export / predict


def _open_leaderboard(out: str):
    from ..search import Leaderboard

    path = Path(out)
    file = path / "leaderboard.sqlite" if path.is_dir() or not path.suffix else path
    if not file.is_file():
        raise UserError(f"no leaderboard at {file}; run a search with --out {out} first")
    return Leaderboard(file)


def build_leaderboard_parser(sub) -> None:
    parser = sub.add_parser("leaderboard", help="print the ranking of a search and plot it")
    parser.add_argument("--out", required=True, help="the search's output folder (or its leaderboard.sqlite)")
    parser.add_argument("--budget", type=int, help="rank at this training budget (default: each candidate's highest)")
    parser.add_argument("--limit", type=int, default=20, help="rows to print")
    parser.add_argument("--plot", help="write the per-rung plot to this PNG (default OUT/progress.png)")
    parser.set_defaults(func=run_leaderboard)


def run_leaderboard(args) -> int:
    from ..search import plot_leaderboard

    leaderboard = _open_leaderboard(args.out)
    print(leaderboard.to_table(budget=args.budget, limit=args.limit))
    folder = Path(args.out) if Path(args.out).is_dir() else Path(args.out).parent
    plot = plot_leaderboard(leaderboard, args.plot or folder / "progress.png")
    print(f"plot: {plot}")
    return 0


def build_export_parser(sub) -> None:
    parser = sub.add_parser("export", help="write the best prompt of a search as JSON (optionally with a fine-tuned model)")
    parser.add_argument("--out", required=True, help="the search's output folder")
    parser.add_argument("--output", help="JSON file to write (default OUT/best.json)")
    parser.add_argument("--fine-tune", action="store_true",
                        help="fine-tune the backbone with the best prompt on the first seed's split and save it beside the JSON")
    parser.set_defaults(func=run_export)


def run_export(args) -> int:
    import json

    from ..models import quiet_transformers
    from ..prompts import SCHEMA_VERSION, read_document, save_fine_tuned, write_document
    from ..search import demonstration_section_for, fine_tuned_backbone

    quiet_transformers()
    folder = Path(args.out)
    best = folder / "best.json"
    if not best.is_file():
        raise UserError(f"{best} does not exist; run `search-templates --task ... --out {args.out}` first")
    document = read_document(best).document
    output = Path(args.output) if args.output else best
    found_by = document["found_by"]
    needs_pool = document["demonstrations"].get("mode", "off") != "off" and not document["demonstrations"].get("pool")
    if args.fine_tune or needs_pool:
        leaderboard = _open_leaderboard(args.out)
        rows = [r for r in leaderboard.rows(found_by["config_hash"]) if r.candidate_id == found_by["candidate_id"]]
        if not rows:
            raise UserError(f"{best}: its candidate is not in {folder / 'leaderboard.sqlite'}")
        settings, candidate, seed = _settings_for(leaderboard, found_by["config_hash"]), rows[0].candidate, found_by["seeds"][0]
        if needs_pool:  # written before prompts carried their demonstration examples
            document = {**document, "schema_version": SCHEMA_VERSION,
                        "demonstrations": demonstration_section_for(settings, candidate, seed)}
        if args.fine_tune:
            backbone, _prompt, _task = fine_tuned_backbone(settings, candidate, seed, found_by["steps"])
            model_folder = output.with_suffix("").name + "-model"
            save_fine_tuned(backbone, output.parent / model_folder)
            document = {**document, "fine_tuned_model": model_folder}
    write_document(document, output)
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0


def _settings_for(leaderboard, config_hash):
    from ..search import EvaluatorSettings

    # The configuration itself is not stored per row; the search wrote it beside the database.
    folder = Path(leaderboard.path).parent
    config_file = folder / "search_config.json"
    if not config_file.is_file():
        raise UserError(f"{config_file} is missing; rerun the search to recreate it")
    import json

    configs = json.loads(config_file.read_text(encoding="utf-8"))
    if config_hash not in configs:
        raise UserError(f"{config_file} has no configuration {config_hash[:12]}")
    settings = EvaluatorSettings(**configs[config_hash]["settings"])
    settings.cache_dir = settings.cache_dir or str(folder / "cache")
    return settings


def build_predict_parser(sub) -> None:
    parser = sub.add_parser("predict", help="classify texts with an exported prompt")
    parser.add_argument("--prompt", required=True, help="the exported prompt JSON")
    parser.add_argument("--input", default="-", help="text file, one example per line (pairs: tab-separated); - for stdin")
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--format", choices=["tsv", "jsonl"], default="tsv", help="output format")
    parser.set_defaults(func=run_predict)


def run_predict(args) -> int:
    import json

    from ..models import quiet_transformers
    from ..export import PromptClassifier, read_inputs

    quiet_transformers()
    classifier = PromptClassifier.from_file(args.prompt, device=args.device)
    examples = read_inputs(sys.stdin if args.input == "-" else args.input, classifier.task.num_sentences,
                           source="stdin" if args.input == "-" else args.input)
    for example, (label, probabilities) in zip(examples, classifier.predict(examples, batch_size=args.batch_size)):
        if args.format == "jsonl":
            print(json.dumps({"text": list(example.texts), "label": label, "probabilities": probabilities},
                             ensure_ascii=False))
        else:
            probs = " ".join(f"{k}={v:.4f}" for k, v in probabilities.items())
            print(f"{label}\t{probs}\t" + "\t".join(example.texts))
    return 0


# ---------------------------------------------------------------------------------------------

SUBCOMMANDS = {"search": build_search_parser, "render": build_render_parser, "labels": build_labels_parser,
               "generate": build_generate_parser, "leaderboard": build_leaderboard_parser,
               "export": build_export_parser, "predict": build_predict_parser}


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
