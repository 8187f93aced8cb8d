"""The model snapshot cache: a GGUF model converted once, loaded from a plain folder afterwards.

Dequantising a GGUF file and converting its tokenizer took about 40 s of CPU for SmolLM2 and minutes
for Gemma 3 on every command. The converted model and tokenizer are saved with `save_pretrained` under
`cache_root()/<alias>-<sha256 prefix of the GGUF file>/` (a `-tokenizer` folder holds a tokenizer alone,
for commands that need nothing else), and later loads read that folder.

Writes are atomic: a snapshot is converted into a unique temporary folder, its marker file
(`snapshot.json`, listing every file and its size) written last, and the folder renamed into place.
Readers trust only a folder whose marker matches its files, so nobody loads a half-written snapshot;
a process that loses the rename race uses the winner's; a corrupt snapshot is moved aside and rebuilt.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Callable

from .fingerprints import cache_root, file_sha256
from .sources import ModelSource

MARKER = "snapshot.json"
FORMAT = 1
PARTS = ("model", "tokenizer")

Converter = Callable[[ModelSource, Path, str], None]


def _drop_gguf_quantizer(model) -> None:
    """The loaded model is fully dequantised (plain float tensors), but transformers still marks it as a
    GGUF-quantised one and refuses to save it; the marks go, the weights stay as they are."""
    model.hf_quantizer = None
    for attribute in ("is_quantized", "quantization_method"):
        if attribute in model.__dict__:
            delattr(model, attribute)
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")


def convert_gguf(source: ModelSource, folder: Path, part: str) -> None:
    """The default conversion: load from the GGUF file with transformers and save_pretrained."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file).save_pretrained(folder)
    if part == "model":
        model = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file)
        _drop_gguf_quantizer(model)
        model.save_pretrained(folder)


def snapshot_name(source: ModelSource, digest: str, part: str) -> str:
    alias = source.name
    if "/" in alias or os.sep in alias or alias.endswith(".gguf"):
        alias = Path(source.gguf_file or alias).stem
    alias = re.sub(r"[^A-Za-z0-9_.-]+", "-", alias).strip("-.") or "model"
    return f"{alias}-{digest[:16]}" + ("-tokenizer" if part == "tokenizer" else "")


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MARKER}


def is_valid_snapshot(folder: Path) -> bool:
    """A finished snapshot: its marker parses and lists exactly the files present, with their sizes."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        files = marker["files"]
        return marker.get("format") == FORMAT and bool(files) and _listing(folder) == files
    except (OSError, ValueError, KeyError, TypeError):
        return False


def discard_snapshot(folder: Path) -> None:
    """Move a snapshot aside (one rename, so a concurrent reader sees it whole or not at all), then delete it."""
    aside = folder.with_name(f".stale-{folder.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(folder, aside)
    except OSError:  # already gone: another process discarded it
        return
    shutil.rmtree(aside, ignore_errors=True)


def _build(source: ModelSource, target: Path, part: str, digest: str, convert: Converter) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".tmp-{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        convert(source, temporary, part)
        marker = {"format": FORMAT, "source": source.name, "gguf_file": source.gguf_file, "sha256": digest,
                  "part": part, "files": _listing(temporary)}
        try:
            import transformers

            marker["transformers"] = transformers.__version__
        except ImportError:  # pragma: no cover - transformers is a dependency
            pass
        (temporary / MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
        if target.exists() and not is_valid_snapshot(target):
            discard_snapshot(target)
        try:
            os.rename(temporary, target)
        except OSError:
            if not is_valid_snapshot(target):  # not a lost race: something else is in the way
                raise
        return target
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def snapshot(source: ModelSource, part: str = "model", *, convert: Converter | None = None,
             root: Path | None = None) -> Path | None:
    """The snapshot folder of a GGUF source (converted now if missing), or None when the source is no
    GGUF file or the cache is off. part 'model' holds model and tokenizer; 'tokenizer' a tokenizer only,
    and a finished 'model' snapshot serves it too."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not {part!r}")
    root = root if root is not None else cache_root()
    if root is None or not source.gguf_file:
        return None
    digest = file_sha256(Path(source.path) / source.gguf_file, root / ".fingerprints")
    full = root / snapshot_name(source, digest, "model")
    if is_valid_snapshot(full):
        return full
    target = full if part == "model" else root / snapshot_name(source, digest, part)
    if is_valid_snapshot(target):
        return target
    return _build(source, target, part, digest, convert or convert_gguf)


def load_through_snapshot(source: ModelSource, part: str, load: Callable[[ModelSource], object], *,
                          convert: Converter | None = None, root: Path | None = None):
    """load(source) on the snapshot folder of a GGUF source (on the source itself otherwise). A snapshot
    whose files do not load (corrupt bytes of the right size) is discarded and converted again, once."""
    folder = snapshot(source, part, convert=convert, root=root)
    if folder is None:
        return load(source)
    try:
        return load(ModelSource(source.name, str(folder)))
    except Exception:
        discard_snapshot(folder)
        folder = snapshot(source, part, convert=convert, root=root)
        return load(ModelSource(source.name, str(folder)))
