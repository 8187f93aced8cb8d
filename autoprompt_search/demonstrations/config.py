"""The `demonstrations` section of a search configuration: parsing, validation and the lengths it sets."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from ..errors import UserError
from ..tasks import TaskSpec
from .checks import is_int, is_number
from .embeddings import DEFAULT_ENCODER
from .lengths import DemoPromptSettings, demo_lengths, demo_prompt_settings

DEMO_MODES = ("off", "random", "filtered")


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
        if not is_number(self.filter_rate) or not 0.0 < self.filter_rate <= 1.0:
            raise UserError(f"{where}.filter_rate: expected a number in (0, 1], got {self.filter_rate!r}")
        if not is_int(self.num_inference_samples) or self.num_inference_samples < 1:
            raise UserError(f"{where}.num_inference_samples: expected a positive integer, "
                            f"got {self.num_inference_samples!r}")
        if not isinstance(self.encoder, str) or not self.encoder.strip():
            raise UserError(f"{where}.encoder: expected a model alias, folder or hub id, got {self.encoder!r}")
        for name in ("max_demo_sentence_tokens", "first_sent_limit"):
            limit = getattr(self, name)
            if limit is not None and (not is_int(limit) or limit < 1):
                raise UserError(f"{where}.{name}: expected a positive integer or null, got {limit!r}")
        if self.max_length is not None and (not is_int(self.max_length) or self.max_length < 8):
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
