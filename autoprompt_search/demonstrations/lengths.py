"""Prompt lengths with demonstrations: LM-BFF's per-task length settings and how a prompt gets them.

Length settings (LM-BFF `run_experiment.sh`, `--max_seq_length 128` unless noted):
* `--double_demo` doubles the maximum length when demonstrations are used: MR, SST-5, Subj, TREC, CR,
  MPQA (128 -> 256). MNLI, SNLI and RTE use 256 with or without demonstrations.
* `--first_sent_limit N` cuts the query's first sentence (`sent_0`) to N tokens: 110 for MR, SST-5,
  Subj, TREC, CR, MPQA; 240 for RTE.
* `--other_sent_limit N` cuts every other sentence -- the query's second sentence and all demonstration
  sentences -- to N tokens: 50 for MR, Subj, CR; 20 for SST-5.
* `--num_sample` (inference demonstration sets per query) is 16, but 4 for QQP, MNLI and SNLI, whose
  test sets are large.
`DEMO_LENGTH_DEFAULTS` holds these per task; `demo_lengths(task)` falls back to 128 / no limits / 16.

Integration with training (`training.Prompt`):
* `SentenceLimits` cuts each sentence to N tokens of the backbone's tokenizer before the prompt is
  rendered (the query's `sent_0` to `first`, every other sentence to `other`), measured as the template
  writes the sentence (its leading space and `-` / `l` / `u` modifiers applied). Only sentences are cut:
  the query's mask and the demonstrations' label words are template text and always stay.
* `demo_prompt_settings(task, base_max_length, overrides)` resolves the maximum prompt length and the
  limits for a run with demonstrations; `with_demonstration_lengths(prompt, ...)` puts them on a
  `Prompt`, which `fine_tune`/`evaluate` then use. LM-BFF applies the limits with or without
  demonstrations; here they are used with demonstrations, where they matter.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from ..errors import UserError
from ..tasks import TaskSpec, get_task
from ..prompts import Prompt, SentenceLimits
from .checks import is_int


@dataclass(frozen=True)
class DemoLengths:
    """One task's LM-BFF length settings (see the module docstring)."""

    max_length: int = 128                   # --max_seq_length
    double_demo: bool = False               # doubled when demonstrations are used
    first_sent_limit: int | None = None     # tokens of the query's first sentence
    other_sent_limit: int | None = None     # tokens of every other sentence, demonstrations included
    num_inference_samples: int = 16         # --num_sample

    @property
    def demo_max_length(self) -> int:
        return self.max_length * 2 if self.double_demo else self.max_length


_LONG_SINGLE = dict(double_demo=True, first_sent_limit=110)
DEMO_LENGTH_DEFAULTS: dict[str, DemoLengths] = {
    "SST-2": DemoLengths(),
    "SST-5": DemoLengths(**_LONG_SINGLE, other_sent_limit=20),
    "MR": DemoLengths(**_LONG_SINGLE, other_sent_limit=50),
    "CR": DemoLengths(**_LONG_SINGLE, other_sent_limit=50),
    "MPQA": DemoLengths(**_LONG_SINGLE),
    "Subj": DemoLengths(**_LONG_SINGLE, other_sent_limit=50),
    "TREC": DemoLengths(**_LONG_SINGLE),
    "CoLA": DemoLengths(),
    "MNLI": DemoLengths(max_length=256, num_inference_samples=4),
    "SNLI": DemoLengths(max_length=256, num_inference_samples=4),
    "QNLI": DemoLengths(),
    "RTE": DemoLengths(max_length=256, first_sent_limit=240),
    "MRPC": DemoLengths(),
    "QQP": DemoLengths(num_inference_samples=4),
    "STS-B": DemoLengths(),
}


def demo_lengths(task: TaskSpec | str) -> DemoLengths:
    """LM-BFF's settings for a benchmark task; plain defaults for custom tasks."""
    name = task.name if isinstance(task, TaskSpec) else get_task(task).name
    return DEMO_LENGTH_DEFAULTS.get(name, DemoLengths())


# ---------------------------------------------------------------------------------------------
# prompt lengths with demonstrations


LENGTH_OVERRIDE_FIELDS = ("max_length", "first_sent_limit", "other_sent_limit")


@dataclass(frozen=True)
class DemoPromptSettings:
    """What a prompt with demonstrations is rendered with."""

    max_length: int
    limits: SentenceLimits


def default_demo_max_length(task: TaskSpec | str, base_max_length: int) -> int:
    """LM-BFF's rule: `--double_demo` tasks double the run's length; the tasks it runs at 256 get at least 256."""
    lengths = demo_lengths(task)
    return 2 * base_max_length if lengths.double_demo else max(base_max_length, lengths.max_length)


def demo_prompt_settings(task: TaskSpec | str, base_max_length: int,
                         overrides: Mapping[str, Any] | None = None,
                         where: str = "demonstration lengths") -> DemoPromptSettings:
    """Maximum length and sentence limits for a run with demonstrations: the task's LM-BFF settings
    (`demo_lengths`), with `overrides` taking precedence. Override keys are `max_length`,
    `first_sent_limit` and `other_sent_limit`; a limit of None means no limit."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(LENGTH_OVERRIDE_FIELDS))
    if unknown:
        raise UserError(f"{where}: unknown field(s) {unknown}; known fields: {list(LENGTH_OVERRIDE_FIELDS)}")
    for name, value in overrides.items():
        if value is None and name != "max_length":
            continue
        if not is_int(value) or value < 1 or (name == "max_length" and value < 8):
            expected = "an integer >= 8" if name == "max_length" else "a positive integer or null"
            raise UserError(f"{where}.{name}: expected {expected}, got {value!r}")
    lengths = demo_lengths(task)
    max_length = overrides.get("max_length") or default_demo_max_length(task, base_max_length)
    limits = SentenceLimits(overrides.get("first_sent_limit", lengths.first_sent_limit),
                            overrides.get("other_sent_limit", lengths.other_sent_limit))
    return DemoPromptSettings(max_length, limits)


def with_demonstration_lengths(prompt: "Prompt", task: TaskSpec | str, base_max_length: int,
                               overrides: Mapping[str, Any] | None = None) -> "Prompt":
    """`prompt` with the length settings for demonstrations; unchanged when it has none."""
    if prompt.demonstrations is None:
        return prompt
    settings = demo_prompt_settings(task, base_max_length, overrides)
    return replace(prompt, max_length=settings.max_length, sentence_limits=settings.limits)
