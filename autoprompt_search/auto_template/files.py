"""Generated templates on disk: `GeneratedTemplate`, and saving / loading a ranked list of them."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from ..errors import UserError


@dataclass(frozen=True)
class GeneratedTemplate:
    template: str  # LM-BFF syntax, e.g. "*cls**sent_0*_A*mask*_movie.*sep+*"
    readable: str  # e.g. "{cls}{sent_0} A{mask} movie.{sep+}"
    score: float  # the search objective of the candidate (higher is better)
    format: str  # "A", "B" or "pair"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GeneratedTemplate":
        missing = {"template", "readable", "score", "format"} - set(data)
        if missing:
            raise UserError(f"generated template entry {data!r} lacks the fields {sorted(missing)}")
        return cls(str(data["template"]), str(data["readable"]), float(data["score"]), str(data["format"]))


def save_templates(templates: Sequence[GeneratedTemplate], path: str | Path) -> tuple[Path, Path]:
    """Write LM-BFF's format (one template per line) to `path` and the scores to `path` with `.json`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    json_path = path.with_suffix(".json") if path.suffix != ".json" else path.with_suffix(".scores.json")
    path.write_text("".join(t.template + "\n" for t in templates), encoding="utf-8")
    payload = {"templates": [t.to_dict() for t in templates]}
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path, json_path


def load_generated_templates(json_path: str | Path) -> list[GeneratedTemplate]:
    json_path = Path(json_path)
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{json_path}: cannot read generated templates ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("templates"), list):
        raise UserError(f"{json_path}: expected an object with a 'templates' list")
    return [GeneratedTemplate.from_dict(entry) for entry in data["templates"]]
