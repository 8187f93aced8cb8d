"""`TrainConfig`: the settings of one fine-tuning run, validated field by field. Kept free of torch so
that option parsing (the CLI, `SearchOptions`) can use it without loading a model library."""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

from ..errors import UserError

TUNING_MODES = ("full", "lora")
EMBEDDING_MODES = ("train", "freeze")
PRECISIONS = ("fp32", "bf16", "auto")


@dataclass
class TrainConfig:
    """Defaults sized for a 2-core CPU; the paper's settings are steps=1000, batch_size=8, lr=1e-5,
    eval_every=100, max_length=128 (256 with demonstrations for some tasks)."""

    steps: int = 32
    batch_size: int = 8
    lr: float = 5e-5
    weight_decay: float = 0.0
    eval_every: int = 8
    max_length: int = 128
    eval_batch_size: int = 32
    seed: int = 42
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    # Score dev before the first step too, so that fine-tuning that only hurts returns the model it started from.
    eval_at_start: bool = True
    # "full" trains every weight; "lora" trains only LoRA adapters on the attention/MLP projections
    # (training/tuning.py), with scale lora_alpha / lora_rank.
    tuning: str = "full"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    # Under full tuning, "freeze" keeps the token embeddings (input and output, tied or not) as pretrained.
    # Their gradient is dense over the whole vocabulary (the label words' log-probabilities normalise over
    # it), so a large-vocabulary model spends much of each step on it (Gemma 3 270M: 0.63x the step time and
    # half the memory frozen, but lower accuracy on some splits, results/embeddings_gemma3-270m.md).
    embeddings: str = "train"
    # "bf16": bf16 autocast of the forward passes (training and scoring); "auto": bf16 only where the
    # hardware computes it natively (training/precision.py), else fp32.
    precision: str = "fp32"
    # The most padded tokens a training micro-batch may hold (None: no bound). The gradient is the same
    # (micro_batches.py); a bound trades passes for the activations the backward pass keeps, so that
    # several evaluations fit in a laptop's memory (results/memory_micro_batch_tokens.md).
    micro_batch_tokens: int | None = None

    @classmethod
    def paper(cls, **overrides) -> "TrainConfig":
        return cls(**{**dict(steps=1000, batch_size=8, lr=1e-5, eval_every=100), **overrides})

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "training config") -> "TrainConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(values) - known
        if unknown:
            raise UserError(f"{source}: unknown field(s) {sorted(unknown)}; expected some of {sorted(known)}")
        config = cls(**values)
        config.validate(source)
        return config

    def validate(self, source: str = "training config") -> None:
        """Each field's type and range: a config read from a file with `lr = "1e-5"` or a NaN fails
        here in one line naming the field, not deep inside the optimizer."""
        integer = {"steps": 0, "batch_size": 1, "eval_every": 1, "max_length": 8, "eval_batch_size": 1, "seed": None,
                   "lora_rank": 1}
        for name, low in integer.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (low is not None and value < low):
                expected = "an integer" + (f" >= {low}" if low is not None else "")
                raise UserError(f"{source}: field {name!r} has an invalid value {value!r}; expected {expected}")
        ranges = {"lr": (lambda v: v > 0, "a finite number > 0"),
                  "weight_decay": (lambda v: v >= 0, "a finite number >= 0"),
                  "warmup_ratio": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
                  "max_grad_norm": (lambda v: v > 0, "a finite number > 0"),
                  "lora_alpha": (lambda v: v > 0, "a finite number > 0"),
                  "lora_dropout": (lambda v: 0 <= v < 1, "a number in [0, 1)")}
        tokens = self.micro_batch_tokens
        if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, numbers.Integral) or tokens < 1):
            raise UserError(f"{source}: field 'micro_batch_tokens' has an invalid value {tokens!r}; expected an "
                            "integer >= 1, or null for no bound")
        if self.precision not in PRECISIONS:
            raise UserError(f"{source}: field 'precision' has an invalid value {self.precision!r}; expected one of "
                            f"{', '.join(repr(p) for p in PRECISIONS)}")
        if self.tuning not in TUNING_MODES:
            raise UserError(f"{source}: field 'tuning' has an invalid value {self.tuning!r}; expected one of "
                            f"{', '.join(repr(m) for m in TUNING_MODES)}")
        if self.embeddings not in EMBEDDING_MODES:
            raise UserError(f"{source}: field 'embeddings' has an invalid value {self.embeddings!r}; expected one of "
                            f"{', '.join(repr(m) for m in EMBEDDING_MODES)}")
        if not isinstance(self.eval_at_start, bool):
            raise UserError(f"{source}: field 'eval_at_start' has an invalid value {self.eval_at_start!r}; "
                            "expected true or false")
        for name, (ok, expected) in ranges.items():
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
                    or not ok(value)):
                raise UserError(f"{source}: field {name!r} has an invalid value {value!r}; expected {expected}")

    def to_dict(self) -> dict:
        return asdict(self)
