"""autoprompt_search: LM-BFF-style automatic prompt (template + label word) search.

The Python API beside the `search-templates` command:

    from autoprompt_search import PromptClassifier, TrainConfig, load_backbone, load_split, load_task

    task = load_task("sst2")                      # a built-in task, or a custom task JSON file
    classifier = PromptClassifier.build(load_backbone("smollm2-135m"), task, task.template, task.label_words)
    classifier.fit(load_split(task, "train"), load_split(task, "dev"), TrainConfig(steps=8))
    classifier.predict(["A gripping film."])      # [(label, {label: probability})]

    from autoprompt_search import Leaderboard, SearchOptions, run_pipeline
    result = run_pipeline(SearchOptions(task="sst2", out="runs/sst2"))   # the whole search; result.best
    Leaderboard("runs/sst2/leaderboard.sqlite").ranking()   # candidates by mean dev metric

Names load on first use, so `import autoprompt_search` stays cheap (no torch until a model is needed).
"""
from __future__ import annotations

import importlib

from .training import ask_for_huge_pages as _ask_for_huge_pages

_ask_for_huge_pages()  # before torch's first CPU allocation, the only time PyTorch reads it (training/memory.py)

__version__ = "0.1.0"

_EXPORTS = {
    # tasks and data
    "Example": "tasks", "TaskSpec": "tasks", "get_task": "tasks", "task_names": "tasks", "register_task": "tasks",
    "load_task": "data", "load_task_spec": "data", "load_split": "data", "resolve_data_dir": "data",
    # prompts and models
    "Template": "prompts", "Verbalizer": "prompts", "Prompt": "prompts",
    "load_backbone": "models",
    # training: the prompt classifier
    "PromptClassifier": "training", "EnsembleClassifier": "training", "load_prompt": "training",
    "TrainConfig": "training", "TrainResult": "training", "EvalResult": "training",
    "fine_tune": "training", "evaluate": "training",
    # the search and its leaderboard
    "SearchOptions": "search", "SearchResult": "search", "Study": "search", "Leaderboard": "search",
    "run_pipeline": "search",
    # prompt-based vs standard fine-tuning on a task
    "ComparisonOptions": "comparison", "run_comparison": "comparison",
    "UserError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'autoprompt_search' has no attribute {name!r}")
    module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
