"""Backbones: one interface that turns rendered prompts into class scores.

* `MaskedLMBackbone` (masked.py): the logits of the label words at the mask.
* `CausalLMBackbone` (causal.py): the log-likelihood of the label word and the template text after it.
* `ClassifierBackbone` (head.py): a sequence-classification head, the standard fine-tuning baseline.

`load_backbone(name)` (loading.py) resolves a model name (sources.py): a local folder, an installed
model package (`smollm2-135m`, `minilm-l6`) or a Hugging Face hub id. base.py holds the shared
`Backbone` interface, `Encoded` prompts and padded `Batch`es.
"""
from .sources import (
    SMOLLM2_GGUF,
    ModelSource,
    ALIASES,
    resolve_model,
    load_pretrained,
    load_tokenizer,
    detect_kind,
    default_device,
    quiet_transformers,
)
from .base import Encoded, Batch, Backbone, pad_sequences
from .masked import MaskedLMBackbone
from .causal import CausalLMBackbone
from .head import ClassifierBackbone, load_classifier
from .loading import load_backbone

__all__ = [
    'SMOLLM2_GGUF',
    'ModelSource',
    'ALIASES',
    'resolve_model',
    'load_pretrained',
    'load_tokenizer',
    'detect_kind',
    'default_device',
    'Encoded',
    'Batch',
    'Backbone',
    'MaskedLMBackbone',
    'CausalLMBackbone',
    'ClassifierBackbone',
    'pad_sequences',
    'load_backbone',
    'load_classifier',
    'quiet_transformers',
]
