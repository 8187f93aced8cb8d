"""`ResultStore`: the comparison's results in one JSON file (`comparison.json` in the output folder), written
again after every unit (one method on one seed), so an interrupted comparison resumes where it stopped.

A unit is reused only under the settings it was made with (task, prompt, backbone, budget, ...; one line
naming the file and the fields that differ otherwise, so nothing stored is overwritten by mistake) and only
for the data it was made on (a seed whose examples changed is run again).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ..errors import UserError
from ..search import read_json, write_json_atomic

FILENAME = "comparison.json"
FORMAT = 1


def unit_key(method: str, seed: int, member: int | None = None) -> str:
    """"prompt/13"; an ensemble's members are trained one by one: "prompt[1]/13"."""
    return f"{method}{'' if member is None else f'[{member}]'}/{seed}"


class ResultStore:
    def __init__(self, folder: str | Path, settings: Mapping[str, Any]):
        self.path = Path(folder) / FILENAME
        self.settings = json.loads(json.dumps(settings))  # as it reads back from the file
        self.units: dict[str, dict[str, Any]] = {}
        saved, problem = read_json(self.path)
        if problem == "missing":
            return
        if problem is not None or not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise UserError(f"{self.path}: cannot be read as a comparison ({problem or 'unknown layout'}); "
                            f"move it away or compare into another --out folder")
        if saved.get("settings") != self.settings:
            stored = saved.get("settings") or {}
            differ = sorted(k for k in {*stored, *self.settings} if stored.get(k) != self.settings.get(k))
            raise UserError(f"{self.path}: holds results made with other settings ({', '.join(differ)}); "
                            f"compare into another --out folder, or remove it to start again")
        self.units = dict(saved.get("units") or {})

    def get(self, key: str, data_hash: str) -> dict[str, Any] | None:
        unit = self.units.get(key)
        return unit if unit is not None and unit.get("data") == data_hash else None

    def put(self, key: str, data_hash: str, row: Mapping[str, Any]) -> None:
        self.units[key] = {**row, "data": data_hash}
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, {"format": FORMAT, "settings": self.settings, "units": self.units}, indent=1)
