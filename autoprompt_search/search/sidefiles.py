"""JSON side files in an output folder (cached generated templates and label words, the configuration
mirror), safe when several searches share the folder.

A file is written to a temporary file with a name unique to the writer (`mkstemp` in the same folder)
and renamed over the target, so a reader sees the old file or the new one, never half of one, and two
writers never rename each other's temporary file away. A cache file that cannot be read (truncated by a
crash, edited by hand, left by an older version's race) is recomputed with a warning, not a traceback.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from ..textfiles import write_text_atomic

logger = logging.getLogger(__name__)


def write_json_atomic(path: str | os.PathLike[str], value: Any, *, indent: int | None = 2) -> Path:
    """Write `value` as JSON to `path` atomically (see `textfiles.write_text_atomic`)."""
    return write_text_atomic(path, json.dumps(value, indent=indent, ensure_ascii=False))


def read_json(path: str | os.PathLike[str]) -> tuple[Any, str | None]:
    """(value, None), or (None, why) when the file is missing or not valid UTF-8 JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig")), None
    except FileNotFoundError:
        return None, "missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"{type(error).__name__}: {error}"


def cached_json(path: str | os.PathLike[str], key: Mapping[str, Any], compute: Callable[[], Any],
                warn: Callable[[str], None] | None = None) -> Any:
    """The value saved under `path` when it was made with the same `key` settings, else `compute()`
    (saved for next time). An unreadable file is reported through `warn` and recomputed."""
    path = Path(path)
    plain_key = json.loads(json.dumps(key))
    saved, problem = read_json(path)
    if problem is None:
        if isinstance(saved, dict) and "value" in saved and saved.get("key") == plain_key:
            return saved["value"]
        if not (isinstance(saved, dict) and "value" in saved and "key" in saved):
            problem = 'not a {"key": ..., "value": ...} object'
    if problem not in (None, "missing"):
        message = f"warning: {path} cannot be used ({problem}); computing it again"
        (warn or logger.warning)(message)
    value = compute()
    write_json_atomic(path, {"key": key, "value": value})
    return value
