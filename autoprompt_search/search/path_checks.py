"""Checks of the folders a search reads and writes, before any model loads: a model folder must hold a
model, the output folder must be one the search can create and write."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError


def looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def check_model_folder(name: str, where: str) -> None:
    """A folder given as a model must hold one (config.json, or a GGUF file): transformers would
    otherwise fail deep inside with its own error."""
    path = Path(name).expanduser()
    if looks_like_path(name) and not path.exists():
        raise UserError(f"{where}: model folder {path} does not exist")
    if path.is_dir() and not (path / "config.json").is_file() and not any(path.glob("*.gguf")):
        raise UserError(f"{where}: {path} is not a model folder (no config.json); expected a folder written "
                        "by save_pretrained, a model name such as smollm2-135m, or a hub id")


def check_out_folder(out: Path, where: str) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{where}: {out} is a file; expected an output folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{where}: {existing} is a file, so the output folder {out} cannot be made in it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{where}: the folder {existing} is not writable, so the search cannot write {out}")
    board = out / "leaderboard.sqlite"
    if board.exists() and not os.access(board, os.W_OK):
        raise UserError(f"{where}: {board} is read-only; the search records every evaluation there")
