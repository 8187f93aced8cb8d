"""Demonstration sampling (LM-BFF section 5): which training examples are put in context next to a query.

`DemonstrationSampler`
* `random`: one example per class, in class order, drawn uniformly from that class.
* `filtered`: the same, but each class's draw is restricted to the ceil(filter_rate * n_c) examples of
  that class most similar to the query (cosine of sentence embeddings, SBERT-style; ties broken by the
  lower training index). LM-BFF keeps int(n // num_classes * rate) per class over the whole set; per
  class with a ceiling keeps at least one example for every class, and is the same for balanced k-shot data.
* During training the query is itself a training example: pass `exclude_index` and it is never drawn.
* At inference LM-BFF samples `num_sample` (16) demonstration sets per query and averages the logits;
  `draw_inference_sets(query, n, seed)` gives those sets, seeded from (seed, hash of the query's text)
  so the result does not depend on the order in which queries are processed.
* Regression (STS-B): one example per pole (see classes.py).

`demonstration_fn(sampler)` adapts a sampler to the `Prompt.demonstrations` provider of training.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..errors import UserError
from ..tasks import Example, TaskSpec, get_task
from .classes import class_index, group_by_class
from .config import DemonstrationConfig
from .embeddings import SentenceEncoder, embed_examples
from .rng import RandomSource, query_key, query_rng, uniform_index

QueryEmbeddingsFn = Callable[[Sequence[Example]], np.ndarray]


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
        return [self.train[members[uniform_index(rng, len(members))]] for members in candidates]

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
