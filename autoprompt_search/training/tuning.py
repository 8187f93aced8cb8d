"""Parameter-efficient fine-tuning: LoRA adapters (through `peft`) on a backbone's attention and MLP
projections, beside full fine-tuning.

The adapters are injected into the model in place (`peft.inject_adapter_in_model`), not by wrapping
it in a `PeftModel`: the backbones call `model.base_model(...)` and `model.get_output_embeddings()`,
which a wrapper would change the meaning of. The model keeps its class and attributes; each targeted
projection becomes a LoRA layer around the original one, and everything but the adapters is frozen.

Since the base weights never change under LoRA, undoing a fine-tuning run is re-initialising the
adapters (B = 0 makes the adapted model compute exactly what the base model computes), and saving
merges W + (alpha / r) B A into the weights of a plain model, so the saved folder needs no `peft`.
"""
from __future__ import annotations

import copy
import math
import re
from contextlib import contextmanager
from typing import Iterator

import torch

from ..errors import UserError
from .config import TrainConfig

ADAPTER = "default"
# Leaf names of the attention and MLP projections inside a transformer block, across families:
# Llama / Gemma / Mistral / Qwen / SmolLM, GPT-2 (Conv1D), BERT / RoBERTa / ELECTRA, T5,
# OPT / BART, GPT-NeoX, Phi-3.
PROJECTION_NAMES = frozenset({
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    "c_attn", "c_proj", "c_fc",
    "query", "key", "value", "dense",
    "q", "k", "v", "o", "wi", "wo", "wi_0", "wi_1",
    "out_proj", "fc1", "fc2",
    "query_key_value", "dense_h_to_4h", "dense_4h_to_h",
    "qkv_proj", "gate_up_proj",
})
_BLOCK_INDEX = re.compile(r"\.\d+\.")


def _projection_types() -> tuple[type, ...]:
    from transformers.pytorch_utils import Conv1D

    return torch.nn.Linear, Conv1D


def adapter_targets(model: torch.nn.Module) -> list[str]:
    """Full names of the modules LoRA adapts: Linear / Conv1D projections with a known attention or MLP
    name inside a numbered transformer block (`...layers.3.self_attn.q_proj`). The output embedding
    and the heads outside the blocks (BERT's `cls.predictions.transform.dense`, a pooler) stay as
    they are: the label-word scores are read through the output embedding unchanged."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    kinds = _projection_types()
    return [name for name, module in model.named_modules()
            if isinstance(module, kinds) and module is not output and name.rsplit(".", 1)[-1] in PROJECTION_NAMES
            and _BLOCK_INDEX.search(f".{name}")]


def _lora_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    from peft.tuners.lora import LoraLayer

    return [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]


def has_adapters(model: torch.nn.Module) -> bool:
    return getattr(model, "_lora_settings", None) is not None


def _settings(config: TrainConfig) -> tuple[int, float, float]:
    return config.lora_rank, float(config.lora_alpha), float(config.lora_dropout)


def inject_adapters(model: torch.nn.Module, rank: int, alpha: float, dropout: float) -> list[str]:
    """Wrap every `adapter_targets` module in a LoRA layer (in place) and freeze all but the adapters.
    Returns the adapted module names."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = adapter_targets(model)
    if not targets:
        raise UserError(f"LoRA: found no attention/MLP projections to adapt in {type(model).__name__} "
                        f"(known names: {', '.join(sorted(PROJECTION_NAMES))}); use tuning 'full'")
    conv1d = _projection_types()[1]
    fan_in_fan_out = isinstance(model.get_submodule(targets[0]), conv1d)  # GPT-2 stores weights as [in, out]
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none",
                        fan_in_fan_out=fan_in_fan_out)
    inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    model._lora_settings = (rank, alpha, dropout)
    freeze_all_but_adapters(model)
    return targets


def freeze_all_but_adapters(model: torch.nn.Module) -> None:
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)


def reset_adapters(model: torch.nn.Module, seed: int) -> None:
    """Re-initialise every adapter as LoRA starts: A uniform in +-1/sqrt(fan_in) (nn.Linear's default),
    B = 0, so the adapted model computes what the base model does. Drawn from a generator seeded with
    `seed` (on the CPU, in module order), so the same seed gives the same adapters on any device."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in _lora_layers(model):
            down, up = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            bound = 1.0 / math.sqrt(down.shape[1])
            fresh = torch.rand(down.shape, generator=generator, dtype=torch.float32) * (2 * bound) - bound
            down.copy_(fresh.to(down.dtype))
            up.zero_()


def remove_adapters(model: torch.nn.Module) -> None:
    """Put the original projections back (the adapters are dropped, not merged) and unfreeze them."""
    for name, layer in _lora_layers(model):
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer.get_base_layer())
    model._lora_settings = None
    if hasattr(model, "peft_config"):  # set by inject_adapter_in_model; a stale one makes peft warn on re-injection
        del model.peft_config
    for parameter in model.parameters():
        parameter.requires_grad_(True)


@contextmanager
def adapted_projections_in(model: torch.nn.Module, dtype: torch.dtype) -> Iterator[int]:
    """Inside the block, the LoRA-adapted projections compute in `dtype` without casting anything again:
    their frozen base weights are held in `dtype` (the fp32 values put back after the block) and peft's
    cast of each layer's input to the adapters' fp32 is off. Yields how many weights were converted (0
    without adapters). Only for use inside the autocast context of `dtype`, where it changes no value:
    autocast rounds the weights the same way, and the input's round trip through fp32 is exact.

    Why: autocast keeps its bf16 copy of a weight for the whole context only when the weight requires a
    gradient, so under LoRA every frozen projection was cast again in every forward pass and the copy
    held for the backward pass, and peft cast every bf16 input up to fp32 for autocast to cast it back
    (results/lora_casts.md, `benchmarks/bench_lora_casts.py`)."""
    converted, layers = [], _lora_layers(model)
    for _, layer in layers:
        weight = getattr(layer.get_base_layer(), "weight", None)
        if weight is None or weight.requires_grad or not weight.is_floating_point() or weight.dtype == dtype:
            continue
        converted.append((weight, weight.data))
        weight.data = weight.data.to(dtype)
    casting = [(layer, getattr(layer, "cast_input_dtype_enabled", True)) for _, layer in layers]
    for layer, _ in casting:
        layer.cast_input_dtype_enabled = False
    try:
        yield len(converted)
    finally:
        for weight, original in converted:
            weight.data = original
        for layer, enabled in casting:
            layer.cast_input_dtype_enabled = enabled


def prepare_tuning(model: torch.nn.Module, config: TrainConfig) -> None:
    """Make `model` ready for a fine-tuning run under `config.tuning`. LoRA: adapters injected once
    (again when rank, alpha or dropout changed), re-initialised from `config.seed` so that a fit is
    reproducible, and only they train. Full: the model must carry no adapters; the token embeddings train
    unless `config.embeddings` is "freeze"."""
    if config.tuning == "full":
        if has_adapters(model):
            raise UserError("tuning 'full': this backbone carries LoRA adapters from an earlier fit; fine-tune "
                            "it with tuning 'lora', or save it (adapters merged) and load it again")
        # Set both ways: an earlier fit with "freeze" must not leave them frozen; other weights are left as
        # the caller has them.
        for weight in token_embedding_weights(model):
            weight.requires_grad_(config.embeddings == "train")
        return
    if has_adapters(model) and model._lora_settings != _settings(config):
        remove_adapters(model)
    if not has_adapters(model):
        inject_adapters(model, *_settings(config))
    reset_adapters(model, config.seed)
    freeze_all_but_adapters(model)


def token_embedding_weights(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The input and output token embedding matrices (one when tied); an output bias is not included."""
    weights = []
    for module in (model.get_input_embeddings(), getattr(model, "get_output_embeddings", lambda: None)()):
        weight = getattr(module, "weight", None) if module is not None else None
        if isinstance(weight, torch.nn.Parameter) and all(weight is not seen for seen in weights):
            weights.append(weight)
    return weights


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; shared (tied) tensors counted once."""
    seen, trainable, total = set(), 0, 0
    for parameter in model.parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        total += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    return trainable, total


@contextmanager
def merged_adapters(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """While inside, each LoRA layer is swapped for a plain copy of its projection with the adapter
    merged in (W + delta), so `model.save_pretrained` writes an ordinary model; the LoRA layers (and
    their unchanged base weights) are put back afterwards, even on an error."""
    layers = _lora_layers(model) if has_adapters(model) else []
    swapped = []
    try:
        with torch.no_grad():
            for name, layer in layers:
                base = layer.get_base_layer()
                merged = copy.deepcopy(base)
                merged.weight.copy_(base.weight + layer.get_delta_weight(ADAPTER).to(base.weight.dtype))
                parent_name, _, child = name.rpartition(".")
                parent = model.get_submodule(parent_name) if parent_name else model
                setattr(parent, child, merged)
                swapped.append((parent, child, layer))
        yield model
    finally:
        for parent, child, layer in swapped:
            setattr(parent, child, layer)
