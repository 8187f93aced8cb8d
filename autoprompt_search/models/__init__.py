"""Backbones: one interface that turns rendered prompts into class scores.

* `MaskedLMBackbone` (masked.py): the logits of the label words at the mask.
* `CausalLMBackbone` (causal.py): the log-likelihood of the label word and the template text after it.
* `ClassifierBackbone` (head.py): a sequence-classification head, the standard fine-tuning baseline.

`load_backbone(name)` (loading.py) resolves a model name (sources.py): a local folder, an installed
model package (`smollm2-135m`, `gemma3-270m`, `minilm-l6`) or a Hugging Face hub id. A GGUF model
is converted once into the snapshot cache (snapshots.py, fingerprints.py; `$AUTOPROMPT_MODEL_CACHE`)
and read from there afterwards; `load_tokenizer_only` / `load_encoder` read no weights. base.py holds
the shared `Backbone` interface, `Encoded` prompts and padded `Batch`es. `pretrained_weights` (`weights_to_restore`) keeps the
weights a search restores before every evaluation (read back from the model's files where they match).
"""
from ..lazy import lazy_exports

_EXPORTS = {
    'sources': (
        'SMOLLM2_GGUF', 'GEMMA3_PACKAGES', 'ModelSource', 'ALIASES', 'resolve_model', 'load_pretrained',
        'load_tokenizer', 'detect_kind', 'default_device', 'quiet_transformers',
    ),
    'fingerprints': ('CACHE_ENV', 'cache_root', 'file_sha256'),
    'snapshots': ('snapshot', 'is_valid_snapshot', 'discard_snapshot', 'load_through_snapshot'),
    'base': ('Encoded', 'Batch', 'Backbone', 'pad_sequences', 'vocabulary_logits'),
    'masked': ('MaskedLMBackbone',),
    'causal': ('CausalLMBackbone',),
    'head': ('ClassifierBackbone', 'load_classifier'),
    'loading': ('load_backbone', 'load_tokenizer_only', 'load_encoder'),
    'pretrained_weights': ('weights_to_restore', 'WeightsInMemory', 'WeightsOnDisk'),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
