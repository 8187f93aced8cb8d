"""The exported prompt: a versioned JSON document, and the fine-tuned model saved beside it.

Schema (version 3), every field always present:

    schema            "autoprompt_search.prompt"
    schema_version    3
    kind              "prompt" (one prompt, the fields below) or "ensemble" (see below)
    task              {"name", "labels", "num_sentences", "metric", "regression_range"}
    backbone          model name or folder the prompt was found with
    template          {"lmbff": LM-BFF syntax, "readable": readable syntax}
    label_words       {label: word}, or with several words per class {label: word or [words], "_combine":
                      "logsumexp" | "logmeanexp" | "mean"} (see verbalizer.py)
    demonstrations    {"mode": "off"|"random"|"filtered", "filter_rate", "inference_samples", "encoder",
                       "lengths": overrides of the task's LM-BFF lengths, "max_length": the run's length
                       without demonstrations, "seed": the seed inference sets are drawn with,
                       "pool": [{"texts": [...], "label": ...}] the training examples demonstrations
                       are drawn from ([] when mode is "off")}
    dev               {"metric", "per_seed": {seed: value}, "mean", "std"}
    test              {"metric", "per_seed", "mean", "std"} or null when not evaluated
    found_by          {"strategy", "steps", "seeds", "config_hash", "leaderboard", "candidate_id"}
    fine_tuned_model  folder (relative to the JSON file) with the fine-tuned weights, or null (zero-shot)
    created           ISO-8601 time

An ensemble ("kind": "ensemble", written since version 3) has the same fields except that template,
label_words, demonstrations and fine_tuned_model are null at the top and given per member instead:

    members           [{"candidate_id", "template", "label_words", "demonstrations", "fine_tuned_model"}, ...]
                      (two or more); the ensemble's class probabilities are the mean of the members'

Version 2 had no "kind" (always one prompt); version 1 also had no demonstration pool, so it is read
for prompts without demonstrations.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import UserError
from ..textfiles import read_text, write_text_atomic
from ..tasks import Example, TaskSpec
from .template import Template
from .verbalizer import Verbalizer

SCHEMA = "autoprompt_search.prompt"
SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
REQUIRED = ("schema", "schema_version", "task", "backbone", "template", "label_words", "demonstrations",
            "dev", "test", "found_by", "fine_tuned_model", "created")
MEMBER_FIELDS = ("candidate_id", "template", "label_words", "demonstrations", "fine_tuned_model")


def metric_summary(metric: str, per_seed: Mapping[int, float | None]) -> dict[str, Any] | None:
    values = [v for v in per_seed.values() if v is not None]
    if not values:
        return None
    return {"metric": metric, "per_seed": {str(k): v for k, v in per_seed.items() if v is not None},
            "mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0}


def demonstration_section(mode: str, settings: Mapping[str, Any] | None = None, pool: Sequence[Example] = (),
                          seed: int | None = None) -> dict[str, Any]:
    """The document's "demonstrations": the sampler settings and, with demonstrations, the training
    examples they are drawn from (`pool`, needed to predict) and the seed of the inference sets."""
    if mode != "off" and not pool:
        raise ValueError("a prompt with demonstrations needs its demonstration pool")
    with_demos = mode != "off"
    return {"mode": mode, **dict(settings or {}), "seed": seed if with_demos else None,
            "pool": [{"texts": list(e.texts), "label": e.label} for e in pool] if with_demos else []}


def build_document(task: TaskSpec, backbone: str, candidate: Mapping[str, Any], *, dev: Mapping[int, float],
                   test: Mapping[int, float | None] | None = None, found_by: Mapping[str, Any] | None = None,
                   fine_tuned_model: str | None = None, demonstrations: Mapping[str, Any] | None = None) -> dict:
    """`demonstrations`: from `demonstration_section` (default: none)."""
    template = Template.parse(candidate["template"])
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "kind": "prompt",
        "task": {"name": task.name, "labels": list(task.labels), "num_sentences": task.num_sentences,
                 "metric": task.metric, "regression_range": list(task.regression_range) if task.regression_range else None},
        "backbone": backbone,
        "template": {"lmbff": template.to_lmbff(), "readable": template.to_readable()},
        "label_words": dict(candidate["label_words"]),
        "demonstrations": dict(demonstrations or demonstration_section(candidate.get("demonstrations", "off"))),
        "dev": metric_summary(task.metric, dev),
        "test": metric_summary(task.metric, test or {}),
        "found_by": dict(found_by or {}),
        "fine_tuned_model": fine_tuned_model,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def build_ensemble_document(member_documents: Sequence[Mapping[str, Any]], *, dev: Mapping[int, float],
                            test: Mapping[int, float | None] | None = None,
                            found_by: Mapping[str, Any] | None = None) -> dict:
    """An ensemble of the prompts in `member_documents` (each from `build_document`, with its candidate id
    in found_by["candidate_id"]); task and backbone come from the first."""
    first = member_documents[0]
    members = [{**{key: member[key] for key in MEMBER_FIELDS[1:]},
                "candidate_id": member["found_by"].get("candidate_id")} for member in member_documents]
    return {**first, "kind": "ensemble", "members": members, **{key: None for key in MEMBER_FIELDS[1:]},
            "dev": metric_summary(first["task"]["metric"], dev),
            "test": metric_summary(first["task"]["metric"], test or {}),
            "found_by": dict(found_by or {}), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_document(document: Mapping[str, Any], path: str | Path) -> Path:
    return write_text_atomic(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")


@dataclass
class LoadedPrompt:
    document: dict
    path: Path

    @property
    def model_path(self) -> str:
        folder = self.document.get("fine_tuned_model")
        return str((self.path.parent / folder).resolve()) if folder else self.document["backbone"]

    @property
    def kind(self) -> str:
        return self.document.get("kind", "prompt")

    def members(self) -> list["LoadedPrompt"]:
        """The prompts of an ensemble, each as a one-prompt document (paths relative to the same file);
        [self] for one prompt."""
        if self.kind != "ensemble":
            return [self]
        header = {key: value for key, value in self.document.items() if key != "members"}
        return [LoadedPrompt({**header, **member, "kind": "prompt"}, self.path) for member in self.document["members"]]

    def task(self) -> TaskSpec:
        from ..tasks import get_task

        if self.kind == "ensemble":
            return self.members()[0].task()

        spec = self.document["task"]
        try:
            task = get_task(spec["name"])
        except UserError:
            first_words = Verbalizer.from_labels(spec["labels"], self.document["label_words"], task_name=spec["name"],
                                                 source=f"{self.path}: label_words").words  # a task has one word per class
            task = TaskSpec(spec["name"], tuple(spec["labels"]), spec["num_sentences"], spec["metric"],
                            self.document["template"]["lmbff"], dict(zip(spec["labels"], first_words)),
                            tuple(spec["regression_range"]) if spec.get("regression_range") else None)
        if list(task.labels) != list(spec["labels"]):
            raise UserError(f"{self.path}: task.labels {spec['labels']} do not match the registered task "
                            f"{task.name}'s labels {list(task.labels)}")
        return task

    def template(self) -> Template:
        return Template.parse(self.document["template"]["lmbff"])

    def verbalizer(self) -> Verbalizer:
        return Verbalizer.from_mapping(self.task(), self.document["label_words"], source=f"{self.path}: label_words")

    @property
    def demonstration_mode(self) -> str:
        return self.document["demonstrations"].get("mode", "off")

    def demonstration_pool(self, task: TaskSpec) -> list[Example]:
        """The training examples demonstrations are drawn from, checked against the task."""
        where = f"{self.path}: demonstrations.pool"
        pool = self.document["demonstrations"].get("pool")
        if self.document["schema_version"] == 1 or pool is None:
            raise UserError(f"{where} is missing: the prompt was exported without its demonstration examples "
                            f"(schema_version {self.document['schema_version']}); export it again")
        if not isinstance(pool, list) or not pool:
            raise UserError(f"{where}: expected a non-empty list of {{\"texts\": [...], \"label\": ...}}")
        return [_pool_example(item, task, f"{where}[{i}]") for i, item in enumerate(pool)]


def _pool_example(item: Any, task: TaskSpec, where: str) -> Example:
    texts = item.get("texts") if isinstance(item, dict) else None
    if not isinstance(texts, list) or len(texts) != task.num_sentences or not all(isinstance(t, str) for t in texts):
        raise UserError(f"{where}.texts: expected a list of {task.num_sentences} string(s), got {texts!r}")
    label = item.get("label")
    if task.is_regression:
        if isinstance(label, bool) or not isinstance(label, (int, float)):
            raise UserError(f"{where}.label: expected a number, got {label!r}")
    elif str(label) not in task.labels:
        raise UserError(f"{where}.label: expected one of {list(task.labels)}, got {label!r}")
    return Example(tuple(texts), float(label) if task.is_regression else str(label))


def read_document(path: str | Path) -> LoadedPrompt:
    path = Path(path)
    text = read_text(path, "prompt file")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise UserError(f"{path}: not an exported prompt; expected \"schema\": \"{SCHEMA}\"")
    if document.get("schema_version") not in READABLE_VERSIONS:
        raise UserError(f"{path}: schema_version {document.get('schema_version')!r} is not supported; "
                        f"this version reads {list(READABLE_VERSIONS)}")
    missing = [key for key in REQUIRED if key not in document]
    if missing:
        raise UserError(f"{path}: missing field(s) {missing}")
    if document.get("kind", "prompt") == "ensemble":
        _check_members(document, path)
    elif document.get("kind", "prompt") == "prompt":
        _check_document(document, path)
    else:
        raise UserError(f"{path}: field 'kind': expected \"prompt\" or \"ensemble\", got {document['kind']!r}")
    return LoadedPrompt(document, path)


def _check_members(document: dict, path: Path) -> None:
    """An ensemble's members, each checked as a one-prompt document; an error names the member."""
    members = document.get("members")
    if not isinstance(members, list) or len(members) < 2 or not all(isinstance(m, dict) for m in members):
        raise UserError(f"{path}: field 'members': expected a list of two or more prompts "
                        f"{{{', '.join(MEMBER_FIELDS)}}}, got {members!r:.200}")
    for position, member in enumerate(members):
        missing = [key for key in MEMBER_FIELDS[1:] if key not in member]
        if missing:
            raise UserError(f"{path}: members[{position}]: missing field(s) {missing}")
        try:
            _check_document({**document, **member}, path)
        except UserError as error:
            raise UserError(str(error).replace(f"{path}: ", f"{path}: members[{position}]: ", 1)) from None


def _check_document(document: dict, path: Path) -> None:
    """The fields a prompt file is read by, with their types: a hand-edited file fails here in one line
    naming the field, not with a KeyError or TypeError while the model loads."""
    def need(ok: bool, field: str, expected: str, value: Any) -> None:
        if not ok:
            raise UserError(f"{path}: field {field!r}: expected {expected}, got {value!r}")

    task = document["task"]
    need(isinstance(task, dict), "task", '{"name", "labels", "num_sentences", "metric", ...}', task)
    need(isinstance(task.get("name"), str) and bool(task["name"].strip()), "task.name", "a task name", task.get("name"))
    labels = task.get("labels")
    need(isinstance(labels, list) and len(labels) >= 2 and all(isinstance(x, str) for x in labels)
         and len(set(labels)) == len(labels), "task.labels", "a list of at least 2 distinct label strings", labels)
    need(task.get("num_sentences") in (1, 2) and not isinstance(task.get("num_sentences"), bool),
         "task.num_sentences", "1 or 2", task.get("num_sentences"))
    need(isinstance(task.get("metric"), str), "task.metric", "a metric name (acc, f1, mcc, pearson)", task.get("metric"))
    need(isinstance(document["backbone"], str) and bool(document["backbone"].strip()), "backbone",
         "a model name or folder", document["backbone"])
    template = document["template"]
    need(isinstance(template, dict) and isinstance(template.get("lmbff"), str), "template",
         '{"lmbff": "<LM-BFF syntax>", "readable": "..."}', template)
    try:
        Template.parse(template["lmbff"]).validate(num_sentences=task["num_sentences"], num_labels=len(labels))
    except UserError as error:
        raise UserError(f"{path}: field 'template.lmbff': {error}") from None
    need(isinstance(document["label_words"], dict), "label_words", "an object label -> word", document["label_words"])
    Verbalizer.from_labels(labels, document["label_words"], task_name=task["name"], source=f"{path}: field 'label_words'")
    section = document["demonstrations"]
    need(isinstance(section, dict) and section.get("mode", "off") in ("off", "random", "filtered"),
         "demonstrations", '{"mode": "off" | "random" | "filtered", ...}', section)
    need(document["fine_tuned_model"] is None or isinstance(document["fine_tuned_model"], str), "fine_tuned_model",
         "a folder name or null", document["fine_tuned_model"])
    need(isinstance(document["found_by"], dict), "found_by", "an object", document["found_by"])


def save_fine_tuned(backbone, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    backbone.model.save_pretrained(folder)
    backbone.tokenizer.save_pretrained(folder)
    return folder
