"""Search configurations in the leaderboard: what every config hash stands for, the fingerprint of the
data it ran on, and the `search_config.json` mirror beside the database.

The database is the record (`configs` table): `export` reads a configuration from it. The JSON file is a
mirror for people and older tools, rewritten from the database inside a database write transaction, so
concurrent searches serialize on it and it always holds every configuration. A folder made before the
configurations moved into the database still exports: its entries are read from the JSON file (and
copied into the database the next time a search runs there).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import UserError
from ..tasks import TaskSpec
from .leaderboard import Leaderboard
from .records import canonical_json, sha256_of
from .sidefiles import read_json, write_json_atomic

logger = logging.getLogger(__name__)

CONFIG_MIRROR = "search_config.json"
# Training fields that change how a result is computed but not which (up to rounding), like --jobs: left
# out of the configuration hash, so a search resumed with another value reuses what it stored.
COMPUTE_ONLY_TRAIN_FIELDS = ("micro_batch_tokens",)
# Training fields added after leaderboards existed, with the value every earlier search trained with: left out
# of the hash while they hold it, so those leaderboards still resume; any other value is in the hash.
LATER_TRAIN_FIELDS = {"embeddings": "train"}


def hashed_train_config(train: Mapping[str, Any]) -> dict[str, Any]:
    """The training settings that identify a configuration (`COMPUTE_ONLY_TRAIN_FIELDS` left out, and
    `LATER_TRAIN_FIELDS` at their earlier value)."""
    return {name: value for name, value in train.items() if name not in COMPUTE_ONLY_TRAIN_FIELDS
            and not (name in LATER_TRAIN_FIELDS and value == LATER_TRAIN_FIELDS[name])}


def data_fingerprint(task: TaskSpec, *, data_dir: str | None, k: int, seeds: Sequence[int],
                     splits: Sequence[str] = ("train", "dev", "test")) -> dict[str, Any]:
    """Hashes of the examples a search reads (task labels, and each seed's splits as parsed, so a CRLF
    or BOM copy of a file has the same fingerprint and any changed example a different one)."""
    from ..data import load_split

    hashes = {}
    for seed in seeds:
        for split in splits:
            examples = load_split(task, split, data_dir=data_dir, k=k, seed=seed)
            hashes[f"{seed}/{split}"] = {
                "examples": len(examples),
                "sha256": sha256_of([[list(e.texts), e.label] for e in examples])}
    fingerprint = {"task": {"name": task.name, "labels": list(task.labels), "metric": task.metric,
                            "num_sentences": task.num_sentences},
                   "splits": hashes}
    return {**fingerprint, "sha256": sha256_of(fingerprint)}


def _legacy_configs(folder: Path) -> dict[str, Any]:
    """Entries of a mirror written before the database held configurations ({} if unreadable)."""
    path = folder / CONFIG_MIRROR
    saved, problem = read_json(path)
    if problem == "missing":
        return {}
    if problem is not None or not isinstance(saved, dict):
        logger.warning("%s cannot be read (%s); it is rewritten from %s", path, problem or "not an object",
                       folder / "leaderboard.sqlite")
        return {}
    return {key: value for key, value in saved.items() if isinstance(key, str) and isinstance(value, dict)}


def remember_config(leaderboard: Leaderboard, config_hash: str, config: Mapping[str, Any],
                    fingerprint: Mapping[str, Any] | None = None, *, mirror: bool = True) -> None:
    """Store the configuration (and its data fingerprint) in the database and refresh the mirror.

    A configuration whose stored fingerprint differs from `fingerprint` ran on other data: reusing its
    results would mix two datasets, so this is a UserError naming the first split that changed.
    """
    folder = Path(leaderboard.path).parent
    legacy = _legacy_configs(folder) if mirror else {}
    config = dict(config)
    canonical_json(config)  # a non-JSON value is a UserError here, not in the database
    with leaderboard.transaction() as connection:
        for old_hash, old_config in legacy.items():
            leaderboard.save_config_in(connection, old_hash, old_config)
        before = leaderboard.save_config_in(connection, config_hash, config, fingerprint)
        if before is not None and fingerprint is not None and before.get("sha256") != fingerprint.get("sha256"):
            raise UserError(_changed_data_message(leaderboard, config_hash, before, fingerprint))
        if mirror:
            rows = connection.execute("SELECT config_hash, config_json FROM configs ORDER BY rowid").fetchall()
            write_json_atomic(folder / CONFIG_MIRROR, {row[0]: json.loads(row[1]) for row in rows})


def _changed_data_message(leaderboard: Leaderboard, config_hash: str, before: Mapping[str, Any],
                          now: Mapping[str, Any]) -> str:
    changed = sorted(name for name in set(before.get("splits", {})) | set(now.get("splits", {}))
                     if before.get("splits", {}).get(name) != now.get("splits", {}).get(name))
    what = f"split {changed[0]} (seed/split)" if changed else "task definition"
    return (f"{leaderboard.path}: the data differ from the data configuration {config_hash[:12]} was "
            f"searched on ({what} changed); use a new --out folder, or restore the data")


def stored_config(leaderboard: Leaderboard, config_hash: str) -> dict[str, Any]:
    """The configuration behind `config_hash`: from the database, else from an older folder's mirror."""
    config = leaderboard.config(config_hash)
    if config is not None:
        return config
    path = Path(leaderboard.path).parent / CONFIG_MIRROR
    saved, problem = read_json(path)
    if problem == "missing":
        raise UserError(f"{leaderboard.path} has no configuration {config_hash[:12]} and there is no {path}; "
                        f"rerun the search to store it")
    if problem is not None or not isinstance(saved, dict):
        raise UserError(f"{path}: cannot be read ({problem or 'not a JSON object'}); rerun the search to rewrite it")
    if not isinstance(saved.get(config_hash), dict):
        raise UserError(f"{path} has no configuration {config_hash[:12]}")
    return saved[config_hash]
