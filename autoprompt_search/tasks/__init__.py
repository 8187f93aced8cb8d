"""Task registry: the LM-BFF tasks, their labels, metrics and manual prompts."""
from .registry import (
    Example,
    TaskSpec,
    METRICS,
    task_names,
    get_task,
    register_task,
    first_words,
)
from .generic import GENERIC_TEMPLATES, generic_template, label_words_from_names, readable_label_word

__all__ = [
    'Example',
    'TaskSpec',
    'METRICS',
    'task_names',
    'get_task',
    'register_task',
    'first_words',
    'GENERIC_TEMPLATES',
    'generic_template',
    'label_words_from_names',
    'readable_label_word',
]
