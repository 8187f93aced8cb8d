"""What `generate` and `labels` start from when the task (a task file) gave no template or label words:
the same start as the search (`search/prompt_origin.py`), and one line saying where it came from."""
from __future__ import annotations

from dataclasses import replace

from ..errors import UserError
from ..tasks import TaskSpec


def template_origin(task: TaskSpec, given: bool) -> str:
    if given:
        return "--template"
    if task.template_source == "manual":
        return "the task's template"
    return f"the generic template (task {task.name} gives none)"


def words_to_generate_around(task: TaskSpec, options, train, backbone) -> tuple[TaskSpec, str]:
    """The task with label words the template generators can place, and where they came from: the task's
    own (a class with several words is generated around its first), words read from the label names when
    each is one token of the backbone, else the best mapping of a label search with the task's template.
    `options`: the SearchOptions the search would run the label search with."""
    from ..search import check_derived_prompt, search_mappings

    if task.label_words_source == "manual":
        lists = " (each class's first word)" if task.first_label_words != task.label_words else ""
        return task, f"label words: the task's {task.label_words}{lists}"
    task = check_derived_prompt(task, 1, "--label-k", backbone.tokenizer)
    if task.label_words_source == "label_names":
        return task, f"label words: from the label names {task.label_words} (task {task.name} gives none)"
    mappings = search_mappings(options, task, train, backbone)
    if not mappings:
        raise UserError(f"--label-k: the label search found no label words for task {task.name}, which has none "
                        "of its own; raise --label-k, pass --mapping, or add label_words to the task file")
    best = dict(mappings[0]["label_words"])
    return (replace(task, label_words=best),
            f"label words: searched with {template_origin(task, False)}, as task {task.name} gives none and its "
            f"label names {list(task.label_names or task.labels)} are no single tokens of the model: {best}")
