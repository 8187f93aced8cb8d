"""Where the data lives: the LM-BFF data folder (argument, environment, default) and the split names."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..errors import UserError

SPLITS = ("train", "dev", "test")
DATA_DIR_ENV = "AUTOPROMPT_DATA_DIR"


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The LM-BFF data folder: the argument, else $AUTOPROMPT_DATA_DIR, else <project>/../shared/data/lmbff."""
    if data_dir is not None:
        path, source = Path(data_dir), "the data_dir argument (--data-dir)"
    elif os.environ.get(DATA_DIR_ENV):
        path, source = Path(os.environ[DATA_DIR_ENV]), f"${DATA_DIR_ENV}"
    else:
        path, source = project_root().parent / "shared" / "data" / "lmbff", "the default location"
    path = path.expanduser()
    if not path.is_dir():
        raise UserError(
            f"LM-BFF data folder {path} (from {source}) does not exist; point at the folder that holds "
            f"k-shot/ and original/ with --data-dir PATH or the environment variable {DATA_DIR_ENV}"
        )
    return path


def _check_split(split: str, allowed: Sequence[str] = SPLITS) -> None:
    if split not in allowed:
        raise UserError(f"unknown split {split!r}; expected one of {list(allowed)}")
