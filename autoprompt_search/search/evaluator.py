"""Evaluation by prompt-based fine-tuning. `PromptEvaluator` is the picklable evaluation function
the study calls (in this process, joblib workers or Dask workers): it loads the backbone once per
process and restores the pretrained weights before every evaluation.

Besides the metrics, each evaluation records a continuous dev score (`dev_score`: the mean
log-probability of the gold class; minus the mean squared error for regression), which breaks ties
of the dev metric in the race, and how many dev/test examples each metric was computed on, so a
32-example dev accuracy is reported as what it is.
"""
from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..data import load_task
from ..tasks import Example, TaskSpec
from ..training import (FreedMemoryPolicy, PromptClassifier, TrainConfig, keep_freed_memory, peak_resident_mb,
                        reset_peak_resident, resident_mb, stop_keeping_freed_memory)
from .parallelism import frozen_parameter_count, kept_memory_fits, parameter_count
from .predictions import gold_log_probabilities, predictions_payload
from .records import DEV_SCORE, DEV_SCORE_KIND, EXAMPLES, PREDICTIONS, RESIDENT_MB
from .settings import EvaluatorSettings
from .trial import EvalOutcome, LazyEvaluator

logger = logging.getLogger(__name__)


@dataclass
class _State:
    backbone: Any
    pristine: Any  # models.pretrained_weights; None under LoRA: the base weights never change, so nothing to restore
    task: TaskSpec
    splits: dict = field(default_factory=dict)
    samplers: dict = field(default_factory=dict)
    # Dev results of the pretrained weights per (candidate, seed): a zero-shot rung computes the same
    # result that every later fine-tuning of that candidate and seed scores at step 0.
    start_dev: "OrderedDict[str, Any]" = field(default_factory=OrderedDict)
    # Zero-shot outcomes per (candidate, seed): template screening computes some of the zero-shot rung.
    zero_shot: "OrderedDict[str, EvalOutcome]" = field(default_factory=OrderedDict)
    memory: FreedMemoryPolicy = field(default_factory=FreedMemoryPolicy)
    weights_changed: bool = True  # since the last restore; a zero-shot evaluation changes nothing


START_DEV_ENTRIES = 512  # a few kB each (class scores of a dev split): bounded all the same
ZERO_SHOT_ENTRIES = 512


class PromptEvaluator(LazyEvaluator):
    def __init__(self, settings: EvaluatorSettings, concurrent: int = 1):
        self.settings = settings
        # Evaluations that run at once on this machine (local --jobs): each decides alone whether its freed
        # memory may stay, so each may count on its share of the memory only. Not a setting: it changes
        # how fast a result comes, not the result.
        self.concurrent = max(1, concurrent)

    def state_config(self) -> dict[str, Any]:
        s = self.settings
        return {"model": s.model, "device": s.device, "max_length": s.train.get("max_length", 128),
                "task": s.task, "task_file": s.task_file, "tuning": self._tuning()}

    def load_state(self) -> _State:
        from ..models import load_backbone, quiet_transformers, weights_to_restore

        quiet_transformers()
        keep_freed_memory()  # before the weights load, so that the heap is laid out the same way from the start
        task = load_task(self.settings.task_file or self.settings.task)
        backbone = load_backbone(self.settings.model, device=self.settings.device,
                                 max_length=self.settings.train.get("max_length", 128))
        frozen = frozen_parameter_count(backbone.model, self.settings.train)
        if backbone.device.type == "cpu" and not kept_memory_fits(parameter_count(backbone.model), self._tuning(),
                                                                   sharing=self.concurrent, frozen=frozen):
            logger.info("freed memory is handed back after each step: keeping it would not fit in memory"
                        + (f" shared by {self.concurrent} evaluations at once" if self.concurrent > 1 else ""))
            stop_keeping_freed_memory()
        pristine = None if self._tuning() == "lora" else weights_to_restore(backbone.model)
        return _State(backbone, pristine, task)

    def _tuning(self) -> str:
        return self.settings.train.get("tuning", "full")

    def restore(self, state: _State) -> None:
        """Undo the previous evaluation's fine-tuning: load the pretrained weights, or under LoRA zero
        the adapters' B (the adapted model then computes the base model's function; `fit` re-draws A)."""
        state.weights_changed = False
        if state.pristine is not None:
            state.pristine.restore(state.backbone.model)
            return
        from ..training import has_adapters, reset_adapters

        if has_adapters(state.backbone.model):
            reset_adapters(state.backbone.model, seed=0)

    def split(self, state: _State, split: str, seed: int) -> list[Example]:
        from ..data import limit_examples, load_split

        key = (split, seed)
        if key not in state.splits:
            examples = load_split(state.task, split, data_dir=self.settings.data_dir, k=self.settings.k, seed=seed)
            if split == "test":
                examples = limit_examples(examples, self.settings.test_limit)
            state.splits[key] = examples
        return state.splits[key]

    def sampler(self, state: _State, mode: str, seed: int):
        """The demonstration sampler over this seed's training split (None when mode is "off")."""
        if mode == "off":
            return None
        from ..demonstrations import DemonstrationConfig, DemonstrationSampler

        key = (mode, seed)
        if key not in state.samplers:
            config = DemonstrationConfig(mode=mode, filter_rate=self.settings.demo_filter_rate,
                                         encoder=self.settings.demo_encoder)
            cache = Path(self.settings.cache_dir or Path.home() / ".cache" / "autoprompt_search" / "embeddings")
            state.samplers[key] = DemonstrationSampler.from_config(
                self.split(state, "train", seed), state.task, config, cache_dir=cache, device=self.settings.device,
                show_progress=False)
        return state.samplers[key]

    def classifier_for(self, state: _State, candidate: Mapping[str, Any], seed: int) -> PromptClassifier:
        """The candidate as a classifier over the shared backbone; with demonstrations, drawn from this
        seed's training split and rendered with the demonstration lengths."""
        s = self.settings
        return PromptClassifier.build(
            state.backbone, state.task, candidate["template"], candidate["label_words"],
            sampler=self.sampler(state, candidate.get("demonstrations", "off"), seed),
            inference_samples=s.demo_inference_samples, demo_lengths=s.demo_lengths, filter_rate=s.demo_filter_rate,
            encoder=s.demo_encoder, max_length=s.train.get("max_length", 128), seed=seed,
            source="candidate label_words")

    def evaluate_with(self, state: _State, candidate: Mapping[str, Any], seed: int, steps: int) -> EvalOutcome:
        start_key = json.dumps([candidate, seed], sort_keys=True, default=str)
        if steps == 0 and not self._wants_test(0) and start_key in state.zero_shot:
            state.zero_shot.move_to_end(start_key)
            return state.zero_shot[start_key]
        state.memory.before_evaluation()  # trims what earlier evaluations freed once the resident set has grown
        peak_measured = reset_peak_resident()
        if state.weights_changed:
            self.restore(state)
        train, dev = self.split(state, "train", seed), self.split(state, "dev", seed)
        test = self.split(state, "test", seed) if self._wants_test(steps) else None
        classifier = self.classifier_for(state, candidate, seed)
        config = TrainConfig.from_dict({**self.settings.train, "steps": steps, "seed": seed,
                                        "eval_every": max(1, min(self.settings.train.get("eval_every", 8), steps or 1))})
        if steps == 0:
            if classifier.sampler is not None:  # filtered mode: embed every query in one pass, as training does
                classifier.sampler.prepare_queries([*train, *dev, *(test or [])])
            dev_result = classifier.evaluate(dev, batch_size=config.eval_batch_size, precision=config.precision)
            _remember(state.start_dev, start_key, dev_result)
            test_result = (classifier.evaluate(test, batch_size=config.eval_batch_size, precision=config.precision)
                           if test else None)
            ran = best_step = 0
        else:
            state.weights_changed = True  # before training starts: a failed run leaves them changed too
            # The pristine weights it was just restored to: the step-0 checkpoint needs no copy of its own.
            result = classifier.fit(train, dev, config, test=test, progress=False, initial_state=state.pristine,
                                    start_dev=state.start_dev.get(start_key))
            _remember(state.start_dev, start_key, result.start_dev)
            state.memory.after_training()
            dev_result, test_result, ran, best_step = result.dev, result.test, result.steps, result.best_step
        # best_step: the checkpoint the metrics come from (0 when fine-tuning never beat the start).
        extra = {"dev_metrics": dev_result.metrics, "steps": ran, "best_step": best_step,
                 EXAMPLES: {"dev": len(dev)}}
        kind, score = continuous_score(state.task, dev_result, dev)
        if score is not None:
            extra[DEV_SCORE], extra[DEV_SCORE_KIND] = score, kind
        if test_result is not None:
            extra["test_metrics"] = test_result.metrics
            extra[EXAMPLES]["test"] = len(test)
        # Per-example class scores, stored beside the row, so an ensemble is scored without training again.
        extra[PREDICTIONS] = {split: predictions_payload([e.label for e in examples], result.scores)
                              for split, examples, result in (("dev", dev, dev_result), ("test", test, test_result))
                              if result is not None}
        memory = {"peak": peak_resident_mb() if peak_measured else None, "end": resident_mb()}
        if any(value is not None for value in memory.values()):
            extra[RESIDENT_MB] = {k: round(v) for k, v in memory.items() if v is not None}  # the process, in MB
        outcome = EvalOutcome(dev_result.main, test_result.main if test_result else None, extra)
        if steps == 0 and test_result is None:
            _remember(state.zero_shot, start_key, outcome, ZERO_SHOT_ENTRIES)
        return outcome

    def zero_shot_dev(self, state: _State, candidate: Mapping[str, Any], seed: int) -> float:
        """The zero-shot dev metric of `candidate` on `seed`'s split, as the zero-shot rung computes (and
        then reuses) it: template screening calls this."""
        return self.evaluate_with(state, candidate, seed, 0).dev_metric

    def _wants_test(self, steps: int) -> bool:
        return self.settings.test_at_steps is not None and steps == self.settings.test_at_steps


def _remember(memory: OrderedDict, key: str, result, limit: int = START_DEV_ENTRIES) -> None:
    if result is None:
        return
    memory[key] = result
    memory.move_to_end(key)
    while len(memory) > limit:
        memory.popitem(last=False)


def continuous_score(task: TaskSpec, result: Any, examples: Sequence[Example]) -> tuple[str, float | None]:
    """(kind, value) of the continuous dev score of an `EvalResult` on `examples`, higher is better.

    Classification: the mean over examples of log-softmax(class scores)[gold] ("mean_gold_logprob"),
    which separates candidates that are right equally often by how confidently. Regression: minus
    the mean squared error of the predicted value ("neg_mse"). None when a gold label is unknown or
    the value is not finite.
    """
    if not examples or any(e.label is None for e in examples):
        return ("neg_mse" if task.is_regression else "mean_gold_logprob"), None
    if task.is_regression:
        predicted = np.asarray(result.predictions, dtype=np.float64)
        gold = np.asarray([float(e.label) for e in examples], dtype=np.float64)
        value = -float(np.mean((predicted - gold) ** 2))
        return "neg_mse", value if np.isfinite(value) else None
    value = float(np.mean(gold_log_probabilities(task, result.scores, [e.label for e in examples])))
    return "mean_gold_logprob", value if np.isfinite(value) else None


def fine_tuned_classifier(settings: EvaluatorSettings, candidate: Mapping[str, Any], seed: int,
                          steps: int) -> PromptClassifier:
    """The candidate as a classifier on a fresh backbone, fine-tuned on one seed's split (demonstrations
    included) as the search trained it, for export."""
    evaluator = PromptEvaluator(settings)
    state = evaluator.load_state()
    train, dev = evaluator.split(state, "train", seed), evaluator.split(state, "dev", seed)
    classifier = evaluator.classifier_for(state, candidate, seed)
    if steps:
        config = TrainConfig.from_dict({**settings.train, "steps": steps, "seed": seed})
        classifier.fit(train, dev, config, progress=True, desc="final fine-tune")
    return classifier
