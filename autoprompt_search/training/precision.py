"""Numeric precision of training and scoring: fp32, or bf16 autocast around the backbone's forward pass
(weights, gradients and optimiser state stay fp32; scores and losses are computed in fp32).

"auto" picks bf16 only where the hardware computes it natively: a CUDA device with bf16 support, or a
CPU with AVX512-BF16 or AMX-BF16. Elsewhere bf16 is emulated and far slower than fp32 (an AVX2-only
CPU measured 0.3 GFLOP/s for a bf16 matmul against 71 for fp32), so "auto" falls back to fp32.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from .config import PRECISIONS  # noqa: F401  (re-exported: the values of TrainConfig.precision)
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def read_cpu_flags() -> set[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            flags.update(line.split(":", 1)[1].split())
    return flags


NATIVE_BF16_VARIABLE = "AUTOPROMPT_NATIVE_BF16"  # "0"/"1": what "auto" assumes of this machine instead of asking


def native_bf16(device: torch.device | str) -> bool:
    override = os.environ.get(NATIVE_BF16_VARIABLE, "").strip()
    if override in ("0", "1"):
        return override == "1"
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(flag in read_cpu_flags() for flag in NATIVE_BF16_CPU_FLAGS)
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """"fp32" or "bf16": what `precision` ("fp32" | "bf16" | "auto") means on `device`."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def precision_context(precision: str, device: torch.device | str):
    """The context to run a forward pass in: bf16 autocast on the device's type, or nothing for fp32."""
    device = torch.device(device)
    if resolve_precision(precision, device) != "bf16" or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
