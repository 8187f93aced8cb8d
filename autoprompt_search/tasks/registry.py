"""Task registry: the 15 LM-BFF tasks, their labels, metrics and manual prompts."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..errors import UserError


@dataclass(frozen=True)
class Example:
    """One input: one sentence or a sentence pair, with its gold label if known."""

    texts: tuple[str, ...]
    label: str | float | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    labels: tuple[str, ...]
    num_sentences: int
    metric: str
    template: str
    # {label: word}; a task file may give a class several words, {label: [words], "_combine": ...}, the
    # mapping `Verbalizer.from_mapping` reads (see prompts/verbalizer.py).
    label_words: dict[str, str | list[str]] = field(hash=False)
    regression_range: tuple[float, float] | None = None
    label_names: tuple[str, ...] = ()
    # Where the prompt came from: "manual" (written by a person), or derived for a task file that gave
    # none: template "generic", label words "label_names" or "search" (placeholders the search replaces).
    template_source: str = "manual"
    label_words_source: str = "manual"

    @property
    def has_manual_prompt(self) -> bool:
        return self.template_source == "manual" and self.label_words_source == "manual"

    @property
    def has_own_prompt(self) -> bool:
        """A prompt of the task's own that the export rule defends: hand-written, or started from its label names
        (generic template, label-name words). Placeholder words that the search replaces are none."""
        return self.label_words_source != "search"

    @property
    def first_label_words(self) -> dict[str, str]:
        """Each class's first label word (label -> word, no "_combine"), for what has room for one word per class."""
        words = first_words(self.label_words)
        return {label: words[label] for label in self.labels}

    @property
    def is_regression(self) -> bool:
        return self.regression_range is not None

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def label_index(self, label: str | float) -> int:
        if self.is_regression:
            raise UserError(f"task {self.name} is a regression task; labels are floats, not classes")
        key = str(label)
        if key not in self.labels:
            raise UserError(
                f"unknown label {label!r} for task {self.name}; expected one of {list(self.labels)}"
            )
        return self.labels.index(key)


def first_words(label_words: Mapping[str, str | Sequence[str]]) -> dict[str, str]:
    """`label_words` with each list of words replaced by its first word (other entries as they are):
    where exactly one word per class fits, such as a generated template's `<X> word <Y>`, a class
    takes the word its list starts with, which is also the word its demonstrations show."""
    return {label: words[0] if isinstance(words, (list, tuple)) and words else words
            for label, words in label_words.items()}


METRICS = ("acc", "f1", "mcc", "pearson")

# Manual templates and label words from the LM-BFF paper (Table 1 / the authors' run scripts).
_SENTIMENT_TEMPLATE = "*cls**sent_0*_It_was*mask*.*sep+*"
_NLI_TEMPLATE = "*cls**sent-_0*?*mask*,*+sentl_1**sep+*"
_PARAPHRASE_TEMPLATE = "*cls**sent_0**mask*,*+sentl_1**sep+*"

_TASKS = [
    TaskSpec("SST-2", ("0", "1"), 1, "acc", _SENTIMENT_TEMPLATE, {"0": "terrible", "1": "great"},
             label_names=("negative", "positive")),
    TaskSpec("SST-5", ("0", "1", "2", "3", "4"), 1, "acc", _SENTIMENT_TEMPLATE,
             {"0": "terrible", "1": "bad", "2": "okay", "3": "good", "4": "great"},
             label_names=("very negative", "negative", "neutral", "positive", "very positive")),
    TaskSpec("MR", ("0", "1"), 1, "acc", _SENTIMENT_TEMPLATE, {"0": "terrible", "1": "great"},
             label_names=("negative", "positive")),
    TaskSpec("CR", ("0", "1"), 1, "acc", _SENTIMENT_TEMPLATE, {"0": "terrible", "1": "great"},
             label_names=("negative", "positive")),
    TaskSpec("MPQA", ("0", "1"), 1, "acc", _SENTIMENT_TEMPLATE, {"0": "terrible", "1": "great"},
             label_names=("negative", "positive")),
    TaskSpec("Subj", ("0", "1"), 1, "acc", "*cls**sent_0*_This_is*mask*.*sep+*",
             {"0": "subjective", "1": "objective"}, label_names=("subjective", "objective")),
    TaskSpec("TREC", ("0", "1", "2", "3", "4", "5"), 1, "acc", "*cls**mask*:*+sent_0**sep+*",
             {"0": "Description", "1": "Entity", "2": "Expression", "3": "Human", "4": "Location",
              "5": "Number"},
             label_names=("description", "entity", "expression", "human", "location", "number")),
    TaskSpec("CoLA", ("0", "1"), 1, "mcc", "*cls**sent_0*_This_is*mask*.*sep+*",
             {"0": "incorrect", "1": "correct"}, label_names=("unacceptable", "acceptable")),
    TaskSpec("MNLI", ("contradiction", "entailment", "neutral"), 2, "acc", _NLI_TEMPLATE,
             {"contradiction": "No", "entailment": "Yes", "neutral": "Maybe"}),
    TaskSpec("SNLI", ("contradiction", "entailment", "neutral"), 2, "acc", _NLI_TEMPLATE,
             {"contradiction": "No", "entailment": "Yes", "neutral": "Maybe"}),
    TaskSpec("QNLI", ("not_entailment", "entailment"), 2, "acc", _NLI_TEMPLATE,
             {"not_entailment": "No", "entailment": "Yes"}),
    TaskSpec("RTE", ("not_entailment", "entailment"), 2, "acc", _NLI_TEMPLATE,
             {"not_entailment": "No", "entailment": "Yes"}),
    TaskSpec("MRPC", ("0", "1"), 2, "f1", _PARAPHRASE_TEMPLATE, {"0": "No", "1": "Yes"}),
    TaskSpec("QQP", ("0", "1"), 2, "f1", _PARAPHRASE_TEMPLATE, {"0": "No", "1": "Yes"}),
    TaskSpec("STS-B", ("0", "1"), 2, "pearson", _PARAPHRASE_TEMPLATE, {"0": "No", "1": "Yes"},
             regression_range=(0.0, 5.0), label_names=("dissimilar", "similar")),
]


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_REGISTRY: dict[str, TaskSpec] = {_normalise(t.name): t for t in _TASKS}


def task_names() -> list[str]:
    return [t.name for t in _TASKS]


def get_task(name: str | TaskSpec) -> TaskSpec:
    """Look a task up by name, ignoring case, dashes and underscores ("sst2", "SST-2", "sst-2")."""
    if isinstance(name, TaskSpec):
        return name
    task = _REGISTRY.get(_normalise(name))
    if task is None:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    return task


def register_task(task: TaskSpec) -> TaskSpec:
    """Add a custom task so that later look-ups by name find it."""
    if task.metric not in METRICS:
        raise UserError(f"task {task.name}: metric must be one of {METRICS}, got {task.metric!r}")
    _REGISTRY[_normalise(task.name)] = task
    return task
