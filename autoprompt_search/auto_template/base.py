"""What the T5 and causal generators share: their settings, the check of the training examples and
label words, one beam search per format, and turning candidates into templates.

Both have a fast `generate` (encoder outputs / prompt prefixes computed once, all beam items decoded in one
batch with a key-value cache, selection with `torch.topk`) and a `reference_generate` that re-runs every
forward from scratch for every beam item and step. Both return the same ranked templates.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from ..errors import UserError
from ..tasks import Example, TaskSpec, first_words, get_task
from ..training import precision_context
from .beam import _Candidate, _beam_search, _select_fast, _select_reference
from .files import GeneratedTemplate
from .formats import (
    _check_formats,
    _span_literal,
    _template_for,
    _validated,
    default_forbidden_token_ids,
    token_texts,
)


def _label_words_of(task: TaskSpec, examples: Sequence[Example], label_words: dict | None) -> list[str]:
    """The label word of every training example (STS-B style regression: the low/high pole by score);
    a class with several words is generated around its first."""
    words = first_words(task.label_words if label_words is None else label_words)
    if not examples:
        raise UserError(f"task {task.name}: template generation needs at least one training example")
    out = []
    for index, example in enumerate(examples):
        if len(example.texts) != task.num_sentences:
            raise UserError(f"training example {index} has {len(example.texts)} sentence(s); task "
                            f"{task.name} expects {task.num_sentences}")
        if example.label is None:
            raise UserError(f"training example {index} has no label; template generation needs gold labels")
        if task.is_regression:
            low, high = task.regression_range
            label = task.labels[0] if float(example.label) < (low + high) / 2 else task.labels[1]
        else:
            label = task.labels[task.label_index(example.label)]
        if label not in words or not str(words[label]).strip():
            raise UserError(f"no label word for label {label!r} of task {task.name}; "
                            f"label_words has {sorted(words)}")
        out.append(str(words[label]).strip())
    return out


def _class_words_of(task: TaskSpec, label_words: dict | None) -> list[str]:
    """Every class's (first) label word, in class order (STS-B style regression: the two poles)."""
    words = first_words(task.label_words if label_words is None else label_words)
    return [str(words.get(label, "")).strip() for label in task.labels]


def _keep_count(task: TaskSpec, beam_width: int, keep_per_format: int | None) -> int:
    if keep_per_format is not None:
        return keep_per_format
    return beam_width if task.num_sentences == 2 else max(1, beam_width // 2)


def _cache_kwargs(model, cache) -> dict:
    """Pass a key-value cache under the name this transformers version uses (`cache` since 5.x)."""
    import inspect

    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return {name: cache, "use_cache": True}


def _chunks(n: int, size: int) -> list[range]:
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


class _GeneratorBase:
    def __init__(self, model, tokenizer, *, beam_width: int, max_steps: int, forbidden_token_ids,
                 chunk_size: int, device, keep_per_format: int | None, max_input_tokens: int,
                 precision: str = "fp32") -> None:
        if beam_width < 1 or max_steps < 1 or chunk_size < 1:
            raise UserError(f"beam_width, max_steps and chunk_size must be >= 1; got {beam_width}, "
                            f"{max_steps}, {chunk_size}")
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.tokenizer = tokenizer
        # "bf16"/"auto": the forward passes under bf16 autocast; scores are summed in fp64 all the same.
        self.precision = precision
        self.beam_width = beam_width
        self.max_steps = max_steps
        self.chunk_size = chunk_size
        self.keep_per_format = keep_per_format
        self.max_input_tokens = max_input_tokens
        self.vocab_size = self._output_vocab_size()
        self.texts = token_texts(tokenizer, self.vocab_size)
        if forbidden_token_ids is None:
            forbidden_token_ids = default_forbidden_token_ids(tokenizer, self.vocab_size)
        self.forbidden_token_ids = frozenset(int(i) for i in forbidden_token_ids)

    def _output_vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    def _forbidden_mask(self, extra: Iterable[int] = ()) -> torch.Tensor:
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        ids = [i for i in (*self.forbidden_token_ids, *extra) if 0 <= i < self.vocab_size]
        mask[ids] = True
        return mask

    def _to_templates(self, task: TaskSpec, fmt: str, candidates: list[_Candidate]) -> list[GeneratedTemplate]:
        out, seen = [], set()
        for cand in candidates:
            span1, span2 = self._spans(cand)
            template = _template_for(fmt, _span_literal(span1, self.texts), _span_literal(span2, self.texts))
            if template in seen:
                continue
            readable = _validated(template, task.num_sentences)
            if readable is None:
                continue
            seen.add(template)
            out.append(GeneratedTemplate(template, readable, float(cand.score), fmt))
        return out[: _keep_count(task, self.beam_width, self.keep_per_format)]

    def _run(self, task, train_examples, label_words, formats, progress, fast: bool) -> list[GeneratedTemplate]:
        task = get_task(task)
        formats = self._formats(task, formats)
        words = _label_words_of(task, train_examples, label_words)
        class_words = _class_words_of(task, label_words)
        results: list[GeneratedTemplate] = []
        with torch.inference_mode(), precision_context(self.precision, self.device):
            for fmt in formats:
                root, advance, rules = self._search_parts(task, train_examples, words, fmt, fast, class_words)
                select = _select_fast if fast else _select_reference
                desc = f"auto-T {fmt}{'' if fast else ' (reference)'}"
                candidates = _beam_search(root, advance, rules, self.beam_width, self.max_steps, select, desc,
                                          progress)
                results.extend(self._to_templates(task, fmt, candidates))
        return results

    def _formats(self, task: TaskSpec, formats: Sequence[str] | None) -> tuple[str, ...]:
        return _check_formats(task, formats)

    def generate(self, task: TaskSpec | str, train_examples: Sequence[Example], label_words: dict | None = None,
                 formats: Sequence[str] | None = None, *, progress: bool = True) -> list[GeneratedTemplate]:
        """Templates for the task, best first within each format (formats in the order given)."""
        return self._run(task, train_examples, label_words, formats, progress, fast=True)

    def reference_generate(self, task: TaskSpec | str, train_examples: Sequence[Example],
                           label_words: dict | None = None, formats: Sequence[str] | None = None, *,
                           progress: bool = True) -> list[GeneratedTemplate]:
        """Same result as `generate`, recomputing every forward from scratch (slow; for checking)."""
        return self._run(task, train_examples, label_words, formats, progress, fast=False)

    def _aggregate(self, logits: torch.Tensor, objective: str) -> torch.Tensor:
        """Per-example next-token logits [B, E, V] -> this chunk's contribution [B, V]."""
        logits = logits.double()
        if objective == "mean_logits":
            return logits.sum(1)
        return torch.log_softmax(logits, dim=-1).sum(1)
