"""Training and evaluation: prompt-based fine-tuning, standard fine-tuning, zero-shot prompting.

Prompt-based fine-tuning is cross-entropy over the label-word scores (LM-BFF); for a regression task
(STS-B) the two label words are the poles of the range and the loss is the KL divergence between
p(high pole) and the rescaled gold score. Evaluation on dev every `eval_every` steps keeps the best
weights in memory, and the test set is scored with those.
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from ..demonstrations import inference_rng
from ..errors import UserError
from .config import TrainConfig
from .encodings import encoding_cache
from .metrics import compute_metrics
from .memory import keep_freed_memory, stop_keeping_if_memory_short
from .optimizer import adamw
from .micro_batches import overhead_tokens_for, plan_micro_batches
from .precision import precision_context, resolve_precision
from .tuning import adapted_projections_in, has_adapters
from ..tasks import Example, TaskSpec
from ..prompts import Prompt

@dataclass
class EvalResult:
    metrics: dict[str, float]
    predictions: list
    scores: np.ndarray  # [N, C] class scores (log-space)
    seconds: float = 0.0
    tokens: int = 0

    @property
    def main(self) -> float:
        return self.metrics["main"]


@dataclass
class TrainResult:
    dev: EvalResult | None
    test: EvalResult | None
    best_step: int
    steps: int
    train_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    seconds_per_step: float = 0.0
    history: list[tuple[int, float]] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)  # the rate each step was taken with
    start_dev: EvalResult | None = None  # dev result of the weights before the first step


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _scores(backbone, encoded, verbalizer) -> torch.Tensor:
    return backbone.class_scores(backbone.collate(encoded), verbalizer)


def _gold_targets(task: TaskSpec, examples: Sequence[Example], device) -> torch.Tensor:
    if task.is_regression:
        low, high = task.regression_range
        return torch.tensor([(float(e.label) - low) / (high - low) for e in examples], device=device)
    return torch.tensor([task.label_index(e.label) for e in examples], device=device)


def prompt_loss(task: TaskSpec, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if task.is_regression:
        log_probs = F.log_softmax(scores.float(), dim=-1)
        target = torch.stack([1 - targets, targets], dim=-1).clamp(1e-6, 1 - 1e-6)
        return F.kl_div(log_probs, target, reduction="batchmean")
    return F.cross_entropy(scores.float(), targets)


def predictions_from_scores(task: TaskSpec, scores: np.ndarray) -> list:
    if task.is_regression:
        low, high = task.regression_range
        probs = torch.softmax(torch.as_tensor(scores), -1)[:, 1].numpy()
        return list(low + (high - low) * probs)
    return [task.labels[i] for i in scores.argmax(1)]


def _encode(backbone, example, prompt: Prompt | None, demos, max_length, *, cached: bool = True):
    """The encoded prompt, from the backbone's bounded cache when the same inputs were encoded before
    (the dev set is encoded once per run, not at every evaluation)."""
    if not cached:
        return _encode_uncached(backbone, example, prompt, demos, max_length)
    if prompt is None:  # classification head
        key = (None, example, max_length)
    else:
        key = (prompt.template, prompt.verbalizer, prompt.sentence_limits, prompt.max_length or max_length, example,
               tuple(demos))
    return encoding_cache(backbone).get(key, lambda: _encode_uncached(backbone, example, prompt, demos, max_length))


def _encode_uncached(backbone, example, prompt: Prompt | None, demos, max_length):
    if prompt is None:
        return backbone.encode(example, max_length=max_length)
    if prompt.sentence_limits is not None:
        example, demos = prompt.sentence_limits.apply(backbone.tokenizer, prompt.template, example, demos)
    return backbone.encode(example, prompt.template, prompt.verbalizer, demos,
                           max_length=prompt.max_length or max_length)


@torch.no_grad()
def evaluate(backbone, task: TaskSpec, prompt: Prompt | None, examples: Sequence[Example], *,
             batch_size: int = 32, max_length: int | None = None, seed: int = 0, desc: str = "eval",
             progress: bool = False, calibration: np.ndarray | None = None, precision: str = "fp32") -> EvalResult:
    """Score every example; with demonstrations, average the class scores (log-softmax) over
    `prompt.inference_samples` demonstration sets drawn deterministically from `seed`. `precision`:
    "fp32", or "bf16" / "auto" for bf16 autocast of the forward passes (scores come back in fp32)."""
    if not examples:
        raise UserError(f"no examples to evaluate for {task.name}")
    was_training = backbone.model.training
    backbone.train(False)
    start = time.perf_counter()
    samples = prompt.inference_samples if prompt is not None and prompt.demonstrations else 1
    total = np.zeros((len(examples), task.num_classes), dtype=np.float64)
    tokens = 0
    for sample in range(samples):
        encoded = []
        for example in examples:
            demos = ()
            if prompt is not None and prompt.demonstrations is not None:
                demos = prompt.demonstrations(example, None, inference_rng(seed, sample, example))
            encoded.append(_encode(backbone, example, prompt, demos, max_length))
        # Sorting by padded length keeps padding (and wasted compute) small; results are put back in order.
        order = sorted(range(len(encoded)), key=lambda i: padded_length(encoded[i]))
        tokens += sum(len(e.input_ids) + sum(len(c) for c in e.continuations) for e in encoded)
        batches = range(0, len(order), batch_size)
        # One autocast context for all batches: autocast keeps the bf16 copy of each weight for the
        # context's lifetime, so the weights are cast once per evaluation, not once per batch.
        with precision_context(precision, backbone.device):
            for offset in tqdm(batches, desc=desc, leave=False, disable=not progress):
                chunk = order[offset:offset + batch_size]
                scores = _scores(backbone, [encoded[i] for i in chunk], prompt.verbalizer if prompt else None)
                scores = torch.log_softmax(scores.float(), -1) if samples > 1 else scores.float()
                total[chunk] += scores.cpu().numpy()
    scores = total / samples
    if calibration is not None:
        scores = scores - calibration
    backbone.train(was_training)
    predictions = predictions_from_scores(task, scores)
    golds = [e.label for e in examples]
    metrics = compute_metrics(task, predictions, golds) if all(g is not None for g in golds) else {}
    if metrics:
        metrics["main"] = metrics[task.metric]
    return EvalResult(metrics, predictions, scores, time.perf_counter() - start, tokens)


@torch.no_grad()
def content_free_calibration(backbone, task: TaskSpec, prompt: Prompt, *, max_length=None) -> np.ndarray:
    """Contextual calibration (Zhao et al., 2021): the class scores for a content-free input ('N/A'),
    in log-softmax space, to subtract from every example's scores."""
    backbone.train(False)
    example = Example(tuple("N/A" for _ in range(task.num_sentences)), None)
    scores = _scores(backbone, [_encode(backbone, example, prompt, (), max_length)], prompt.verbalizer)
    return torch.log_softmax(scores.float(), -1).cpu().numpy()[0]


def padded_length(item) -> int:
    """The row length an item pads its batch to: its input, plus its longest continuation for causal
    models. A label-first template puts the whole sentence in the continuation, so sorting by the
    input alone (a constant prefix there) left batches padded to their longest sentence."""
    return len(item.input_ids) + max((len(c) for c in item.continuations), default=0)


def encoded_length(item) -> int:
    """Tokens a prompt occupies in a padded batch: its input, plus each label word's continuation
    after the first token for causal models."""
    return len(item.input_ids) + sum(max(0, len(c) - 1) for c in item.continuations)


def backward_batch(backbone, task: TaskSpec, prompt: Prompt | None, encoded: Sequence, examples: Sequence[Example], *,
                   precision: str = "fp32", overhead_tokens: float | None | str = "auto",
                   max_tokens: int | None = None) -> float:
    """Accumulate the gradient of the batch's mean loss and return that loss. The batch runs as
    micro-batches of similar length (`plan_micro_batches`; `overhead_tokens=None`: as one batch; "auto":
    priced for the precision, `overhead_tokens_for`), each contributing its summed loss / batch size,
    which adds up to the gradient of the mean. `max_tokens`: the most padded tokens one micro-batch may
    hold (`TrainConfig.micro_batch_tokens`), a bound on the activations kept for the backward pass."""
    verbalizer = prompt.verbalizer if prompt else None
    if overhead_tokens == "auto":
        overhead_tokens = overhead_tokens_for(resolve_precision(precision, backbone.device))
    groups = plan_micro_batches([encoded_length(item) for item in encoded], overhead_tokens, max_tokens)
    total = 0.0
    for group in groups:
        with precision_context(precision, backbone.device):
            scores = _scores(backbone, [encoded[i] for i in group], verbalizer)
        targets = _gold_targets(task, [examples[i] for i in group], scores.device)
        loss = prompt_loss(task, scores, targets) * (len(group) / len(encoded))
        loss.backward()
        total += loss.item()
    return total


def _snapshot(model, initial_state=None):
    """A copy of what training can change: the trainable parameters (frozen weights, e.g. the base
    model under LoRA, cannot change). With `initial_state` (the weights the model holds now: a state
    dict by name, or pretrained weights that can restore themselves, `models.pretrained_weights`), the
    step-0 checkpoint costs no copy: its tensors are taken as they are, or it is the weights object."""
    if initial_state is not None and hasattr(initial_state, "restore"):
        tensors = initial_state.tensors()
        if tensors is None:
            return initial_state
        initial_state = tensors
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if initial_state is not None and all(name in initial_state for name in trainable):
        # A tensor sharing the parameter's memory would follow training, so it is copied after all.
        return {name: initial_state[name] if initial_state[name].data_ptr() != p.data_ptr() else p.detach().clone()
                for name, p in trainable.items()}
    return {name: p.detach().clone() for name, p in trainable.items()}


@torch.no_grad()
def _restore(model, snapshot) -> None:
    if hasattr(snapshot, "restore"):
        snapshot.restore(model)
        return
    parameters = dict(model.named_parameters())
    for name, value in snapshot.items():
        parameters[name].copy_(value)


def fine_tune(backbone, task: TaskSpec, prompt: Prompt | None, train: Sequence[Example],
              dev: Sequence[Example] | None, config: TrainConfig, *, test: Sequence[Example] | None = None,
              progress: bool = True, desc: str = "fine-tune", initial_state=None,
              start_dev: EvalResult | None = None) -> TrainResult:
    """Fine-tune `backbone` in place (prompt-based when `prompt` is given, else through its
    classification head) and return dev/test results of the best checkpoint on dev, the untrained
    model included (`config.eval_at_start`): `best_step` says which step the results came from.
    `initial_state`: the model's weights now, kept by the caller anyway (a state dict, or pretrained weights
    from `models.pretrained_weights`, in memory or on disk), so that the step-0 checkpoint is not copied
    again; never modified.
    `start_dev`: the dev result of the weights as they are now, when the caller already has it (a
    zero-shot evaluation of the same prompt and seed), so that step 0 is not scored again."""
    # Every forward pass in here runs under the precision's autocast, so LoRA's frozen projections can
    # stay in bf16 for the whole run instead of being cast in every pass (tuning.adapted_projections_in).
    low = resolve_precision(config.precision, backbone.device) == "bf16" and has_adapters(backbone.model)
    with adapted_projections_in(backbone.model, torch.bfloat16) if low else contextlib.nullcontext():
        return _fine_tune(backbone, task, prompt, train, dev, config, test=test, progress=progress, desc=desc,
                          initial_state=initial_state, start_dev=start_dev)


def _fine_tune(backbone, task: TaskSpec, prompt: Prompt | None, train: Sequence[Example],
               dev: Sequence[Example] | None, config: TrainConfig, *, test: Sequence[Example] | None,
               progress: bool, desc: str, initial_state, start_dev: EvalResult | None) -> TrainResult:
    config.validate()
    if not train:
        raise UserError(f"no training examples for {task.name}")
    keep_freed_memory()
    set_seed(config.seed)
    rng = random.Random(config.seed)
    model = backbone.model
    precision = config.precision
    optimizer = adamw([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                      weight_decay=config.weight_decay)
    # Linear warmup from 0, then linear decay to 0 (warmup precedes the decay, as in LM-BFF's trainer).
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * config.steps), config.steps)
    learning_rates: list[float] = []
    indices = list(range(len(train)))
    order: list[int] = []
    losses: list[float] = []
    history: list[tuple[int, float]] = []
    best_score, best_step, best_state, best_result = -math.inf, 0, None, None
    eval_kwargs = dict(batch_size=config.eval_batch_size, max_length=config.max_length, seed=config.seed,
                       precision=precision)
    if dev and config.steps == 0:
        best_step = 0
    start = time.perf_counter()
    if dev and config.steps and config.eval_at_start:
        result = start_dev if start_dev is not None else evaluate(backbone, task, prompt, dev, desc="dev", **eval_kwargs)
        start_dev = result
        history.append((0, result.main))
        best_score, best_step, best_result, best_state = result.main, 0, result, _snapshot(model, initial_state)
    train_seconds = 0.0
    backbone.train(True)
    for step in tqdm(range(1, config.steps + 1), desc=desc, leave=False, disable=not progress):
        step_start = time.perf_counter()
        if len(order) < config.batch_size:
            rng.shuffle(indices)
            order.extend(indices)
        batch_indices, order = order[:config.batch_size], order[config.batch_size:]
        examples = [train[i] for i in batch_indices]
        encoded = []
        for i, example in zip(batch_indices, examples):
            demos = ()
            if prompt is not None and prompt.demonstrations is not None:
                demos = prompt.demonstrations(example, i, rng)  # fresh demonstrations every time
            # Fresh demonstrations make every training prompt new: caching them would only evict the dev set.
            encoded.append(_encode(backbone, example, prompt, demos, config.max_length, cached=not demos))
        loss = backward_batch(backbone, task, prompt, encoded, examples, precision=precision,
                              max_tokens=config.micro_batch_tokens)
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        learning_rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        stop_keeping_if_memory_short()  # the kept heap grows within an evaluation too
        losses.append(loss)
        train_seconds += time.perf_counter() - step_start
        if dev and (step % config.eval_every == 0 or step == config.steps):
            result = evaluate(backbone, task, prompt, dev, desc="dev", **eval_kwargs)
            history.append((step, result.main))
            if result.main > best_score:  # ties keep the earlier (less trained) checkpoint
                best_score, best_step, best_result = result.main, step, result
                best_state = None  # freed before the new copy is made
                best_state = _snapshot(model) if step != config.steps else None
            backbone.train(True)
    backbone.train(False)
    del optimizer, scheduler  # the optimizer state (twice the trainable weights) is not needed for testing
    if best_state is not None:
        _restore(model, best_state)
        best_state = None
    # Evaluation is deterministic, so the best checkpoint's dev result is the one already computed.
    dev_result = best_result
    if dev and dev_result is None:
        dev_result = evaluate(backbone, task, prompt, dev, desc="dev", **eval_kwargs)
    test_result = evaluate(backbone, task, prompt, test, desc="test", progress=progress, **eval_kwargs) if test else None
    return TrainResult(dev_result, test_result, best_step if dev else config.steps, config.steps, losses,
                       time.perf_counter() - start, train_seconds / max(1, config.steps), history,
                       learning_rates, start_dev)
