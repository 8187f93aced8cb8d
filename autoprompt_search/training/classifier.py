"""`PromptClassifier`: the one object a user holds. A backbone with a template and label words (and a
demonstration pool with its sampler settings, when the prompt has demonstrations): texts in, labels
and probabilities out; `fit` fine-tunes it; `save_pretrained` / `from_pretrained` round-trip it
through a prompt file (and the fine-tuned weights beside it).

Everything that turns a candidate (template, label words, demonstration mode) into something that
scores examples goes through `PromptClassifier.build`: the search's evaluator, `export` and `predict`
use it, so a prompt is scored the same way wherever it is used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..demonstrations import (
    DEFAULT_ENCODER,
    DemonstrationConfig,
    DemonstrationSampler,
    demonstration_fn,
    with_demonstration_lengths,
)
from ..errors import UserError
from ..prompts import (
    LoadedPrompt,
    Prompt,
    Template,
    Verbalizer,
    build_document,
    demonstration_section,
    read_document,
    save_fine_tuned,
    write_document,
)
from ..tasks import Example, TaskSpec
from .config import TrainConfig
from .trainer import EvalResult, TrainResult, evaluate, fine_tune
from .tuning import merged_adapters, prepare_tuning

PROMPT_FILENAME = "prompt.json"
DEFAULT_MAX_LENGTH = 128


class PromptClassifier:
    """backbone + task + `Prompt` (template, verbalizer, demonstrations).

    `max_length` is the prompt length the scores were computed with (the search's `--max-length`);
    a prompt with demonstrations renders at its own LM-BFF length (`prompt.max_length`)."""

    def __init__(self, backbone, task: TaskSpec, prompt: Prompt, *, sampler: DemonstrationSampler | None = None,
                 seed: int = 0, max_length: int | None = None, demo_settings: Mapping[str, Any] | None = None):
        self.backbone, self.task, self.prompt = backbone, task, prompt
        self.sampler, self.seed = sampler, seed
        self.max_length = max_length
        self.demo_settings = dict(demo_settings or {})

    # -----------------------------------------------------------------------------------------
    # assembling

    @classmethod
    def build(cls, backbone, task: TaskSpec, template: Template | str, label_words: Verbalizer | Mapping[str, str], *,
              sampler: DemonstrationSampler | None = None, inference_samples: int = 4,
              demo_lengths: Mapping[str, Any] | None = None, filter_rate: float = 0.5,
              encoder: str = DEFAULT_ENCODER, max_length: int = DEFAULT_MAX_LENGTH, seed: int = 0,
              source: str = "label_words") -> "PromptClassifier":
        """The classifier for one candidate. With a demonstration `sampler` (over the seed's training
        examples), each query gets `inference_samples` demonstration sets, rendered with LM-BFF's
        demonstration lengths (`demo_lengths` overrides them); `filter_rate` and `encoder` describe the
        sampler for the exported prompt."""
        if isinstance(template, str):
            template = Template.parse(template)
        verbalizer = (label_words if isinstance(label_words, Verbalizer)
                      else Verbalizer.from_mapping(task, label_words, source=source))
        demos = demonstration_fn(sampler) if sampler is not None else None
        prompt = Prompt(template, verbalizer, demonstrations=demos, inference_samples=inference_samples if demos else 1)
        prompt = with_demonstration_lengths(prompt, task, max_length, demo_lengths or {})
        settings = {"filter_rate": filter_rate, "inference_samples": inference_samples, "encoder": encoder,
                    "lengths": dict(demo_lengths or {}), "max_length": max_length}
        return cls(backbone, task, prompt, sampler=sampler, seed=seed, max_length=max_length, demo_settings=settings)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device=None, backbone=None) -> "PromptClassifier":
        """From an exported prompt file (`best.json`) or a folder written by `save_pretrained`. The
        backbone is the fine-tuned model saved with it, else the pretrained one the file names (pass
        `backbone` to reuse one already loaded)."""
        path = Path(path)
        if path.is_dir():
            path = path / PROMPT_FILENAME
        loaded = read_document(path)
        if loaded.kind == "ensemble":
            raise UserError(f"{loaded.path}: is an ensemble of {len(loaded.members())} prompts; load it with "
                            f"load_prompt or EnsembleClassifier.from_pretrained")
        return cls.from_document(loaded, device=device, backbone=backbone)

    @classmethod
    def from_document(cls, loaded: LoadedPrompt, *, device=None, backbone=None) -> "PromptClassifier":
        """From a prompt file already read (`read_document`; one prompt, or one member of an ensemble)."""
        task = loaded.task()
        section = loaded.document["demonstrations"]
        max_length = section.get("max_length", DEFAULT_MAX_LENGTH)
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8:
            raise UserError(f"{loaded.path}: demonstrations.max_length: expected an integer >= 8, got {max_length!r}")
        seed = section.get("seed") or 0
        sampler, samples = None, 1
        if loaded.demonstration_mode != "off":
            sampler, samples = _exported_sampler(loaded, task, device)
        if backbone is None:
            from ..models import load_backbone

            backbone = load_backbone(loaded.model_path, device=device, max_length=max_length)
        return cls.build(backbone, task, loaded.template(), loaded.verbalizer(), sampler=sampler,
                         inference_samples=samples, demo_lengths=section.get("lengths") or {},
                         filter_rate=section.get("filter_rate", 0.5), encoder=section.get("encoder", DEFAULT_ENCODER),
                         max_length=max_length, seed=seed)

    def demonstration_section(self) -> dict[str, Any]:
        """The prompt file's "demonstrations": sampler settings, and with demonstrations the pool and seed."""
        mode = self.sampler.mode if self.sampler is not None else "off"
        pool = self.sampler.train if self.sampler is not None else ()
        return demonstration_section(mode, self.demo_settings, pool, self.seed)

    def candidate(self) -> dict[str, Any]:
        return {"template": self.prompt.template.to_lmbff(), "label_words": self.prompt.verbalizer.to_mapping(),
                "demonstrations": self.sampler.mode if self.sampler is not None else "off"}

    def to_document(self, backbone_name: str, *, dev: Mapping[int, float] | None = None,
                    test: Mapping[int, float | None] | None = None, found_by: Mapping[str, Any] | None = None,
                    fine_tuned_model: str | None = None) -> dict:
        return build_document(self.task, backbone_name, self.candidate(), dev=dev or {}, test=test, found_by=found_by,
                              fine_tuned_model=fine_tuned_model, demonstrations=self.demonstration_section())

    def save_pretrained(self, folder: str | Path, *, backbone_name: str | None = None,
                        document: Mapping[str, Any] | None = None) -> Path:
        """Write `folder/prompt.json` and the backbone's weights and tokenizer into `folder`, so that
        `from_pretrained(folder)` gives back a classifier with the same scores. `document`: metadata
        (dev/test/found_by) to keep from an exported prompt."""
        folder = Path(folder)
        with merged_adapters(self.backbone.model):  # a LoRA-tuned backbone is saved as a plain model
            save_fine_tuned(self.backbone, folder)
        name = backbone_name or (document or {}).get("backbone") or getattr(self.backbone, "name", None) or str(folder)
        fresh = self.to_document(name, fine_tuned_model=".")
        if document is not None:
            fresh = {**document, **{k: fresh[k] for k in ("template", "label_words", "demonstrations")},
                     "fine_tuned_model": "."}
        write_document(fresh, folder / PROMPT_FILENAME)
        return folder

    # -----------------------------------------------------------------------------------------
    # scoring

    def evaluate(self, examples: Sequence[Example], *, batch_size: int = 32, progress: bool = False,
                 desc: str = "eval", precision: str = "fp32") -> EvalResult:
        """Class scores, predictions and (when the examples have labels) the task's metrics.
        `precision`: "fp32", "bf16" or "auto" (see TrainConfig.precision)."""
        if self.sampler is not None:
            self.sampler.prepare_queries(list(examples))  # filtered mode: embed all queries in one pass
        return evaluate(self.backbone, self.task, self.prompt, examples, batch_size=batch_size,
                        max_length=self.max_length, seed=self.seed, progress=progress, desc=desc, precision=precision)

    def scores(self, examples: Sequence[Example], *, batch_size: int = 32) -> np.ndarray:
        """[N, C] class scores (log-space; averaged log-softmax over demonstration sets)."""
        return self.evaluate(examples, batch_size=batch_size).scores

    def probabilities(self, examples: Sequence[Example], *, batch_size: int = 32) -> np.ndarray:
        return torch.softmax(torch.as_tensor(self.scores(examples, batch_size=batch_size)), dim=-1).numpy()

    def predict(self, texts: Sequence[Example | str | Sequence[str]], *,
                batch_size: int = 32) -> list[tuple[object, dict[str, float]]]:
        """(label, {label: probability}) per input; an input is an Example, a text, or a sentence pair.
        For a regression task the label is the predicted score."""
        examples = [as_example(item, self.task) for item in texts]
        return labelled_predictions(self.task, self.probabilities(examples, batch_size=batch_size))

    # -----------------------------------------------------------------------------------------
    # training

    def fit(self, train: Sequence[Example], dev: Sequence[Example] | None = None, config: TrainConfig | None = None,
            *, test: Sequence[Example] | None = None, progress: bool = True, desc: str = "fine-tune",
            initial_state=None, start_dev: EvalResult | None = None) -> TrainResult:
        """Prompt-based fine-tuning of the backbone in place; keeps the best dev checkpoint. The
        config's `seed` also seeds the demonstration sets of the dev/test evaluations. With
        `tuning="lora"` only LoRA adapters train, re-initialised from the seed at every fit.
        `initial_state`: the weights the backbone holds now, if the caller keeps them (a state dict or
        `models.pretrained_weights`);
        `start_dev`: their dev result, if already computed (see fine_tune)."""
        config = config or TrainConfig(seed=self.seed, max_length=self.max_length or DEFAULT_MAX_LENGTH)
        config.validate()
        prepare_tuning(self.backbone.model, config)
        if self.sampler is not None:
            self.sampler.prepare_queries([*train, *(dev or []), *(test or [])])
        return fine_tune(self.backbone, self.task, self.prompt, train, dev, config, test=test, progress=progress,
                         desc=desc, initial_state=initial_state, start_dev=start_dev)


def labelled_predictions(task: TaskSpec, probabilities: np.ndarray) -> list[tuple[object, dict[str, float]]]:
    """(label, {label: probability}) per row of class probabilities; for a regression task the label
    is the predicted score between the two poles."""
    out = []
    for row in probabilities:
        named = {label: float(p) for label, p in zip(task.labels, row)}
        if task.is_regression:
            low, high = task.regression_range
            out.append((low + (high - low) * float(row[1]), named))
        else:
            out.append((task.labels[int(row.argmax())], named))
    return out


def as_example(item: Example | str | Sequence[str], task: TaskSpec) -> Example:
    if isinstance(item, Example):
        texts = item.texts
    elif isinstance(item, str):
        texts = (item,)
    else:
        texts = tuple(item)
    if len(texts) != task.num_sentences or not all(isinstance(t, str) for t in texts):
        raise UserError(f"task {task.name} takes {task.num_sentences} sentence(s) per input, got {item!r}")
    return item if isinstance(item, Example) else Example(texts)


def _exported_sampler(loaded: LoadedPrompt, task: TaskSpec, device) -> tuple[DemonstrationSampler, int]:
    """The sampler over the exported pool, as the search built it, and the inference sets per query."""
    section = loaded.document["demonstrations"]
    where = f"{loaded.path}: demonstrations"
    samples = section.get("inference_samples", 4)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise UserError(f"{where}.inference_samples: expected a positive integer, got {samples!r}")
    config = DemonstrationConfig.from_dict({"mode": section.get("mode"), "filter_rate": section.get("filter_rate", 0.5),
                                            "num_inference_samples": samples,
                                            "encoder": section.get("encoder", DEFAULT_ENCODER)}, where)
    sampler = DemonstrationSampler.from_config(loaded.demonstration_pool(task), task, config, device=device,
                                               show_progress=False)
    return sampler, config.num_inference_samples
