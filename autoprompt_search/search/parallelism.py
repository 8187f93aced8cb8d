"""How many evaluations to run at once when `--jobs` is left to the search ("auto", jobs = 0).

On the CPU, evaluations are independent, and one single-threaded evaluation per core finishes more of
them per hour than one evaluation using every core, as far as a second torch thread speeds up an
evaluation by less than 2x (2-core CPU here: 1.7x, so 2 workers ran the SST-2 race 9% faster). Each
needs its own copy of the model, gradients, optimiser state and best checkpoint, so memory bounds the
count too. On an accelerator one evaluation at a time (they would share the device).
"""
from __future__ import annotations

import os

from ..training import available_memory

# Resident bytes of one full fine-tuning evaluation per model parameter: pristine weights, live weights,
# gradients, two AdamW moments and a best checkpoint, 4 bytes each, plus a margin for activations.
# Measured peaks: SmolLM2-135M 4.57 GB, Gemma 3 270M 8.7 GB (results/speed.md, results/backbones_sst-2.md).
BYTES_PER_PARAMETER = 32
# A weight full fine-tuning leaves frozen (`--embeddings freeze`) has no gradient, moments or checkpoint copy:
# its live and pristine copies.
FROZEN_BYTES_PER_PARAMETER = 8
FIXED_BYTES = 600 * 2**20
MAX_JOBS_VARIABLE = "AUTOPROMPT_MAX_JOBS"  # caps the automatic choice (e.g. on a machine shared with others)


def parameter_count(model) -> int:
    """Weights of a loaded model, which size the memory estimates below."""
    return sum(p.numel() for p in model.parameters())


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def frozen_parameter_count(model, train: dict) -> int:
    """Weights that full fine-tuning under the training settings `train` leaves as they are: the token
    embeddings with embeddings "freeze" (0 otherwise, and under LoRA, whose own estimate covers them)."""
    if train.get("tuning", "full") != "full" or train.get("embeddings", "train") != "freeze":
        return 0
    from ..training import token_embedding_weights

    return sum(weight.numel() for weight in token_embedding_weights(model))


def evaluation_memory(parameters: int, tuning: str = "full", frozen: int = 0) -> int:
    """Estimated peak bytes of one evaluation process; under LoRA no pristine copy, gradients or
    optimiser state of the base weights (the measured LoRA peak was about half the full one); `frozen`
    of the `parameters` (full tuning) cost only their two copies."""
    if tuning != "full":
        return BYTES_PER_PARAMETER // 2 * parameters + FIXED_BYTES
    return BYTES_PER_PARAMETER * (parameters - frozen) + FROZEN_BYTES_PER_PARAMETER * frozen + FIXED_BYTES


# Freed memory kept for the next step (training.memory) roughly doubled the peak of a large-vocabulary
# model: Gemma 3 270M, 32 steps, 19.1 GB kept against 9.1 GB (at 1.8-4x the training time without it,
# results/memory_gemma_keep_freed.md); SmolLM2 +15% (results/speed_freed_memory.md).
KEPT_MEMORY_FACTOR = 2.1


def kept_memory_fits(parameters: int, tuning: str = "full", memory: int | None = None, *, sharing: int = 1,
                     frozen: int = 0) -> bool:
    """Whether an evaluation that keeps its freed memory fits in the memory available now (True when
    that is unknown, as before this check existed). `sharing`: evaluations that run at once on this machine
    and decide the same way, each from the memory available when it loads, so each may count on its share."""
    memory = available_memory() if memory is None else memory
    return memory is None or KEPT_MEMORY_FACTOR * evaluation_memory(parameters, tuning, frozen) * max(1, sharing) <= memory


def auto_jobs(parameters: int, device_type: str, *, tuning: str = "full", cores: int | None = None,
              memory: int | None = None, frozen: int = 0) -> tuple[int, str]:
    """(evaluations to run at once, why) for a model of `parameters` weights."""
    if device_type != "cpu":
        return 1, f"one evaluation at a time on {device_type}"
    cores = usable_cores() if cores is None else cores
    memory = available_memory() if memory is None else memory
    need = evaluation_memory(parameters, tuning, frozen)
    if memory is None:
        return 1, "available memory unknown"
    jobs = max(1, min(cores, memory // need))
    why = f"{cores} cores, {memory / 2**30:.1f} GB available, about {need / 2**30:.1f} GB per evaluation"
    cap = os.environ.get(MAX_JOBS_VARIABLE, "").strip()
    if cap.isdigit() and int(cap) >= 1 and jobs > int(cap):
        jobs, why = int(cap), f"{why}; capped by {MAX_JOBS_VARIABLE}={cap}"
    return jobs, why
