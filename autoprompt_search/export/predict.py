"""Classify new texts with an exported prompt (zero-shot, or with the fine-tuned model saved beside it)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, TextIO

import numpy as np
import torch

from ..errors import UserError
from ..prompts import LoadedPrompt, read_document
from ..tasks import Example, TaskSpec
from ..prompts import Prompt
from ..training import evaluate


def with_exported_demonstrations(loaded: LoadedPrompt, task: TaskSpec, prompt: Prompt, device=None):
    """`prompt` drawing demonstrations from the exported pool as the search did, and its sampler."""
    from ..demonstrations import DemonstrationConfig, DemonstrationSampler, demonstration_fn, with_demonstration_lengths

    section = loaded.document["demonstrations"]
    where = f"{loaded.path}: demonstrations"
    samples = section.get("inference_samples", 4)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise UserError(f"{where}.inference_samples: expected a positive integer, got {samples!r}")
    config = DemonstrationConfig.from_dict({"mode": section.get("mode"), "filter_rate": section.get("filter_rate", 0.5),
                                            "num_inference_samples": samples,
                                            "encoder": section.get("encoder", DemonstrationConfig.encoder)}, where)
    sampler = DemonstrationSampler.from_config(loaded.demonstration_pool(task), task, config, device=device,
                                               show_progress=False)
    prompt = Prompt(prompt.template, prompt.verbalizer, demonstration_fn(sampler),
                    inference_samples=config.num_inference_samples)
    prompt = with_demonstration_lengths(prompt, task, section.get("max_length", 128), section.get("lengths") or {})
    return prompt, sampler


def read_inputs(stream: str | Path | TextIO, num_sentences: int, *, source: str = "input") -> list[Example]:
    """One example per line; a sentence pair is two tab-separated fields. Blank lines are skipped."""
    if isinstance(stream, (str, Path)):
        path = Path(stream)
        if not path.is_file():
            raise UserError(f"input file {path} does not exist")
        lines = path.read_text(encoding="utf-8").splitlines()
    else:
        lines = stream.read().splitlines()
    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split("\t") if num_sentences > 1 else [line]
        if len(fields) != num_sentences:
            raise UserError(f"{source}, line {number}: expected {num_sentences} tab-separated sentences, "
                            f"got {len(fields)}")
        examples.append(Example(tuple(f.strip() for f in fields)))
    if not examples:
        raise UserError(f"{source}: no text to classify")
    return examples


class PromptClassifier:
    """A backbone with a template and label words (and demonstrations, when the prompt has them):
    texts in, labels and probabilities out."""

    def __init__(self, backbone, task: TaskSpec, prompt: Prompt, *, sampler=None, seed: int = 0):
        self.backbone, self.task, self.prompt = backbone, task, prompt
        self.sampler, self.seed = sampler, seed

    @classmethod
    def from_file(cls, path: str | Path, *, device=None) -> "PromptClassifier":
        from ..models import load_backbone

        loaded: LoadedPrompt = read_document(path)
        task = loaded.task()
        prompt, sampler = Prompt(loaded.template(), loaded.verbalizer()), None
        if loaded.demonstration_mode != "off":
            prompt, sampler = with_exported_demonstrations(loaded, task, prompt, device)
        backbone = load_backbone(loaded.model_path, device=device)
        seed = loaded.document["demonstrations"].get("seed") or 0
        return cls(backbone, task, prompt, sampler=sampler, seed=seed)

    def probabilities(self, examples: Sequence[Example], *, batch_size: int = 32) -> np.ndarray:
        if self.sampler is not None:
            self.sampler.prepare_queries(examples)  # filtered mode: embed all queries in one pass
        result = evaluate(self.backbone, self.task, self.prompt, examples, batch_size=batch_size, seed=self.seed)
        return torch.softmax(torch.as_tensor(result.scores), dim=-1).numpy()

    def predict(self, examples: Sequence[Example], *, batch_size: int = 32) -> list[tuple[object, dict[str, float]]]:
        probabilities = self.probabilities(examples, batch_size=batch_size)
        out = []
        for row in probabilities:
            named = {label: float(p) for label, p in zip(self.task.labels, row)}
            if self.task.is_regression:
                low, high = self.task.regression_range
                out.append((low + (high - low) * float(row[1]), named))
            else:
                out.append((self.task.labels[int(row.argmax())], named))
        return out
