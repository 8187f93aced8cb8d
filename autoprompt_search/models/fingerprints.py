"""Where the model cache lives, and the sha256 of a model file, computed once per file version.

Hashing Gemma 3's 253 MB GGUF file costs about a second on a busy 2-core CPU, on every command if done
each time. The hash is kept in a small sidecar file keyed by the file's absolute path, size and
modification time, so a later start costs one `stat`; a file that changes gets hashed again.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

CACHE_ENV = "AUTOPROMPT_MODEL_CACHE"
_DISABLED = {"off", "0", "false", "no", "none"}


def cache_root() -> Path | None:
    """$AUTOPROMPT_MODEL_CACHE, else ~/.cache/autoprompt_search/models; None when set to 'off'."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in _DISABLED:
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "autoprompt_search" / "models"


def fingerprint_folder() -> Path | None:
    root = cache_root()
    return root / ".fingerprints" if root is not None else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _memo_file(folder: Path, path: Path) -> Path:
    return folder / (hashlib.sha1(str(path).encode("utf-8")).hexdigest() + ".json")


def file_sha256(path: str | os.PathLike, memo_folder: Path | None) -> str:
    """sha256 of `path`, read from `memo_folder` when the file's size and mtime are the remembered ones."""
    path = Path(path).resolve()
    stat = path.stat()
    stamp = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    memo = _memo_file(memo_folder, path) if memo_folder is not None else None
    if memo is not None:
        try:
            saved = json.loads(memo.read_text(encoding="utf-8"))
            if {k: saved.get(k) for k in stamp} == stamp and isinstance(saved.get("sha256"), str):
                return saved["sha256"]
        except (OSError, ValueError):
            pass
    digest = sha256_file(path)
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            temporary = memo.with_name(f".{memo.name}.{uuid.uuid4().hex}")
            temporary.write_text(json.dumps({**stamp, "sha256": digest}), encoding="utf-8")
            os.replace(temporary, memo)
        except OSError:  # a read-only cache still works, it only hashes every time
            pass
    return digest
