"""Options of `search-templates --task ...` and what they choose: the evaluator settings, the
strategy and the executor.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import UserError
from ..training import TrainConfig
from .candidates import DEMO_MODES
from .evaluator import EvaluatorSettings
from .executors import make_executor
from .strategies import Exhaustive, SuccessiveHalving


@dataclass
class SearchOptions:
    """Options of `search-templates --task ...`; also read from a TOML/JSON file (`--config`)."""

    task: str
    model: str = "smollm2-135m"
    generator: str = "auto"  # auto | none | causal | <T5 model name or folder>
    data_dir: str | None = None
    k: int = 16
    seeds: tuple[int, ...] = (13, 21)
    out: str = "runs/search"
    n_templates: int = 4
    beam_width: int = 16
    generator_steps: int | None = None  # decoding steps; None: 18 for T5 (LM-BFF), 10 for a causal generator
    # Which generated templates become candidates: the n_templates best by zero-shot dev metric among
    # all the beam returned ("zero_shot"), or the best by generation score ("score", LM-BFF's order).
    template_screening: str = "zero_shot"
    n_mappings: int = 2
    label_k: int = 20
    template_files: tuple[str, ...] = ()
    mapping_files: tuple[str, ...] = ()
    demonstrations: tuple[str, ...] = ("off",)
    demo_filter_rate: float = 0.5  # filtered: share of each class's examples most similar to the query
    demo_inference_samples: int = 4  # demonstration sets averaged per query (LM-BFF 16; fewer on a CPU)
    demo_encoder: str = "minilm-l6"  # filtered: sentence encoder
    strategy: str = "halving"  # halving | exhaustive
    min_steps: int = 8
    max_steps: int = 32
    eta: float = 3.0
    lr: float = TrainConfig.lr
    batch_size: int = TrainConfig.batch_size
    max_length: int = TrainConfig.max_length
    jobs: int = 1
    backend: str = "loky"  # loky | dask | ray (with --jobs > 1 or a scheduler)
    scheduler: str | None = None
    device: str | None = None
    test: bool = True
    test_limit: int | None = None
    progress: bool = True

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "search options") -> "SearchOptions":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"{source}: unknown field(s) {unknown}; expected some of {sorted(known)}")
        values = dict(values)
        for name in ("seeds", "template_files", "mapping_files", "demonstrations"):
            if name in values and not isinstance(values[name], (list, tuple)):
                raise UserError(f"{source}: field {name!r} must be a list, got {values[name]!r}")
            if name in values:
                values[name] = tuple(values[name])
        options = cls(**values)
        options.validate(source)
        return options

    def validate(self, source: str = "search options") -> None:
        def need(ok: bool, name: str, expected: str):
            if not ok:
                raise UserError(f"{source}: field {name!r} = {getattr(self, name)!r}; expected {expected}")

        need(self.strategy in ("halving", "exhaustive"), "strategy", "'halving' or 'exhaustive'")
        need(self.template_screening in ("zero_shot", "score"), "template_screening", "'zero_shot' or 'score'")
        need(all(m in DEMO_MODES for m in self.demonstrations) and bool(self.demonstrations), "demonstrations",
             f"a non-empty list of {DEMO_MODES}")
        need(isinstance(self.demo_filter_rate, (int, float)) and 0 < self.demo_filter_rate <= 1,
             "demo_filter_rate", "a number in (0, 1]")
        need(isinstance(self.demo_inference_samples, int) and self.demo_inference_samples >= 1,
             "demo_inference_samples", "an integer >= 1")
        need(len(self.seeds) >= 1, "seeds", "at least one seed")
        need(self.n_templates >= 0 and self.n_mappings >= 0, "n_templates", "numbers >= 0")
        need(0 < self.min_steps <= self.max_steps, "min_steps", "1 <= min_steps <= max_steps")
        need(self.jobs >= 1, "jobs", "a number >= 1")
        need(self.backend in ("loky", "dask", "ray", "serial"), "backend", "loky, dask, ray or serial")

    def settings(self) -> EvaluatorSettings:
        train = TrainConfig(steps=self.max_steps, lr=self.lr, batch_size=self.batch_size,
                            max_length=self.max_length, eval_every=max(1, min(TrainConfig.eval_every, self.min_steps)))
        task_file = self.task if self.task.endswith(".json") else None
        return EvaluatorSettings(task=self.task, model=self.model, data_dir=self.data_dir, k=self.k,
                                 device=self.device, train=train.to_dict(),
                                 test_at_steps=self.max_steps if self.test else None, test_limit=self.test_limit,
                                 task_file=task_file, cache_dir=str(Path(self.out) / "cache"),
                                 demo_filter_rate=float(self.demo_filter_rate),
                                 demo_inference_samples=self.demo_inference_samples, demo_encoder=self.demo_encoder)


def make_strategy(options: SearchOptions):
    if options.strategy == "exhaustive":
        return Exhaustive(options.max_steps, tuple(options.seeds))
    return SuccessiveHalving(options.min_steps, options.max_steps, tuple(options.seeds), eta=options.eta,
                             first_rung="zero_shot")


def search_executor(options: SearchOptions):
    """Where evaluations run: this process, local joblib workers, or a cluster. A scheduler address
    means a cluster even without --backend (the default backend, loky, cannot use one)."""
    if options.scheduler and options.backend in ("loky", "serial"):
        if options.backend == "serial":
            raise UserError(f"--scheduler {options.scheduler} needs --backend dask or ray, not serial")
        return make_executor("dask", n_jobs=options.jobs, scheduler_address=options.scheduler)
    if options.backend == "serial" or (options.jobs == 1 and options.scheduler is None):
        return make_executor("serial")
    if options.backend == "loky":
        return make_executor("joblib", n_jobs=options.jobs)
    return make_executor(options.backend, n_jobs=options.jobs, scheduler_address=options.scheduler)
