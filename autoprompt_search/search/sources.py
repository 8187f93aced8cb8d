"""Where candidates come from: the task's manual prompt, generated templates (Auto-T), searched
label words (Auto-L) and template/mapping files. Generated templates and label words are cached
as JSON side files in the output folder (`sidefiles.cached_json`: written atomically, an unreadable
file recomputed with a warning), reused when made with the same settings.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

from ..auto_template import round_robin_by_format, screen_by_zero_shot
from ..errors import UserError
from ..textfiles import read_lines
from ..prompts import SEARCHED_LISTS_COMBINE, Template, Verbalizer
from ..tasks import Example, TaskSpec, generic_template
from .candidates import candidate_grid
from .options import SearchOptions
from .prompt_origin import CandidateSources, task_word_source
from .sidefiles import cached_json


def _local_t5(name: str):
    """A T5 model and tokenizer from a folder or the local Hugging Face cache, or None."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
        model = AutoModelForSeq2SeqLM.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError):
        return None
    return model, tokenizer


def generate_templates(options: SearchOptions, task: TaskSpec, train: Sequence[Example], backbone,
                       say=print, screen: Callable[[str, TaskSpec], float] | None = None) -> list[dict]:
    """Auto-T: a T5 generator when one is available, else the backbone as a causal generator.
    `screen`: (template text, task whose label words to use) -> zero-shot dev metric of the first seed
    (the search's evaluator, so that its zero-shot rung reuses the results); used when screening on dev."""
    from ..data import load_split
    from ..auto_template import CausalGenerator, InstructionGenerator, T5Generator

    if options.generator == "none":
        say("template generator: none (--generator none)")
        return []
    t5_name = {"auto": "t5-base"}.get(options.generator, options.generator)
    loaded = _local_t5(t5_name) if options.generator not in ("causal", "none") else None
    if options.generator not in ("auto", "causal") and loaded is None:
        raise UserError(f"generator {options.generator!r} is not a local folder or a cached T5 model; "
                        "use --generator causal to generate with the backbone")
    if loaded is not None:
        say(f"template generator: T5 ({t5_name})")
        generator = T5Generator(*loaded, beam_width=options.beam_width, device=options.device,
                                max_steps=options.generator_steps or 18, precision=options.resolved_precision())
    elif backbone.kind == "causal":
        say(f"template generator: the backbone {options.model} as a causal generator"
            + (" (no T5 model available offline)" if options.generator == "auto" else ""))
        generator = CausalGenerator(backbone.model, backbone.tokenizer, beam_width=options.beam_width,
                                    device=backbone.device, max_steps=options.generator_steps or 10,
                                    objective=options.template_objective, precision=options.resolved_precision())
    else:
        say("template generator: none (no T5 model available and the backbone is not a causal LM)")
        return []
    found = generator.generate(task, train, label_words=task.label_words, progress=options.progress)
    if options.instruction_templates and backbone.kind == "causal":
        say(f"instruction templates: asking {options.model} in {options.instruction_templates} prompt(s)")
        writer = InstructionGenerator.from_model(backbone.model, backbone.tokenizer, device=backbone.device,
                                                 n_prompts=options.instruction_templates, seed=options.seeds[0])
        found = [*found, *writer.generate(task, train, label_words=task.label_words, progress=options.progress)]
    found = round_robin_by_format(found)
    if options.template_screening == "score" or len(found) <= options.n_templates:
        return [g.to_dict() for g in found[:options.n_templates]]
    split = options.screening_split
    examples = train if split == "train" else load_split(task, "dev", data_dir=options.data_dir, k=options.k,
                                                         seed=options.seeds[0])
    say(f"screening {len(found)} generated templates by zero-shot {split} {task.metric} (seed {options.seeds[0]})")
    return screen_by_zero_shot(backbone, task, found, examples, options.n_templates, seed=options.seeds[0],
                               max_length=options.max_length, progress=options.progress, split=split,
                               precision=options.resolved_precision(),
                               score=(lambda template: screen(template, task)) if screen and split == "dev" else None)


def label_search_template(task: TaskSpec, backbone) -> Template:
    """The template the label search ranks words on: the task's, unless a causal backbone would see no
    input at its label position (a label-first template such as TREC's `*cls**mask*:*+sent_0**sep+*`); the
    words are then searched on the generic template, which puts the label after the input, and the
    candidates pair them with every template as usual."""
    template = Template.parse(task.template)
    if getattr(backbone, "kind", None) == "causal" and template.mask_precedes_input:
        return Template.parse(generic_template(task.num_sentences))
    return template


def search_mappings(options: SearchOptions, task: TaskSpec, train: Sequence[Example], backbone) -> list[dict]:
    """Auto-L with the manual template: the top assignments by zero-shot training accuracy, candidates
    ranked by `options.label_ranking` (and scored as whole words with `options.label_whole_words`), each class's
    taken from the `options.label_neighbours` nearest tokens of the task's word for it when that is set; with
    `options.label_words_per_class` > 1, one more mapping with that many words per class (`class_word_lists`)."""
    from ..auto_label import class_word_lists, search_label_words

    seeded = options.label_neighbours is not None and task.has_own_prompt
    result = search_label_words(backbone, task, label_search_template(task, backbone), train, k=options.label_k,
                                n=options.n_mappings, progress=options.progress, max_length=options.max_length,
                                ranking=options.label_ranking, whole_words=options.label_whole_words,
                                seed_words=Verbalizer.for_task(task) if seeded else None,
                                neighbours=options.label_neighbours if seeded else None)
    names = {int(k): v for k, v in result.words.items()}

    def word_of(token: int) -> str:
        return names.get(token) or backbone.token_to_word(token)

    mappings = [{"label_words": a.label_words(task.labels, word_of), "train_score": a.score}
                for a in result.assignments]
    if options.label_words_per_class > 1:
        lists = class_word_lists(result, options.label_words_per_class, word_of)
        if all(lists):  # a class left without a word of its own: no multi-word mapping
            mappings.append({"label_words": Verbalizer.from_word_lists(task.labels, lists,
                                                                       SEARCHED_LISTS_COMBINE).to_mapping(),
                             "words_per_class": options.label_words_per_class})
    return mappings


def build_candidates(options: SearchOptions, task: TaskSpec, backbone, say=print,
                     screen: Callable[[str, TaskSpec], float] | None = None) -> tuple[list[dict], dict]:
    """Template x mapping x demonstration candidates from every source, and where each template and
    mapping came from (`CandidateSources`). `screen`: see `generate_templates`."""
    from ..data import load_split
    from ..prompts import load_template_lines
    from ..prompts import load_mapping_lines

    out = Path(options.out)
    train = load_split(task, "train", data_dir=options.data_dir, k=options.k, seed=options.seeds[0])
    templates = [Template.parse(task.template)]
    sources = CandidateSources({templates[0].to_lmbff(): [task.template_source]})
    if options.n_templates:
        key = {"task": task.name, "model": options.model, "generator": options.generator, "k": options.k,
               "seed": options.seeds[0], "beam_width": options.beam_width, "n": options.n_templates,
               "steps": options.generator_steps,
               "selection": ("round robin over formats" if options.template_screening == "score"
                             else f"zero-shot {options.screening_split} {options.seeds[0]}")}
        # Without hand-written words, templates are generated (and screened) around derived or searched ones.
        words_task = task if task.label_words_source != "search" else _with_searched_words(
            options, task, train, backbone, say)
        # Built-in tasks' words are fixed by their name; a task file's can be edited between runs.
        if not task.has_manual_prompt or options.task.endswith(".json"):
            key["label_words"] = words_task.label_words
        # Only non-default sources enter the key, so caches made before these options existed stay valid.
        if options.template_objective != "likelihood":
            key["objective"] = options.template_objective
        if options.instruction_templates:
            key["instruction_prompts"] = options.instruction_templates
        if options.resolved_precision() != "fp32":
            key["precision"] = options.resolved_precision()
        generated = cached_json(out / "generated_templates.json", key,
                                lambda: generate_templates(options, words_task, train, backbone, say, screen), warn=say)
        for item in generated:
            templates.append(Template.parse(item["template"]))
            split = item.get("screening_split", "dev")
            screened = f", zero-shot {split} {item[f'zero_shot_{split}']:.3f}" if f"zero_shot_{split}" in item else ""
            sources.setdefault(templates[-1].to_lmbff(), []).append(f"generated ({item['score']:.2f}{screened})")
    for template in templates:
        template.validate(num_sentences=task.num_sentences)
    for path in options.template_files:
        for template in load_template_lines(path):
            _validate_from_file(template, path, task)
            templates.append(template)
            sources.setdefault(template.to_lmbff(), []).append(f"file {path}")
    # Placeholder words (labels that are no words) are not a candidate: the searched words replace them.
    verbalizers = [Verbalizer.for_task(task)] if task.label_words_source != "search" else []
    if verbalizers:
        sources.add_label_words(verbalizers[0].to_mapping(), task_word_source(task))
    if options.n_mappings:
        mappings = _searched_mappings(options, task, train, backbone, say)
        verbalizers += [Verbalizer.from_mapping(task, m["label_words"], source="label search") for m in mappings]
        for m in mappings:
            sources.add_label_words(m["label_words"], "label search" + (
                f" (train {m['train_score']:.3f})" if "train_score" in m else ""))
    synonym_words = _synonym_mapping(options, task, train, backbone, say) if options.label_synonyms else None
    with_synonyms = None
    if synonym_words is not None:
        with_synonyms = dataclasses.replace(Verbalizer.from_mapping(task, synonym_words, source="label synonyms"),
                                            combine=SEARCHED_LISTS_COMBINE)
        sources.add_label_words(with_synonyms.to_mapping(), "label synonyms (sentence encoder)")
    for path in options.mapping_files:
        found = load_mapping_lines(path, task)
        verbalizers += found
        for verbalizer in found:
            sources.add_label_words(verbalizer.to_mapping(), f"file {path}")
    candidates = candidate_grid(templates, verbalizers, options.demonstrations)
    if with_synonyms is not None:
        # Only on the task's template, as the prompt the search defends: on 32 dev examples the synonyms tie
        # with the task's words, so as one challenger among many they never got exported
        # (results/label_synonyms_plan.md); the words alone stay a challenger.
        candidates += [c for c in candidate_grid(templates[:1], [with_synonyms], options.demonstrations)
                       if c not in candidates]
        sources.task_prompt_words = with_synonyms.to_mapping()
    return candidates, sources


def _searched_mappings(options: SearchOptions, task: TaskSpec, train: Sequence[Example], backbone, say) -> list[dict]:
    """Auto-L's mappings, cached in label_words.json."""
    key = {"task": task.name, "model": options.model, "k": options.k, "seed": options.seeds[0],
           "label_k": options.label_k, "n": options.n_mappings}
    # As for templates: only non-default settings enter the key, so older label-word caches stay valid.
    if options.label_ranking != "logprob":
        key["ranking"] = options.label_ranking
    if options.label_whole_words:
        key["whole_words"] = True
    if options.label_words_per_class > 1:
        key["words_per_class"] = options.label_words_per_class
    if options.label_neighbours is not None:
        key["neighbours"] = options.label_neighbours
        if not task.has_own_prompt:
            say(f"label words: --label-neighbours needs a word per class to seed them; {task.name} has none, so "
                "the whole vocabulary is searched")
        else:
            key["seed_words"] = Verbalizer.for_task(task).to_mapping()
    if not task.has_manual_prompt:
        key["template"] = task.template
    probe = label_search_template(task, backbone)
    if probe != Template.parse(task.template):
        say(f"label words: searched on {probe.to_lmbff()} (a causal model sees no input at the label of "
            f"{task.template})")
        key["label_template"] = probe.to_lmbff()
    return cached_json(Path(options.out) / "label_words.json", key,
                       lambda: search_mappings(options, task, train, backbone), warn=say)


def _synonym_mapping(options: SearchOptions, task: TaskSpec, train: Sequence[Example], backbone, say) -> dict | None:
    """The task's words with up to `options.label_synonyms` synonyms each (`auto_label.synonyms`), cached in
    label_synonyms.json with what each word scored; None when the task has no words to start from or
    no class found a synonym."""
    from ..auto_label import search_synonyms
    from ..demonstrations import SentenceEncoder

    if task.label_words_source == "search":
        say(f"label synonyms: {task.name} has no label words to find synonyms of; none tried")
        return None
    if task.is_regression:
        say(f"label synonyms: {task.name} is a regression task; none tried")
        return None
    template = label_search_template(task, backbone)
    key = {"task": task.name, "model": options.model, "k": options.k, "seed": options.seeds[0],
           "per_class": options.label_synonyms, "encoder": options.demo_encoder, "template": template.to_lmbff(),
           "words": Verbalizer.for_task(task).to_mapping()}

    def search() -> dict:
        encoder = SentenceEncoder(options.demo_encoder, show_progress=options.progress)
        choice = search_synonyms(backbone, task, template, train, options.label_synonyms, encoder.encode,
                                 max_length=options.max_length, progress=options.progress)
        return {"label_words": dict(zip(task.labels, choice.words)), "evidence": dict(zip(task.labels, choice.evidence))}

    found = cached_json(Path(options.out) / "label_synonyms.json", key, search, warn=say)
    words = found["label_words"]
    if all(len(words[label]) == 1 for label in task.labels):
        say("label synonyms: no class's word has a synonym that passed the checks; none tried")
        return None
    say(f"label synonyms: {words}")
    return words


def _with_searched_words(options: SearchOptions, task: TaskSpec, train: Sequence[Example], backbone, say) -> TaskSpec:
    """The task with the label search's best words in place of its placeholders (for generating and
    screening templates around them)."""
    mappings = _searched_mappings(options, task, train, backbone, say)
    if not mappings:
        raise UserError(f"the label search found no label words for task {task.name}, which has none of its own; "
                        "add label_words to the task file or raise --label-k")
    best = mappings[0]["label_words"]
    say(f"task {task.name} has no label words: templates are generated around the searched words {best}")
    return dataclasses.replace(task, label_words=dict(best))


def _validate_from_file(template: Template, path: str, task: TaskSpec) -> None:
    """Check a template read from a file, naming the file and line when it does not fit the task."""
    try:
        template.validate(num_sentences=task.num_sentences)
    except UserError as error:
        lines = read_lines(path, "template file")
        number = next((i for i, line in enumerate(lines, start=1)
                       if template.source and line.strip().split("\t")[0] == template.source), None)
        where = f"{path}, line {number}" if number else str(path)
        raise UserError(f"{where}: {error}") from None
