"""The pretrained weights a search restores before every fine-tuning evaluation, held in memory or read
back from the model's own safetensors files.

A copy in memory costs the model's size in resident memory for the whole search (540 MB for SmolLM2 in
fp32), beside the live weights, their gradients and the optimiser state. When the model was loaded from a
local folder of safetensors files (the model cache, a saved model) whose tensors equal the loaded weights,
restoring reads them back from those files instead, one tensor at a time, from the page cache once the
first restore has read them. Anything else (weights loaded from the hub by name, `.bin` files, weights
that differ from the file after loading) keeps the copy in memory.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import BinaryIO, Mapping

import torch

_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


class WeightsInMemory:
    """A detached copy of a state dict."""

    def __init__(self, state: Mapping[str, torch.Tensor]):
        self.state = {name: tensor.detach().clone() for name, tensor in state.items()}

    def restore(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.state)

    def tensors(self) -> Mapping[str, torch.Tensor] | None:
        """The weights by state-dict name, to use without copying (None where they are not in memory)."""
        return self.state


class WeightsOnDisk:
    """State-dict entries read back from safetensors files: {state-dict name: (file, key)}.

    Restoring reads each tensor's bytes straight into the parameter's memory with plain file reads:
    no mapping of the file (whose touched pages would count in the resident set while it is mapped) and
    no temporary tensor, unless the stored dtype or the device differs from the parameter's."""

    def __init__(self, sources: Mapping[str, tuple[Path, str]]):
        self.sources = dict(sources)

    @torch.no_grad()
    def restore(self, model: torch.nn.Module) -> None:
        targets = model.state_dict(keep_vars=True)
        by_file: dict[Path, list[tuple[str, str]]] = {}
        for name, (path, key) in self.sources.items():
            by_file.setdefault(path, []).append((name, key))
        for path, entries in by_file.items():
            with open(path, "rb") as handle:
                header_size, header = _header(handle)
                for name, key in sorted(entries, key=lambda entry: header[entry[1]]["data_offsets"][0]):
                    _read_tensor(handle, 8 + header_size, header[key], targets[name].data)

    def tensors(self) -> None:
        return None


def _header(handle: BinaryIO) -> tuple[int, dict]:
    size = int.from_bytes(handle.read(8), "little")
    return size, json.loads(handle.read(size))


def _read_tensor(handle: BinaryIO, data_start: int, entry: Mapping, target: torch.Tensor) -> None:
    begin, end = entry["data_offsets"]
    dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
    handle.seek(data_start + begin)
    direct = (target.device.type == "cpu" and target.dtype == dtype and target.is_contiguous()
              and sys.byteorder == "little")
    buffer = target if direct else torch.empty(tuple(entry["shape"]), dtype=dtype)
    view = memoryview(buffer.reshape(-1).view(torch.uint8).numpy()) if buffer.numel() else memoryview(bytearray())
    if handle.readinto(view) != end - begin:
        raise OSError(f"{handle.name}: a tensor's bytes end early; the model file changed during the search")
    if not direct:
        target.copy_(buffer)


def _weight_files(model: torch.nn.Module) -> list[Path]:
    folder = Path(str(getattr(model, "name_or_path", "") or ""))
    if not str(folder) or not folder.is_dir():
        return []
    return sorted(folder.glob("*.safetensors"))


@torch.no_grad()
def _sources_matching(model: torch.nn.Module, files: list[Path]) -> dict[str, tuple[Path, str]] | None:
    """Where each state-dict entry is stored with exactly its current value, or None if one is not.
    An entry missing from the files is accepted only when it shares its memory with one that is there
    (a tied output embedding). Read with the same reader that restores, one tensor at a time."""
    state = model.state_dict()
    sources: dict[str, tuple[Path, str]] = {}
    for path in files:
        with open(path, "rb") as handle:
            header_size, header = _header(handle)
            for key, entry in header.items():
                if key not in state or key in sources:
                    continue
                if entry["dtype"] not in _SAFETENSORS_DTYPES or tuple(entry["shape"]) != tuple(state[key].shape):
                    return None
                stored = torch.empty(tuple(entry["shape"]), dtype=_SAFETENSORS_DTYPES[entry["dtype"]])
                _read_tensor(handle, 8 + header_size, entry, stored)
                if not torch.equal(stored.to(state[key].device, state[key].dtype), state[key]):
                    return None
                sources[key] = (path, key)
    pointers = {state[name].data_ptr() for name in sources}
    for name, tensor in state.items():
        if name not in sources and tensor.data_ptr() not in pointers:
            return None
    return sources


def weights_to_restore(model: torch.nn.Module, *, prefer_disk: bool = True) -> WeightsInMemory | WeightsOnDisk:
    """The weights `model` holds now, to restore later: on disk when its folder's safetensors files hold
    exactly these values (checked tensor by tensor, once), else a copy in memory."""
    if prefer_disk:
        files = _weight_files(model)
        sources = _sources_matching(model, files) if files else None
        if sources:
            return WeightsOnDisk(sources)
    return WeightsInMemory(model.state_dict())
