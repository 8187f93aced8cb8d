"""`EvaluatorSettings`: everything besides (candidate, seed, budget) that determines an evaluation.
Plain data, free of torch, so options can be parsed and validated before any model library loads."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..training import TrainConfig


@dataclass
class EvaluatorSettings:
    """Everything that determines an evaluation besides (candidate, seed, steps). Hashed into the
    leaderboard's configuration hash, so changing any of it never reuses stale results."""

    task: str
    model: str = "smollm2-135m"
    data_dir: str | None = None
    k: int = 16
    device: str | None = None
    train: dict = field(default_factory=lambda: TrainConfig().to_dict())
    test_at_steps: int | None = None  # score the test set at this budget (the final rung)
    test_limit: int | None = None
    demo_filter_rate: float = 0.5
    demo_inference_samples: int = 4
    demo_encoder: str = "minilm-l6"
    # With demonstrations: overrides of the task's LM-BFF lengths (max_length, first_sent_limit,
    # other_sent_limit; see demonstrations.demo_prompt_settings). Empty: LM-BFF's settings.
    demo_lengths: dict = field(default_factory=dict)
    cache_dir: str | None = None
    task_file: str | None = None  # custom task spec, re-registered in worker processes
