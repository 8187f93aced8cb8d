"""The AdamW optimiser of fine-tuning. torch's default AdamW on CPU updates one tensor after another in
Python (no foreach kernels there); its fused kernel does the same arithmetic in one vectorised, threaded
pass. For SmolLM2's 134.5M parameters on this CPU (one thread) the optimiser phase of a step fell from
0.50 to 0.13 s (results/speed_optimizer_default.md, results/speed_optimizer_fused.md); the weights agree to
within float rounding (tests/test_optimizer.py). Where a device has no fused kernel, the default is used."""
from __future__ import annotations

from typing import Iterable

import torch

IMPLEMENTATIONS = ("fused", "default")


def adamw(parameters: Iterable[torch.nn.Parameter], *, lr: float, weight_decay: float,
          implementation: str = "fused") -> torch.optim.AdamW:
    """AdamW over `parameters`; `implementation` "fused" falls back to "default" where unsupported."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"optimizer implementation: expected one of {IMPLEMENTATIONS}, got {implementation!r}")
    parameters = list(parameters)
    if implementation == "fused" and parameters and _fused_supported(parameters):
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=True)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


def _fused_supported(parameters: list[torch.nn.Parameter]) -> bool:
    devices = {p.device.type for p in parameters}
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
        supported = set(_get_fused_kernels_supported_devices())
    except ImportError:  # an older torch: CUDA only
        supported = {"cuda"}
    return devices <= supported
