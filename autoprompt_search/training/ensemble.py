"""`EnsembleClassifier`: several prompts, each a `PromptClassifier` (its own template, label words,
demonstrations and, once fine-tuned, its own weights), whose class probabilities are averaged.

LM-BFF (Gao et al., 2021, section 7) reports that an ensemble of the templates the search found beats
the best single one. The ensemble's class scores are the log of the mean of the members' probabilities
(softmax of each member's log-space class scores), so everything that reads class scores (predictions,
metrics, the continuous dev score, softmax for probabilities) treats it like one classifier. The search
scores an ensemble from its members' stored predictions with the same function (`ensemble_result`).

`load_prompt(path)` reads an exported prompt file and returns whichever of the two it holds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import UserError
from ..prompts import LoadedPrompt, build_ensemble_document, read_document, write_document
from ..tasks import Example, TaskSpec
from .classifier import PROMPT_FILENAME, PromptClassifier, as_example, labelled_predictions
from .metrics import compute_metrics
from .trainer import EvalResult, predictions_from_scores

MEMBER_FOLDER = "member-{index}"


def mean_probability_scores(score_arrays: Sequence[np.ndarray]) -> np.ndarray:
    """[N, C] log of the mean over members of softmax(class scores): the ensemble's class scores."""
    if not score_arrays:
        raise ValueError("an ensemble needs at least one member's scores")
    shapes = {np.shape(scores) for scores in score_arrays}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"ensemble members' scores must share one [N, C] shape, got {sorted(shapes)}")
    stacked = np.stack([np.asarray(scores, dtype=np.float64) for scores in score_arrays])
    shifted = np.exp(stacked - stacked.max(axis=-1, keepdims=True))
    probabilities = (shifted / shifted.sum(axis=-1, keepdims=True)).mean(axis=0)
    with np.errstate(divide="ignore"):
        return np.log(probabilities)


def ensemble_result(task: TaskSpec, score_arrays: Sequence[np.ndarray], golds: Sequence[Any]) -> EvalResult:
    """Predictions and (when every gold label is known) the task's metrics of the averaged probabilities."""
    scores = mean_probability_scores(score_arrays)
    predictions = predictions_from_scores(task, scores)
    metrics = {}
    if len(golds) and all(gold is not None for gold in golds):
        metrics = compute_metrics(task, predictions, list(golds))
        metrics["main"] = metrics[task.metric]
    return EvalResult(metrics, predictions, scores)


class EnsembleClassifier:
    """Prompt classifiers over one task whose class probabilities are averaged, with the surface of
    `PromptClassifier`: evaluate, scores, probabilities, predict, save_pretrained, from_pretrained."""

    def __init__(self, members: Sequence[PromptClassifier], *, candidate_ids: Sequence[str | None] = ()):
        members = list(members)
        if not members:
            raise UserError("an ensemble needs at least one prompt classifier")
        labels = list(members[0].task.labels)
        for position, member in enumerate(members[1:], start=1):
            if list(member.task.labels) != labels:
                raise UserError(f"ensemble member {position}: task labels {list(member.task.labels)} differ from "
                                f"the first member's {labels}")
        self.members = members
        self.task = members[0].task
        self.candidate_ids = list(candidate_ids) or [None] * len(members)

    # -----------------------------------------------------------------------------------------
    # scoring

    def evaluate(self, examples: Sequence[Example], *, batch_size: int = 32, progress: bool = False,
                 desc: str = "eval", **options: Any) -> EvalResult:
        """Each member's class scores, averaged as probabilities; metrics when the examples have labels.
        `options` go to every member's `PromptClassifier.evaluate` (e.g. precision)."""
        results = [member.evaluate(examples, batch_size=batch_size, progress=progress,
                                   desc=f"{desc} ({position + 1}/{len(self.members)})", **options)
                   for position, member in enumerate(self.members)]
        result = ensemble_result(self.task, [r.scores for r in results], [e.label for e in examples])
        result.seconds = sum(r.seconds for r in results)
        result.tokens = sum(r.tokens for r in results)
        return result

    def scores(self, examples: Sequence[Example], *, batch_size: int = 32) -> np.ndarray:
        """[N, C] log of the mean class probabilities."""
        return self.evaluate(examples, batch_size=batch_size).scores

    def probabilities(self, examples: Sequence[Example], *, batch_size: int = 32) -> np.ndarray:
        return np.exp(self.scores(examples, batch_size=batch_size))

    def predict(self, texts: Sequence[Example | str | Sequence[str]], *,
                batch_size: int = 32) -> list[tuple[object, dict[str, float]]]:
        """(label, {label: probability}) per input, as `PromptClassifier.predict`."""
        examples = [as_example(item, self.task) for item in texts]
        return labelled_predictions(self.task, self.probabilities(examples, batch_size=batch_size))

    # -----------------------------------------------------------------------------------------
    # files

    def save_pretrained(self, folder: str | Path, *, backbone_name: str | None = None,
                        document: Mapping[str, Any] | None = None) -> Path:
        """`folder/prompt.json` (the ensemble) and one `folder/member-<i>/` per member (its prompt and
        weights; members sharing one backbone in memory share one folder). `document`: metadata
        (dev/test/found_by, member candidate ids) to keep from an exported ensemble."""
        folder = Path(folder)
        saved: dict[int, str] = {}  # id(backbone) -> the member folder its weights went to
        member_documents = []
        kept = (document or {}).get("members") or []
        for position, member in enumerate(self.members):
            name = saved.get(id(member.backbone))
            if name is None:
                name = MEMBER_FOLDER.format(index=position)
                member.save_pretrained(folder / name, backbone_name=backbone_name)
                saved[id(member.backbone)] = name
            backbone = backbone_name or (document or {}).get("backbone") or getattr(member.backbone, "name", None)
            candidate = self.candidate_ids[position] or (kept[position].get("candidate_id")
                                                         if position < len(kept) else None)
            member_documents.append(member.to_document(backbone or name, fine_tuned_model=name,
                                                       found_by={"candidate_id": candidate}))
        fresh = build_ensemble_document(member_documents, dev={})
        if document is not None:
            fresh = {**document, "schema_version": fresh["schema_version"], "kind": "ensemble",
                     "members": fresh["members"], **{key: None for key in ("template", "label_words",
                                                                            "demonstrations", "fine_tuned_model")}}
        write_document(fresh, folder / PROMPT_FILENAME)
        return folder

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device=None, backbone=None) -> "EnsembleClassifier":
        """From an exported ensemble (`best.json`) or a folder written by `save_pretrained`. A member
        with a fine-tuned model loads it; the others share one pretrained backbone (`backbone` if given)."""
        path = Path(path)
        loaded = read_document(path / PROMPT_FILENAME if path.is_dir() else path)
        if loaded.kind != "ensemble":
            raise UserError(f"{loaded.path}: is one prompt, not an ensemble; load it with load_prompt or "
                            f"PromptClassifier.from_pretrained")
        return cls.from_document(loaded, device=device, backbone=backbone)

    @classmethod
    def from_document(cls, loaded: LoadedPrompt, *, device=None, backbone=None) -> "EnsembleClassifier":
        members, loaded_models = [], {}  # loaded_models: model path -> backbone, each loaded once
        for member in loaded.members():
            key = member.model_path
            shared = loaded_models.get(key) or (backbone if not member.document["fine_tuned_model"] else None)
            classifier = PromptClassifier.from_document(member, device=device, backbone=shared)
            loaded_models.setdefault(key, classifier.backbone)
            members.append(classifier)
        return cls(members, candidate_ids=[m.document.get("candidate_id") for m in loaded.members()])


def load_prompt(path: str | Path, *, device=None, backbone=None) -> PromptClassifier | EnsembleClassifier:
    """The classifier an exported prompt file (or a folder written by `save_pretrained`) holds: a
    `PromptClassifier` for one prompt, an `EnsembleClassifier` for an ensemble."""
    path = Path(path)
    loaded = read_document(path / PROMPT_FILENAME if path.is_dir() else path)
    if loaded.kind == "ensemble":
        return EnsembleClassifier.from_document(loaded, device=device, backbone=backbone)
    return PromptClassifier.from_document(loaded, device=device, backbone=backbone)
