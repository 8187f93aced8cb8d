"""Task registry: the LM-BFF tasks, their labels, metrics and manual prompts."""
from .registry import (
    Example,
    TaskSpec,
    METRICS,
    task_names,
    get_task,
    register_task,
)

__all__ = [
    'Example',
    'TaskSpec',
    'METRICS',
    'task_names',
    'get_task',
    'register_task',
]
