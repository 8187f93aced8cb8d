"""How freed tensor memory is handled: kept for the next training step, and handed back to the
operating system between evaluations only when the resident set has grown.

A training step of a 135M-parameter model allocates and frees gigabytes of tensors
(gradients, optimiser temporaries, activations). glibc serves blocks above its mmap threshold (at
most 32 MB, dynamic) with fresh mappings and unmaps them when freed, so every step touches its
memory anew: on this 2-core VM, 6 evaluations of 8 bf16 steps made 4.2-5.4M page faults each and
spent 84 s in the kernel beside 215 s of arithmetic (results/speed_freed_memory.md).
`keep_freed_memory` raises the mmap and trim thresholds so that freed blocks stay in the heap and the
next step reuses them (the same 6 evaluations: 13 s in the kernel, 0.69x the time). The heap then
keeps its high-water mark, which `FreedMemoryPolicy` bounds between evaluations with `malloc_trim`.

The heap's high-water mark can be twice what an evaluation needs (Gemma 3 270M: 19.1 GB against 9.1 GB), so
the search calls `stop_keeping_freed_memory` where that would not fit (search/parallelism.py). That decision is an
estimate made once, when the model loads; on prompts longer than SST-2's the kept heap outgrew it (Gemma on RTE: 19.2,
23.0 and 23.6 GB after three 32-step evaluations on a 24 GB machine, then an out-of-memory kill). So
`stop_keeping_if_memory_short` also hands freed memory back, for the rest of the process, as soon as the memory the
system has left falls below `memory_reserve` (checked after every training step and before every evaluation):
keeping is a speed-up only while the machine has room for it.
AUTOPROMPT_KEEP_FREED_MEMORY=0 restores glibc's defaults and a trim after every evaluation;
AUTOPROMPT_KEPT_BLOCK_MB=N keeps only freed blocks up to N MB (benchmarks/bench_memory_phases.py measures it). Other C
libraries (macOS, musl, Windows) are left alone.

Where the kernel gives transparent huge pages only to memory that asks for them (Linux's `madvise` mode, as on
this VM), PyTorch asks for them for every CPU tensor of 2 MB or more when THP_MEM_ALLOC_ENABLE=1, so such a
tensor's memory faults in 2 MB at a time instead of 4 KB. `ask_for_huge_pages` sets that default; PyTorch
reads it at its first CPU allocation, so importing this package calls it, before any model loads.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import sys
from functools import lru_cache
from typing import Callable

logger = logging.getLogger(__name__)

KEEP_FREED_VARIABLE = "AUTOPROMPT_KEEP_FREED_MEMORY"
HUGE_PAGES_VARIABLE = "THP_MEM_ALLOC_ENABLE"  # PyTorch's own switch, read once at its first CPU allocation
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
_MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap: every tensor of a step this size of model
KEPT_BLOCK_VARIABLE = "AUTOPROMPT_KEPT_BLOCK_MB"  # a smaller bound on the blocks kept (benchmarks)
_TRIM_THRESHOLD = (1 << 31) - 1  # the largest int: glibc never trims on its own; FreedMemoryPolicy decides


@lru_cache(maxsize=1)
def _libc():
    """glibc, or None on other C libraries."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        library = ctypes.CDLL(name)
        library.malloc_trim, library.mallopt  # noqa: B018  (both exist only in glibc)
    except (OSError, AttributeError):
        return None
    return library


def ask_for_huge_pages() -> bool:
    """On Linux, set THP_MEM_ALLOC_ENABLE=1 unless it is set already (a user's 0 stays). True when it is 1 now.
    Without effect where PyTorch has already allocated CPU memory in this process."""
    if not sys.platform.startswith("linux"):
        return False
    return os.environ.setdefault(HUGE_PAGES_VARIABLE, "1") == "1"


def keeping_enabled() -> bool:
    return os.environ.get(KEEP_FREED_VARIABLE, "").strip() != "0"


def kept_block_bytes() -> int:
    """The largest freed block kept in the heap: `_MMAP_THRESHOLD`, or AUTOPROMPT_KEPT_BLOCK_MB megabytes
    (1 to 1024) where set; larger blocks are mapped afresh and handed back when freed."""
    value = os.environ.get(KEPT_BLOCK_VARIABLE, "").strip()
    if not value:
        return _MMAP_THRESHOLD
    if not value.isdigit() or not 1 <= int(value) <= _MMAP_THRESHOLD >> 20:
        raise ValueError(f"{KEPT_BLOCK_VARIABLE}={value!r}: expected a whole number of MB from 1 to "
                         f"{_MMAP_THRESHOLD >> 20}")
    return int(value) << 20


_GLIBC_DEFAULT_THRESHOLD = 128 * 1024  # glibc's initial mmap and trim thresholds
_state = {"kept": False, "stopped": False}


@lru_cache(maxsize=1)
def _keep_once() -> bool:
    libc = _libc()
    if libc is None or not keeping_enabled():
        return False
    _state["kept"] = bool(libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(kept_block_bytes()))
                          and libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_TRIM_THRESHOLD)))
    return _state["kept"]


def keep_freed_memory() -> bool:
    """Make freed tensor memory stay in this process for reuse (once per process; idempotent).
    False where it is turned off, the C library is not glibc, or `stop_keeping_freed_memory` ran."""
    return not _state["stopped"] and _keep_once()


def stop_keeping_freed_memory() -> bool:
    """For the rest of this process, hand freed memory back as glibc does by default, and release what is
    kept now: for a model whose kept heap would not fit in memory (Gemma 3 270M kept 19.1 GB where 9.1 GB
    were needed, results/memory_gemma_keep_freed.md). False where the C library is not glibc."""
    _state["stopped"] = True
    libc = _libc()
    if libc is None:
        return False
    if _state["kept"]:
        libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_GLIBC_DEFAULT_THRESHOLD))
        libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_GLIBC_DEFAULT_THRESHOLD))
        _state["kept"] = False
    return release_freed_memory()


def _proc_kb(path: str, field: str) -> int | None:
    """A "Field:  N kB" line of a Linux /proc file ("/proc/meminfo", "/proc/self/status") as N, else None."""
    try:
        with open(path, encoding="ascii") as lines:
            for line in lines:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@lru_cache(maxsize=1)
def _memory_total() -> int | None:
    kb = _proc_kb("/proc/meminfo", "MemTotal")
    return None if kb is None else kb * 1024


def available_memory() -> int | None:
    """Bytes the system can give without swapping (MemAvailable), or None where unknown."""
    kb = _proc_kb("/proc/meminfo", "MemAvailable")
    return None if kb is None else kb * 1024


def memory_reserve(total: int | None = None) -> int:
    """The memory left to the system below which freed memory is no longer kept: a tenth of the machine's
    memory, at least 2 GiB (one Gemma 3 270M evaluation's kept heap grew by up to 3.8 GB over the previous one)."""
    total = _memory_total() if total is None else total
    return max(2 << 30, (total or 0) // 10)


def stop_keeping_if_memory_short(read_available: Callable[[], int | None] = available_memory,
                                 reserve: Callable[[], int] = memory_reserve) -> bool:
    """Where freed memory is being kept and the system has less than the reserve left, stop keeping it for the
    rest of this process and hand it back (`stop_keeping_freed_memory`). True when it stopped now."""
    if not _state["kept"] or _state["stopped"]:
        return False
    available = read_available()
    if available is None or available >= reserve():
        return False
    logger.warning("only %.1f GB of memory left: freed memory is handed back from now on (slower, but it fits)",
                   available / 2**30)
    stop_keeping_freed_memory()
    return True


def release_freed_memory() -> bool:
    """Collect garbage and return free heap pages to the system; False where the C library cannot."""
    gc.collect()
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status ("VmRSS", "VmHWM") in MB (Linux), else None."""
    kb = _proc_kb("/proc/self/status", field)
    return None if kb is None else kb / 1024


def resident_mb() -> float | None:
    """This process's resident set in MB (Linux), else None."""
    return _status_mb("VmRSS")


def peak_resident_mb() -> float | None:
    """The largest resident set since the process started or since `reset_peak_resident` (Linux), else None."""
    return _status_mb("VmHWM")


def reset_peak_resident() -> bool:
    """Start `peak_resident_mb` afresh from the current resident set (Linux clear_refs); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


class FreedMemoryPolicy:
    """Between evaluations: keep the heap as it is while the resident set stays within `growth` times
    its size after the first evaluation that trained (the next evaluation reuses those pages without
    faulting them in again); trim it when it grows beyond, so a long search cannot creep upwards, and stop
    keeping freed memory altogether once the system is short of it (`stop_if_short`).
    Where freed memory is not kept (turned off, or not glibc), or the resident set cannot be read,
    trim before every evaluation."""

    def __init__(self, growth: float = 1.2, read_resident: Callable[[], float | None] = resident_mb,
                 release: Callable[[], bool] = release_freed_memory,
                 stop_if_short: Callable[[], bool] = stop_keeping_if_memory_short):
        self.growth = growth
        self.baseline: float | None = None
        self._read_resident, self._release, self._stop_if_short = read_resident, release, stop_if_short
        self.trims = 0

    def before_evaluation(self) -> bool:
        """True when it trimmed (or stopped keeping freed memory, which trims)."""
        if self._stop_if_short():
            self.trims += 1
            return True
        resident = self._read_resident() if keep_freed_memory() else None
        if resident is not None and (self.baseline is None or resident <= self.growth * self.baseline):
            return False
        self._release()
        self.trims += 1
        return True

    def after_training(self) -> None:
        """The first call sets the size the heap may keep (zero-shot evaluations allocate little)."""
        if self.baseline is None:
            self.baseline = self._read_resident()
