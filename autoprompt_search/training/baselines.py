"""The GPT-3 style in-context baseline: no training, as many random class-balanced demonstrations as
fit untruncated in the prompt (LM-BFF's comparison row)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..demonstrations import RandomSource, class_index, query_key, query_rng, shuffled
from ..errors import UserError
from ..prompts import Prompt, Template
from ..tasks import Example, TaskSpec, get_task
from .trainer import EvalResult, evaluate


def _balanced_order(groups: list[list[int]], rng: np.random.Generator) -> list[int]:
    """Round robin over the classes, each class in its own shuffled order."""
    queues = [shuffled(members, rng) for members in groups]
    order = []
    for position in range(max((len(q) for q in queues), default=0)):
        order.extend(queue[position] for queue in queues if position < len(queue))
    return order


def in_context_demonstrations(query: Example, train: Sequence[Example], max_count: int = 32,
                              fits: Callable[[list[Example]], bool] | None = None, seed: int = 0, *,
                              task: TaskSpec | str | None = None,
                              exclude_index: int | None = None) -> list[Example]:
    """Random, class-balanced demonstrations in a shuffled order, as many as `fits` accepts (up to
    `max_count`). `fits(demos)` says whether the prompt with these demonstrations is short enough; it
    must be monotone (if n demonstrations do not fit, more do not either), as a prompt's length is.

    Classes come from `task` (regression: the two poles); without a task, from the label values.
    """
    if max_count < 0:
        raise UserError(f"in-context max_count must be >= 0, got {max_count}")
    rng = query_rng(seed, query, purpose="in-context")
    pool = [i for i in range(len(train)) if i != exclude_index]
    ordered = _balanced_order(_groups_for_in_context(train, pool, task), rng)[:max_count]
    # A random priority per chosen example fixes the presentation order of every prefix consistently.
    priority = {index: rank for rank, index in enumerate(shuffled(ordered, rng))}

    def first(count: int) -> list[Example]:
        return [train[i] for i in sorted(ordered[:count], key=priority.__getitem__)]

    if fits is None:
        return first(len(ordered))
    # Binary search for the largest count that fits: a handful of length checks instead of up to 32.
    low, high = 0, len(ordered)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(first(middle)):
            low = middle
        else:
            high = middle - 1
    return first(low)


UNBOUNDED_LENGTH = 1 << 30


def prompt_token_count(encoded) -> int:
    """Tokens a backbone runs for one encoded prompt: the input, plus for a causal LM the longest
    label continuation after the prefix."""
    return len(encoded.input_ids) + max((len(c) for c in encoded.continuations), default=0)


class InContextDemonstrations:
    """A `Prompt.demonstrations` provider for the in-context baseline: for each query, as many random
    class-balanced training examples as fit in `max_length` tokens untruncated (up to `max_demos`),
    fixed per (seed, query). `counts` records how many each query got, by query text."""

    def __init__(self, backbone, task: TaskSpec, template: Template, verbalizer, train: Sequence[Example],
                 *, max_demos: int = 32, max_length: int = 512, seed: int = 0):
        self.backbone, self.task, self.template, self.verbalizer = backbone, task, template, verbalizer
        self.train, self.max_demos, self.max_length, self.seed = list(train), max_demos, max_length, seed
        self.counts: dict[str, int] = {}

    def fits(self, query: Example, demos: Sequence[Example]) -> bool:
        pairs = [(demo, class_index(self.task, demo)) for demo in demos]
        encoded = self.backbone.encode(query, self.template, self.verbalizer, pairs, max_length=UNBOUNDED_LENGTH)
        return prompt_token_count(encoded) <= self.max_length

    def __call__(self, query: Example, index: int | None, rng: RandomSource) -> list[tuple[Example, int]]:
        demos = in_context_demonstrations(query, self.train, self.max_demos, lambda d: self.fits(query, d),
                                          self.seed, task=self.task, exclude_index=index)
        self.counts[query_key(query)] = len(demos)
        return [(demo, class_index(self.task, demo)) for demo in demos]


def in_context_prompt(backbone, task: TaskSpec | str, template: Template, verbalizer, train: Sequence[Example], *,
                      max_demos: int = 32, max_length: int = 512, seed: int = 0) -> "Prompt":
    """A `Prompt` whose single demonstration set per query is the in-context baseline's."""
    task = get_task(task)
    provider = InContextDemonstrations(backbone, task, template, verbalizer, train, max_demos=max_demos,
                                       max_length=max_length, seed=seed)
    return Prompt(template, verbalizer, demonstrations=provider, inference_samples=1, max_length=max_length)


def evaluate_in_context(backbone, task: TaskSpec | str, template: Template, verbalizer, train: Sequence[Example],
                        examples: Sequence[Example], max_demos: int = 32, seed: int = 0, *, max_length: int = 512,
                        batch_size: int = 8, progress: bool = False) -> "EvalResult":
    """GPT-3 style in-context learning, no training: each query gets as many random demonstrations
    (up to `max_demos`, LM-BFF's 32) as fit untruncated in `max_length` tokens (LM-BFF: 512), before
    the query for a causal LM and after it for a masked LM (the backbone's block order), one prompt
    per query. Returns the same `EvalResult` as `training.evaluate`."""
    if max_demos < 0:
        raise UserError(f"in-context max_demos must be >= 0, got {max_demos}")
    task = get_task(task)
    prompt = in_context_prompt(backbone, task, template, verbalizer, train, max_demos=max_demos,
                               max_length=max_length, seed=seed)
    return evaluate(backbone, task, prompt, examples, batch_size=batch_size, max_length=max_length, seed=seed,
                    desc="in-context", progress=progress)


def _groups_for_in_context(train: Sequence[Example], pool: list[int], task: TaskSpec | str | None) -> list[list[int]]:
    if task is not None:
        spec = get_task(task)
        groups: list[list[int]] = [[] for _ in range(spec.num_classes)]
        for index in pool:
            groups[class_index(spec, train[index])].append(index)
        return groups
    by_label: dict[str, list[int]] = {}
    for index in pool:
        by_label.setdefault(str(train[index].label), []).append(index)
    return [by_label[label] for label in sorted(by_label)]
