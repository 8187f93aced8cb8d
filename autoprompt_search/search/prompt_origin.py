"""Where each candidate's template and label words came from, and the search's start for a task whose
file gave no prompt (a generic template, label words from the label names, or none: searched words).

`CandidateSources` is what `build_candidates` returns beside the candidates: template (LM-BFF syntax) ->
its sources, as before, plus `label_words`: mapping -> its source, and `task_prompt_words`. candidates.json,
best.json and the final summary say from it whether the winner was written by a person, derived, generated or
searched.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from ..errors import UserError
from ..tasks import TaskSpec
from .records import candidate_id

# How a TaskSpec's label_words_source reads in a candidate's origin.
_WORD_SOURCES = {"manual": "manual", "label_names": "label names"}


def mapping_key(words: Mapping[str, Any]) -> str:
    return json.dumps(dict(words), sort_keys=True, ensure_ascii=False)


class CandidateSources(dict):
    """Template (LM-BFF syntax) -> where it came from (a list: one template can have several sources);
    `.label_words`: mapping key (`mapping_key`) -> where that mapping came from."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.label_words: dict[str, str] = {}
        # The words of the prompt standing for the task's own (kept to the final rung, defended at export);
        # None: the task's words. `--label-synonyms` sets them to the task's words with their synonyms.
        self.task_prompt_words: dict[str, Any] | None = None

    def add_label_words(self, words: Mapping[str, Any], source: str) -> None:
        self.label_words.setdefault(mapping_key(words), source)

    def origin(self, candidate: Mapping[str, Any]) -> dict[str, Any]:
        """{"template_source": [...], "label_words_source": "..."} of one candidate."""
        if "template" not in candidate or "label_words" not in candidate:  # e.g. an ensemble of candidates
            return {}
        return {"template_source": list(self.get(candidate["template"], ["file"])),
                "label_words_source": self.label_words.get(mapping_key(candidate["label_words"]), "file")}


def task_word_source(task: TaskSpec) -> str:
    return _WORD_SOURCES.get(task.label_words_source, task.label_words_source)


def with_origins(candidates, sources: CandidateSources, task_prompt_id: str | None = None) -> list[dict]:
    """candidates.json's entries: each candidate with where its template and words came from, and
    `"task_prompt": true` on the one standing for the task's own prompt (`task_prompt_id`), so that a replay
    of the export rule defends what the search defended (the candidate dict itself, whose hash is its id,
    is not changed)."""
    return [{**candidate, **sources.origin(candidate),
             **({"task_prompt": True} if task_prompt_id and candidate_id(candidate) == task_prompt_id else {})}
            for candidate in candidates]


def describe_start(task: TaskSpec) -> str | None:
    """One line on what the search starts from when the task file gave no prompt; None if it did."""
    if task.has_manual_prompt:
        return None
    template = ("the task's template" if task.template_source == "manual"
                else f"the generic template {task.template}")
    words = {"manual": "the task's label words",
             "label_names": f"label words from the label names {task.label_words}",
             "search": "searched label words (the label names give no one-token words)"}[task.label_words_source]
    return (f"task {task.name} gives no hand-written prompt: starting from {template} and {words}; "
            "generated templates and searched words compete with them")


def placeholder_words(task: TaskSpec) -> TaskSpec:
    """The task with its labels as placeholder words, to be replaced by searched ones."""
    return dataclasses.replace(task, label_words={label: label for label in task.labels}, label_words_source="search")


def check_derived_prompt(task: TaskSpec, n_mappings: int, where_n_mappings: str, tokenizer=None) -> TaskSpec:
    """Before any model loads. Words read from label names that are not one known token of the backbone's
    `tokenizer` are no error: the search finds words instead. With no usable words, the label search
    must run (`n_mappings` >= 1)."""
    from ..prompts import Verbalizer, single_token_ids

    if task.label_words_source == "label_names" and tokenizer is not None:
        try:
            single_token_ids(tokenizer, Verbalizer.for_task(task))
        except UserError:
            task = placeholder_words(task)
    if task.label_words_source == "search" and n_mappings < 1:
        raise UserError(f"{where_n_mappings}: got {n_mappings}, expected an integer >= 1: task {task.name} has no "
                        f"label words and its label names {list(task.label_names or task.labels)} are not words "
                        "the model can score, so the label search must find them (or add label_words to the task file)")
    return task
