"""Demonstrations (LM-BFF section 5): which training examples are put in context next to a query.

This module only decides WHICH examples; the backbones/template renderer decide how they are laid out
(masked LM: the query block, then one block per class with its label word in place of the mask;
causal LM: the demonstration blocks before the query).

Sampling (`DemonstrationSampler`)
* `random`: one example per class, in class order, drawn uniformly from that class.
* `filtered`: the same, but each class's draw is restricted to the ceil(filter_rate * n_c) examples of
  that class most similar to the query (cosine of sentence embeddings, SBERT-style; ties broken by the
  lower training index). LM-BFF keeps int(n // num_classes * rate) per class over the whole set; per
  class with a ceiling keeps at least one example for every class, and is the same for balanced k-shot data.
* During training the query is itself a training example: pass `exclude_index` and it is never drawn.
* At inference LM-BFF samples `num_sample` (16) demonstration sets per query and averages the logits;
  `draw_inference_sets(query, n, seed)` gives those sets, seeded from (seed, hash of the query's text)
  so the result does not depend on the order in which queries are processed.
* Regression (STS-B): LM-BFF splits the training examples into two poles at the task's "median",
  2.5 for STS-B (score <= 2.5 -> class "0" / low, above -> class "1" / high). We use the midpoint of
  the task's `regression_range` (2.5 for STS-B's 0..5), overridable with `regression_threshold`, and
  draw one example per pole. `class_index(task, example)` tells a renderer which label word a
  demonstration gets.

In-context baseline (`in_context_demonstrations`): GPT-3 style, no training. LM-BFF draws a random
permutation of the training set and keeps the first 32 (`--gpt3_in_context_num 32`), with
the maximum length raised to 512 and the head truncated. Here the draw is class-balanced (round robin
over per-class shuffles), presented in a shuffled order, and grows until a caller-given length check
(`fits`) fails, so nothing needs truncating.

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
* `inference_rng(seed, sample, query)` seeds the demonstration draw of one query's `sample`-th set at
  evaluation from the query's text, so scores do not depend on the order or batching of the queries.
* `evaluate_in_context(...)` is the GPT-3 style baseline built on `in_context_demonstrations`.
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from .embeddings import DEFAULT_ENCODER
from ..errors import UserError
from ..tasks import Example, TaskSpec, get_task
from ..prompts import Prompt, SentenceLimits, Template

DEMO_MODES = ("off", "random", "filtered")
RandomSource = random.Random | np.random.Generator
QueryEmbeddingsFn = Callable[[Sequence[Example]], np.ndarray]


# ---------------------------------------------------------------------------------------------
# LM-BFF length settings


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
        if not _is_int(value) or value < 1 or (name == "max_length" and value < 8):
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


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class DemonstrationConfig:
    """The `demonstrations` section of a search configuration (JSON/TOML)."""

    mode: str = "off"                          # "off" | "random" | "filtered"
    filter_rate: float = 0.5                   # filtered: share of each class kept (most similar first)
    num_inference_samples: int = 16            # demonstration sets averaged per query at inference
    encoder: str = DEFAULT_ENCODER             # filtered: sentence encoder (alias, folder or hub id)
    max_demo_sentence_tokens: int | None = None  # None: the task's LM-BFF other_sent_limit (may be none)
    first_sent_limit: int | None = None        # None: the task's LM-BFF first_sent_limit (may be none)
    max_length: int | None = None              # None: LM-BFF's rule (default_demo_max_length)

    def __post_init__(self) -> None:
        self.validate("demonstrations")

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def validate(self, where: str) -> None:
        if not isinstance(self.mode, str) or self.mode not in DEMO_MODES:
            raise UserError(f"{where}.mode: expected one of {list(DEMO_MODES)}, got {self.mode!r}")
        if not _is_number(self.filter_rate) or not 0.0 < self.filter_rate <= 1.0:
            raise UserError(f"{where}.filter_rate: expected a number in (0, 1], got {self.filter_rate!r}")
        if not _is_int(self.num_inference_samples) or self.num_inference_samples < 1:
            raise UserError(f"{where}.num_inference_samples: expected a positive integer, "
                            f"got {self.num_inference_samples!r}")
        if not isinstance(self.encoder, str) or not self.encoder.strip():
            raise UserError(f"{where}.encoder: expected a model alias, folder or hub id, got {self.encoder!r}")
        for name in ("max_demo_sentence_tokens", "first_sent_limit"):
            limit = getattr(self, name)
            if limit is not None and (not _is_int(limit) or limit < 1):
                raise UserError(f"{where}.{name}: expected a positive integer or null, got {limit!r}")
        if self.max_length is not None and (not _is_int(self.max_length) or self.max_length < 8):
            raise UserError(f"{where}.max_length: expected an integer >= 8 or null, got {self.max_length!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str = "demonstrations") -> "DemonstrationConfig":
        """Parse a config section; `where` names it in errors (e.g. "search.toml: demonstrations")."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise UserError(f"{where}: expected a table/object of settings, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{where}: unknown field(s) {unknown}; known fields: {sorted(known)}")
        values = dict(data)
        if isinstance(values.get("mode"), str):
            values["mode"] = values["mode"].strip().lower()
        if values.get("mode") is False:  # TOML/JSON `mode = false`
            values["mode"] = "off"
        config = object.__new__(cls)
        for f in fields(cls):
            object.__setattr__(config, f.name, values.get(f.name, f.default))
        config.validate(where)
        if isinstance(config.filter_rate, int):
            object.__setattr__(config, "filter_rate", float(config.filter_rate))
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def demo_sentence_limit(self, task: TaskSpec | str) -> int | None:
        """Token limit for each demonstration sentence: the explicit setting, else LM-BFF's for the task."""
        if self.max_demo_sentence_tokens is not None:
            return self.max_demo_sentence_tokens
        return demo_lengths(task).other_sent_limit

    def length_overrides(self) -> dict[str, int]:
        """The length settings this config sets explicitly, for `demo_prompt_settings`."""
        explicit = {"max_length": self.max_length, "first_sent_limit": self.first_sent_limit,
                    "other_sent_limit": self.max_demo_sentence_tokens}
        return {name: value for name, value in explicit.items() if value is not None}

    def prompt_settings(self, task: TaskSpec | str, base_max_length: int) -> DemoPromptSettings:
        return demo_prompt_settings(task, base_max_length, self.length_overrides())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------------------------------------
# classes of demonstrations


def regression_threshold(task: TaskSpec) -> float:
    """Where a regression task splits into its low ("0") and high ("1") poles: the range's midpoint."""
    low, high = task.regression_range  # type: ignore[misc]
    return (low + high) / 2.0


def class_index(task: TaskSpec, example: Example, threshold: float | None = None) -> int:
    """The class a demonstration stands for; for regression the pole (score <= threshold -> 0)."""
    if example.label is None:
        raise UserError(f"task {task.name}: a demonstration needs a label, got an unlabelled example {example.texts!r}")
    if task.is_regression:
        cut = regression_threshold(task) if threshold is None else threshold
        try:
            return 0 if float(example.label) <= cut else 1
        except (TypeError, ValueError):
            raise UserError(f"task {task.name}: expected a numeric score, got {example.label!r}") from None
    return task.label_index(example.label)


def group_by_class(examples: Sequence[Example], task: TaskSpec, threshold: float | None = None) -> list[list[int]]:
    """Indices of the examples of each class, in class order (regression: low pole, high pole)."""
    groups: list[list[int]] = [[] for _ in range(task.num_classes)]
    for index, example in enumerate(examples):
        groups[class_index(task, example, threshold)].append(index)
    return groups


# ---------------------------------------------------------------------------------------------
# randomness


def query_key(query: Example) -> str:
    """A stable identifier of a query's text (labels are not part of it)."""
    return hashlib.sha256("\x1f".join(query.texts).encode("utf-8")).hexdigest()


def query_rng(seed: int, query: Example, purpose: str = "inference") -> np.random.Generator:
    """A generator that depends only on (seed, the query's text, purpose), never on processing order."""
    digest = hashlib.sha256(f"{purpose}\x1e{query_key(query)}".encode("utf-8")).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *words])))


def inference_rng(seed: int, sample: int, query: Example) -> random.Random:
    """The generator for a query's `sample`-th demonstration set at evaluation: a function of
    (seed, sample, the query's text) only, so the set does not depend on which other queries are
    evaluated, in which order or batches."""
    return random.Random(f"{int(seed)}\x1e{int(sample)}\x1e{query_key(query)}")


def _uniform_index(rng: RandomSource, size: int) -> int:
    if isinstance(rng, random.Random):
        return rng.randrange(size)
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(size))
    raise TypeError(f"rng must be random.Random or numpy.random.Generator, got {type(rng).__name__}")


def shuffled(items: Sequence[int], rng: RandomSource) -> list[int]:
    items = list(items)
    for position in range(len(items) - 1, 0, -1):  # Fisher-Yates, with either kind of generator
        other = _uniform_index(rng, position + 1)
        items[position], items[other] = items[other], items[position]
    return items


# ---------------------------------------------------------------------------------------------
# sampler


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def filtered_count(rate: float, size: int) -> int:
    """ceil(rate * size), at least 1, without float noise (0.3 * 10 is 3, not 4)."""
    return max(1, min(size, math.ceil(round(rate * size, 9))))


class DemonstrationSampler:
    """Draws one demonstration per class for a query, randomly or among the most similar examples."""

    def __init__(self, train_examples: Sequence[Example], task: TaskSpec | str, mode: str = "random",
                 filter_rate: float = 0.5, embeddings: np.ndarray | None = None,
                 query_embeddings_fn: QueryEmbeddingsFn | None = None,
                 regression_threshold: float | None = None):
        self.task = get_task(task)
        self.mode = mode
        self.train = list(train_examples)
        self.filter_rate = filter_rate
        self.threshold = regression_threshold
        DemonstrationConfig(mode=mode, filter_rate=filter_rate)  # same validation as a config file
        self.groups = group_by_class(self.train, self.task, regression_threshold) if mode != "off" else []
        self._check_every_class_present()
        self.embeddings = self._checked_embeddings(embeddings) if mode == "filtered" else None
        self.query_embeddings_fn = query_embeddings_fn
        self._query_embeddings: dict[str, np.ndarray] = {}

    @classmethod
    def from_config(cls, train_examples: Sequence[Example], task: TaskSpec | str, config: DemonstrationConfig, *,
                    encoder=None, cache_dir: str | Path | None = None, device=None,
                    show_progress: bool = True) -> "DemonstrationSampler":
        """A sampler for a config; in filtered mode loads the encoder (unless given) and embeds the
        training set through the on-disk cache (no cache when `cache_dir` is None)."""
        if config.mode != "filtered":
            return cls(train_examples, task, config.mode)
        from .embeddings import SentenceEncoder, embed_examples

        if encoder is None:
            encoder = SentenceEncoder(config.encoder, device=device, show_progress=show_progress)
        return cls(train_examples, task, "filtered", config.filter_rate,
                   embeddings=embed_examples(encoder, train_examples, cache_dir),
                   query_embeddings_fn=lambda queries: embed_examples(encoder, queries, cache_dir))

    def _check_every_class_present(self) -> None:
        names = self.task.label_names or self.task.labels
        for label, name, members in zip(self.task.labels, names, self.groups):
            if not members:
                raise UserError(
                    f"task {self.task.name}: demonstrations need at least one training example of every class, "
                    f"but class {label!r} ({name}) has none among the {len(self.train)} training examples"
                )

    def _checked_embeddings(self, embeddings: np.ndarray | None) -> np.ndarray:
        if embeddings is None:
            raise ValueError("filtered demonstrations need the training examples' embeddings")
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(self.train):
            raise ValueError(f"expected embeddings of shape ({len(self.train)}, dim), got {embeddings.shape}")
        return _normalise_rows(embeddings)

    # -- query embeddings -------------------------------------------------------------------------

    def prepare_queries(self, queries: Sequence[Example]) -> None:
        """Embed many queries in one batch (filtered mode), so that later draws need no encoder call."""
        if self.mode != "filtered":
            return
        missing = {query_key(q): q for q in queries if query_key(q) not in self._query_embeddings}
        if missing:
            self.set_query_embeddings(list(missing.values()), self._call_query_fn(list(missing.values())))

    def set_query_embeddings(self, queries: Sequence[Example], embeddings: np.ndarray) -> None:
        embeddings = _normalise_rows(np.asarray(embeddings))
        if embeddings.shape[0] != len(queries):
            raise ValueError(f"{len(queries)} queries but {embeddings.shape[0]} embeddings")
        for query, vector in zip(queries, embeddings):
            self._query_embeddings[query_key(query)] = vector

    def _call_query_fn(self, queries: list[Example]) -> np.ndarray:
        if self.query_embeddings_fn is None:
            raise ValueError("filtered demonstrations for a query outside the training set need "
                             "query_embeddings_fn (or set_query_embeddings first)")
        return np.asarray(self.query_embeddings_fn(queries))

    def _query_embedding(self, query: Example, exclude_index: int | None) -> np.ndarray:
        if exclude_index is not None:
            return self.embeddings[exclude_index]  # type: ignore[index]
        key = query_key(query)
        if key not in self._query_embeddings:
            self.set_query_embeddings([query], self._call_query_fn([query]))
        return self._query_embeddings[key]

    # -- candidates -------------------------------------------------------------------------------

    def similarities(self, query: Example, exclude_index: int | None = None) -> np.ndarray:
        """Cosine similarity of the query to every training example (filtered mode)."""
        if self.embeddings is None:
            raise ValueError("similarities are only available in filtered mode")
        return self.embeddings @ self._query_embedding(query, exclude_index)

    def candidates(self, query: Example, exclude_index: int | None = None) -> list[list[int]]:
        """Per class, the training indices a demonstration may be drawn from."""
        self._check_exclude_index(query, exclude_index)
        groups = [[i for i in members if i != exclude_index] for members in self.groups]
        for label, members in zip(self.task.labels, groups):
            if not members:
                raise UserError(
                    f"task {self.task.name}: class {label!r} has a single training example, the query itself; "
                    f"training with demonstrations needs at least two examples of every class"
                )
        if self.mode != "filtered":
            return groups
        scores = self.similarities(query, exclude_index)
        return [self._most_similar(members, scores) for members in groups]

    def _most_similar(self, members: list[int], scores: np.ndarray) -> list[int]:
        indices = np.asarray(members)
        # lexsort sorts by the last key first: descending similarity, then ascending index.
        order = np.lexsort((indices, -scores[indices]))
        return [int(i) for i in indices[order[:filtered_count(self.filter_rate, len(members))]]]

    def _check_exclude_index(self, query: Example, exclude_index: int | None) -> None:
        if exclude_index is None:
            return
        if not 0 <= exclude_index < len(self.train):
            raise IndexError(f"exclude_index {exclude_index} is outside the {len(self.train)} training examples")
        if self.train[exclude_index].texts != query.texts:
            raise ValueError(f"exclude_index {exclude_index} is not the query: the training example there "
                             f"has different text")

    # -- drawing ----------------------------------------------------------------------------------

    def draw(self, query: Example, rng: RandomSource, exclude_index: int | None = None) -> list[Example]:
        """One demonstration per class, in class order (empty in mode "off")."""
        if self.mode == "off":
            return []
        return self._draw_from(self.candidates(query, exclude_index), rng)

    def _draw_from(self, candidates: list[list[int]], rng: RandomSource) -> list[Example]:
        return [self.train[members[_uniform_index(rng, len(members))]] for members in candidates]

    def draw_inference_sets(self, query: Example, n: int, seed: int,
                            exclude_index: int | None = None) -> list[list[Example]]:
        """`n` demonstration sets for one query, the same for the same (seed, query text) whatever
        else is drawn before or after."""
        if self.mode == "off":
            return [[] for _ in range(n)]
        candidates = self.candidates(query, exclude_index)
        rng = query_rng(seed, query)
        return [self._draw_from(candidates, rng) for _ in range(n)]

    def draw_for_queries(self, queries: Sequence[Example], n: int, seed: int) -> list[list[list[Example]]]:
        """`draw_inference_sets` for many queries, embedding them in one batch first."""
        self.prepare_queries(queries)
        return [self.draw_inference_sets(query, n, seed)
                for query in tqdm(queries, desc="sampling demonstrations", unit="query", disable=len(queries) < 200)]


def demonstration_fn(sampler: DemonstrationSampler):
    """The sampler as the `Prompt.demonstrations` provider of training: (example, class index) pairs,
    never the query itself when it is the training example at `index`."""
    task = sampler.task

    def draw(example: Example, index: int | None, rng: RandomSource) -> list[tuple[Example, int]]:
        return [(demo, class_index(task, demo, sampler.threshold))
                for demo in sampler.draw(example, rng, exclude_index=index)]

    return draw
