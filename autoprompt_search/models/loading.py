"""`load_backbone`: a model name -> a masked or causal LM backbone, optionally cached per process.
`load_tokenizer_only` and `load_encoder` serve commands that only tokenise (`render`): no weights are
read, and a GGUF model's tokenizer is converted alone (snapshots.py) instead of the whole model."""
from __future__ import annotations

import torch

from ..errors import UserError
from .causal import CausalLMBackbone
from .masked import MaskedLMBackbone
from .snapshots import load_through_snapshot
from .sources import detect_kind, load_pretrained, load_tokenizer, resolve_model

_CACHE: dict[tuple, object] = {}
_BACKBONES = {"mlm": MaskedLMBackbone, "causal": CausalLMBackbone}


def _check_kind(kind: str) -> None:
    if kind == "classifier":
        raise UserError("use load_classifier(name, num_labels) for a classification head")
    if kind not in ("auto", *_BACKBONES):
        raise UserError(f"unknown backbone kind {kind!r}; expected auto, mlm or causal")


def load_backbone(name: str, *, kind: str = "auto", device=None, max_length: int = 128,
                  dtype: torch.dtype | None = None, cache: bool = False):
    """Load a model by name as a backbone. kind: 'auto', 'mlm', 'causal' or 'classifier'."""
    key = (name, kind, str(device), max_length, str(dtype))
    if cache and key in _CACHE:
        return _CACHE[key]
    _check_kind(kind)
    extra = {"dtype": dtype} if dtype is not None else {}

    def build(source):
        chosen = detect_kind(source) if kind == "auto" else kind
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

        auto_class = AutoModelForMaskedLM if chosen == "mlm" else AutoModelForCausalLM
        model = load_pretrained(auto_class, source, **extra)
        return _BACKBONES[chosen](model, load_tokenizer(source), name=name, device=device, max_length=max_length)

    backbone = load_through_snapshot(resolve_model(name), "model", build)
    if cache:
        _CACHE[key] = backbone
    return backbone


def load_tokenizer_only(name: str):
    """The tokenizer of a model, without its weights (from the snapshot cache for a GGUF model)."""
    return load_through_snapshot(resolve_model(name), "tokenizer", load_tokenizer)


def load_encoder(name: str, *, kind: str = "auto", max_length: int = 128):
    """A backbone without weights: `encode` and `collate` work (they need only the tokenizer), scoring
    does not. For commands that show how prompts tokenise."""
    _check_kind(kind)
    source = resolve_model(name)
    chosen = detect_kind(source) if kind == "auto" else kind
    return _BACKBONES[chosen](None, load_tokenizer_only(name), name=name, device="cpu", max_length=max_length)
