"""`load_backbone`: a model name -> a masked or causal LM backbone, optionally cached per process."""
from __future__ import annotations

import torch

from ..errors import UserError
from .causal import CausalLMBackbone
from .masked import MaskedLMBackbone
from .sources import detect_kind, load_pretrained, load_tokenizer, resolve_model

_CACHE: dict[tuple, object] = {}


def load_backbone(name: str, *, kind: str = "auto", device=None, max_length: int = 128,
                  dtype: torch.dtype | None = None, cache: bool = False):
    """Load a model by name as a backbone. kind: 'auto', 'mlm', 'causal' or 'classifier'."""
    key = (name, kind, str(device), max_length, str(dtype))
    if cache and key in _CACHE:
        return _CACHE[key]
    source = resolve_model(name)
    if kind == "auto":
        kind = detect_kind(source)
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    tokenizer = load_tokenizer(source)
    extra = {"dtype": dtype} if dtype is not None else {}
    if kind == "mlm":
        backbone = MaskedLMBackbone(load_pretrained(AutoModelForMaskedLM, source, **extra), tokenizer,
                                    name=name, device=device, max_length=max_length)
    elif kind == "causal":
        backbone = CausalLMBackbone(load_pretrained(AutoModelForCausalLM, source, **extra), tokenizer,
                                    name=name, device=device, max_length=max_length)
    elif kind == "classifier":
        raise UserError("use load_classifier(name, num_labels) for a classification head")
    else:
        raise UserError(f"unknown backbone kind {kind!r}; expected auto, mlm or causal")
    if cache:
        _CACHE[key] = backbone
    return backbone
