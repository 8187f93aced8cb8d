"""The units of a comparison: one method on one seed's k-shot split, each returning a plain row.

Prompt methods (zero-shot, prompt-based fine-tuning) run through the search's own evaluator, so a prompt is
trained and scored exactly as the search trained and scored it; standard fine-tuning trains a fresh
classification head on the same backbone with the same training settings (steps, learning rate, batch,
best dev checkpoint including step 0).
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from ..data import limit_examples, load_split
from ..search import EvaluatorSettings, PromptEvaluator
from ..training import ensemble_result
from .options import ComparisonOptions


def evaluator_settings(options: ComparisonOptions, task, test_at_steps: int) -> EvaluatorSettings:
    train = options.train_config(seed=options.seeds[0])
    task_file = options.task if str(options.task).endswith(".json") else None
    return EvaluatorSettings(task=options.task, model=options.backbone_name(), data_dir=options.data_dir, k=options.k,
                             device=options.device, train=train.to_dict(), test_at_steps=test_at_steps,
                             test_limit=options.test_limit, task_file=task_file, **options.demonstration_settings())


def prompt_unit(options: ComparisonOptions, task, candidate: Mapping[str, Any], seed: int, steps: int) -> dict[str, Any]:
    """The prompt fine-tuned for `steps` (0: zero-shot) on `seed`'s split, scored on dev and test."""
    evaluator = PromptEvaluator(evaluator_settings(options, task, test_at_steps=steps))
    start = time.perf_counter()
    outcome = evaluator(dict(candidate), seed, steps)
    predictions = outcome.extra.get("predictions", {})
    return {"dev": outcome.dev_metric, "test": outcome.test_metric, "test_metrics": outcome.extra.get("test_metrics"),
            "best_step": outcome.extra.get("best_step", 0), "steps": steps,
            "examples": outcome.extra.get("examples"), "seconds": time.perf_counter() - start,
            **{f"{split}_{part}": _plain(predictions.get(split, {}).get(part)) for split in ("dev", "test")
               for part in ("labels", "scores")}}


def _plain(values):
    """Scores rounded for the JSON file (5 decimals of a log-probability); labels as they are."""
    if values is None:
        return None
    if len(values) == 0 or not isinstance(values[0], (list, tuple, np.ndarray)):
        return list(values)
    return [[round(float(v), 5) for v in row] for row in values]


def standard_unit(options: ComparisonOptions, task, seed: int) -> dict[str, Any]:
    """A classification head on the backbone, fine-tuned on `seed`'s split with the prompt's settings (its own
    steps and learning rate where given)."""
    from ..models import load_classifier
    from ..training import fine_tune, release_freed_memory

    train = load_split(task, "train", data_dir=options.data_dir, k=options.k, seed=seed)
    dev = load_split(task, "dev", data_dir=options.data_dir, k=options.k, seed=seed)
    test = limit_examples(load_split(task, "test", data_dir=options.data_dir, k=options.k, seed=seed),
                          options.test_limit)
    start = time.perf_counter()
    classifier = load_classifier(options.backbone_name(), task.num_classes, device=options.device,
                                 max_length=options.max_length, seed=seed)
    try:
        result = fine_tune(classifier, task, None, train, dev, options.train_config(seed, standard=True), test=test,
                           progress=False,
                           desc=f"standard fine-tuning, seed {seed}")
    finally:
        del classifier
        release_freed_memory()
    return {"dev": result.dev.main, "test": result.test.main, "test_metrics": dict(result.test.metrics),
            "best_step": result.best_step, "steps": options.head_steps,
            "examples": {"dev": len(dev), "test": len(test)}, "seconds": time.perf_counter() - start,
            "dev_labels": [e.label for e in dev], "dev_scores": _plain(result.dev.scores),
            "test_labels": [e.label for e in test], "test_scores": _plain(result.test.scores)}


def ensemble_row(task, members: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The row of an ensemble from its members' rows on one seed: the mean of their class probabilities,
    as the search scores an ensemble."""
    row: dict[str, Any] = {"best_step": None, "steps": members[0]["steps"], "examples": members[0]["examples"],
                           "seconds": sum(m["seconds"] for m in members)}
    for split in ("dev", "test"):
        labels = members[0][f"{split}_labels"]
        result = ensemble_result(task, [np.asarray(m[f"{split}_scores"], dtype=np.float64) for m in members], labels)
        row[split], row[f"{split}_labels"], row[f"{split}_scores"] = result.main, labels, _plain(result.scores)
        if split == "test":
            row["test_metrics"] = dict(result.metrics)
    return row
