"""Classify new texts with an exported prompt (zero-shot, or with the fine-tuned model saved beside it)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, TextIO

import numpy as np
import torch

from .errors import UserError
from .prompt_file import LoadedPrompt, read_document
from .tasks import Example, TaskSpec
from .training import Prompt, evaluate


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
    """A backbone with a template and label words: texts in, labels and probabilities out."""

    def __init__(self, backbone, task: TaskSpec, prompt: Prompt):
        self.backbone, self.task, self.prompt = backbone, task, prompt

    @classmethod
    def from_file(cls, path: str | Path, *, device=None) -> "PromptClassifier":
        from .backbones import load_backbone

        loaded: LoadedPrompt = read_document(path)
        if loaded.document["demonstrations"].get("mode", "off") != "off":
            raise UserError(f"{path}: prompts with demonstrations need their training examples; "
                            "predict supports demonstrations 'off' only")
        task = loaded.task()
        backbone = load_backbone(loaded.model_path, device=device)
        return cls(backbone, task, Prompt(loaded.template(), loaded.verbalizer()))

    def probabilities(self, examples: Sequence[Example], *, batch_size: int = 32) -> np.ndarray:
        result = evaluate(self.backbone, self.task, self.prompt, examples, batch_size=batch_size)
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
