"""Handing freed memory back to the operating system between evaluations.

A search runs hundreds of fine-tuning runs in one process. Each allocates and frees gigabytes of
tensors (gradients, optimiser state, a checkpoint, activations) of a few MB each; glibc serves those
from its heap once the first ones are freed (its mmap threshold adapts upwards) and keeps the freed
pages, fragmented, so the resident set grows from run to run although nothing is kept alive.
`malloc_trim(0)` returns every whole free page; it costs milliseconds, once per evaluation.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim, or None on other C libraries (macOS, musl, Windows)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Collect garbage and return free heap pages to the system; False where the C library cannot."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
