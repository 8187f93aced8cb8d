"""`search-templates labels`: automatic label-word search (LM-BFF auto-L)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError

from .common import add_model_arguments, add_task_arguments, check_model_arguments, read_templates, resolve_task
from .task_prompt import template_origin


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
    parser.add_argument("--label-ranking", choices=["logprob", "pmi"], default="logprob",
                        help="rank candidates by summed log-probability (LM-BFF) or class-conditional PMI")
    parser.add_argument("--whole-words", action="store_true",
                        help="causal backbones: re-score candidates as whole words with the classifier's class score")
    parser.add_argument("--synonyms", type=int,
                        help="N >= 1: instead of ranking mappings, each class's word (the task's, or --seed-words) "
                             "with up to N synonyms, as `search --label-synonyms N` finds them, with their evidence")
    parser.add_argument("--encoder", default="minilm-l6", help="the sentence encoder --synonyms measures nearness with")
    parser.add_argument("--output", help="write the ranked mappings (or the synonyms) as JSON here")
    parser.set_defaults(func=run_labels)


def run_labels(args) -> int:
    from ..models import load_backbone, quiet_transformers
    from ..data import load_split
    from ..auto_label import search_label_words
    from ..prompts import parse_mapping_text
    from ..search import label_search_template

    quiet_transformers()
    task = resolve_task(args.task)
    template = read_templates(args, task)[0]
    origin = template_origin(task, bool(args.template))
    template.validate(num_sentences=task.num_sentences, num_labels=task.num_classes, demonstrations=False)
    train = load_split(task, "train", data_dir=args.data_dir, k=args.k, seed=args.seed)
    seed_words = parse_mapping_text(args.seed_words, source="--seed-words") if args.seed_words else None
    if seed_words is not None and not isinstance(seed_words, dict):
        raise UserError(f"--seed-words: expected a JSON object label -> word, got {args.seed_words!r}")
    for flag, value in (("--label-k", args.label_k), ("-n/--n-mappings", args.n_mappings),
                        ("--neighbours", args.neighbours), ("--synonyms", args.synonyms)):
        if value is not None and value < 1:
            raise UserError(f"{flag}: got {value}, expected an integer >= 1")
    check_model_arguments(args)
    backbone = load_backbone(args.model, device=args.device, max_length=args.max_length)
    if not args.template:  # the template the search probes words on (a causal model sees no input at a label first)
        probe = label_search_template(task, backbone)
        if probe != template:
            template, origin = probe, f"the generic template: the task's ({task.template}) puts the label before the input"
    if args.synonyms:
        return _print_synonyms(args, task, template, origin, train, backbone, seed_words)
    result = search_label_words(backbone, task, template, train, k=args.label_k, n=args.n_mappings,
                                seed_words=seed_words, neighbours=args.neighbours, ranking=args.label_ranking,
                                whole_words=args.whole_words)
    print(f"template: {template.to_lmbff()} ({origin})")
    records = []
    for rank, assignment in enumerate(result.assignments, start=1):
        words = result.label_words(assignment)
        records.append({"rank": rank, "label_words": words, "train_" + result.metric: assignment.score})
        print(f"{rank:3d}  {result.metric} {assignment.score:.4f}  {json.dumps(words, ensure_ascii=False)}")
    if args.output:
        Path(args.output).write_text(json.dumps({"task": task.name, "model": args.model, "template": template.to_lmbff(),
                                                 "template_source": origin,
                                                 "ranking": args.label_ranking, "whole_words": args.whole_words,
                                                 "mappings": records}, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


def _print_synonyms(args, task, template, origin: str, train, backbone, seed_words) -> int:
    """`--synonyms N`: the words `search --label-synonyms N` would give the task's own prompt, each synonym with
    its encoder similarity and PMI."""
    from ..auto_label import search_synonyms
    from ..demonstrations import SentenceEncoder
    from ..prompts import SEARCHED_LISTS_COMBINE, Verbalizer

    seeds = Verbalizer.from_mapping(task, seed_words, source="--seed-words") if seed_words else None
    encoder = SentenceEncoder(args.encoder)
    choice = search_synonyms(backbone, task, template, train, args.synonyms, encoder.encode, seed_words=seeds,
                             max_length=args.max_length)
    print(f"template: {template.to_lmbff()} ({origin})")
    for label, words, evidence in zip(task.labels, choice.words, choice.evidence):
        found = ", ".join(f"{e['word']} (similarity {e['similarity']:.2f}, PMI {e['pmi']:+.2f})" for e in evidence)
        print(f"{label}: {words[0]}" + (f" + {found}" if found else " (no synonym passed the checks)"))
    if args.output:
        Path(args.output).write_text(json.dumps({
            "task": task.name, "model": args.model, "template": template.to_lmbff(), "template_source": origin,
            "encoder": args.encoder, "per_class": args.synonyms,
            "label_words": Verbalizer.from_word_lists(task.labels, choice.words, SEARCHED_LISTS_COMBINE).to_mapping(),
            "evidence": dict(zip(task.labels, choice.evidence))}, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"wrote {args.output}")
    return 0
