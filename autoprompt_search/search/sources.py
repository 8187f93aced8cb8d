"""Where candidates come from: the task's manual prompt, generated templates (Auto-T), searched
label words (Auto-L) and template/mapping files. Generated templates and label words are cached
as JSON side files in the output folder (`sidefiles.cached_json`: written atomically, an unreadable
file recomputed with a warning), reused when made with the same settings.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..auto_template import round_robin_by_format, screen_by_zero_shot
from ..errors import UserError
from ..textfiles import read_lines
from ..prompts import Template, Verbalizer
from ..tasks import Example, TaskSpec
from .candidates import candidate_grid
from .options import SearchOptions
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
                       say=print) -> list[dict]:
    """Auto-T: a T5 generator when one is available, else the backbone as a causal generator."""
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
                                max_steps=options.generator_steps or 18)
    elif backbone.kind == "causal":
        say(f"template generator: the backbone {options.model} as a causal generator"
            + (" (no T5 model available offline)" if options.generator == "auto" else ""))
        generator = CausalGenerator(backbone.model, backbone.tokenizer, beam_width=options.beam_width,
                                    device=backbone.device, max_steps=options.generator_steps or 10,
                                    objective=options.template_objective)
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
    dev = load_split(task, "dev", data_dir=options.data_dir, k=options.k, seed=options.seeds[0])
    say(f"screening {len(found)} generated templates by zero-shot dev {task.metric} (seed {options.seeds[0]})")
    return screen_by_zero_shot(backbone, task, found, dev, options.n_templates, seed=options.seeds[0],
                               max_length=options.max_length, progress=options.progress)


def search_mappings(options: SearchOptions, task: TaskSpec, train: Sequence[Example], backbone) -> list[dict]:
    """Auto-L with the manual template: the top assignments by zero-shot training accuracy, candidates
    ranked by `options.label_ranking` (and scored as whole words with `options.label_whole_words`)."""
    from ..auto_label import search_label_words

    result = search_label_words(backbone, task, Template.parse(task.template), train, k=options.label_k,
                                n=options.n_mappings, progress=options.progress, max_length=options.max_length,
                                ranking=options.label_ranking, whole_words=options.label_whole_words)
    names = {int(k): v for k, v in result.words.items()}
    return [{"label_words": a.label_words(task.labels, lambda i: names.get(i) or backbone.token_to_word(i)),
             "train_score": a.score} for a in result.assignments]


def build_candidates(options: SearchOptions, task: TaskSpec, backbone, say=print) -> tuple[list[dict], dict]:
    """Template x mapping x demonstration candidates from every source, and where each came from."""
    from ..data import load_split
    from ..prompts import load_template_lines
    from ..prompts import load_mapping_lines

    out = Path(options.out)
    train = load_split(task, "train", data_dir=options.data_dir, k=options.k, seed=options.seeds[0])
    templates = [Template.parse(task.template)]
    sources: dict[str, list[str]] = {templates[0].to_lmbff(): ["manual"]}
    if options.n_templates:
        key = {"task": task.name, "model": options.model, "generator": options.generator, "k": options.k,
               "seed": options.seeds[0], "beam_width": options.beam_width, "n": options.n_templates,
               "steps": options.generator_steps,
               "selection": ("round robin over formats" if options.template_screening == "score"
                             else f"zero-shot dev {options.seeds[0]}")}
        # Only non-default sources enter the key, so caches made before these options existed stay valid.
        if options.template_objective != "likelihood":
            key["objective"] = options.template_objective
        if options.instruction_templates:
            key["instruction_prompts"] = options.instruction_templates
        generated = cached_json(out / "generated_templates.json", key,
                                lambda: generate_templates(options, task, train, backbone, say), warn=say)
        for item in generated:
            templates.append(Template.parse(item["template"]))
            screened = f", zero-shot dev {item['zero_shot_dev']:.3f}" if "zero_shot_dev" in item else ""
            sources.setdefault(templates[-1].to_lmbff(), []).append(f"generated ({item['score']:.2f}{screened})")
    for template in templates:
        template.validate(num_sentences=task.num_sentences)
    for path in options.template_files:
        for template in load_template_lines(path):
            _validate_from_file(template, path, task)
            templates.append(template)
            sources.setdefault(template.to_lmbff(), []).append(f"file {path}")
    verbalizers = [Verbalizer.for_task(task)]
    if options.n_mappings:
        key = {"task": task.name, "model": options.model, "k": options.k, "seed": options.seeds[0],
               "label_k": options.label_k, "n": options.n_mappings}
        # As above: only non-default settings enter the key, so older label-word caches stay valid.
        if options.label_ranking != "logprob":
            key["ranking"] = options.label_ranking
        if options.label_whole_words:
            key["whole_words"] = True
        mappings = cached_json(out / "label_words.json", key, lambda: search_mappings(options, task, train, backbone),
                               warn=say)
        verbalizers += [Verbalizer.from_mapping(task, m["label_words"], source="label search") for m in mappings]
    for path in options.mapping_files:
        verbalizers += load_mapping_lines(path, task)
    candidates = candidate_grid(templates, verbalizers, options.demonstrations)
    return candidates, sources


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
