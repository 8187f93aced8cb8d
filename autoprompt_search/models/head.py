"""`ClassifierBackbone`: a sequence-classification head, the standard fine-tuning baseline, and
`load_classifier` to build one from a model name."""
from __future__ import annotations

import torch

from ..tasks import Example
from .base import Batch, Encoded, pad_sequences
from .snapshots import load_through_snapshot
from .sources import default_device, load_pretrained, load_tokenizer, resolve_model


class ClassifierBackbone:
    """Standard fine-tuning baseline: the raw sentence(s) into a sequence-classification head."""

    kind = "classifier"

    def __init__(self, model, tokenizer, *, name: str = "", device=None, max_length: int = 128):
        self.model, self.tokenizer, self.name, self.max_length = model, tokenizer, name, max_length
        self.device = torch.device(device) if device is not None else default_device()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        self.model.to(self.device)

    def encode(self, example: Example, *_args, max_length=None, **_kwargs) -> Encoded:
        texts = list(example.texts)
        encoding = self.tokenizer(*texts[:2], truncation=True, max_length=max_length or self.max_length)
        return Encoded(encoding["input_ids"], -1)

    def collate(self, items):
        # Right padding; models that pool the last token find it through pad_token_id.
        input_ids, attention = pad_sequences([item.input_ids for item in items], self.tokenizer.pad_token_id)
        return Batch(input_ids, attention)

    def class_scores(self, batch: Batch, verbalizer=None) -> torch.Tensor:
        batch = batch.to(self.device)
        return self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()

    def train(self, mode: bool = True):
        self.model.train(mode)
        return self

    def parameters(self):
        return self.model.parameters()


def load_classifier(name: str, num_labels: int, *, device=None, max_length: int = 128, seed: int = 0):
    from transformers import AutoModelForSequenceClassification

    def build(source):
        torch.manual_seed(seed)  # the new head's initialisation follows the run's seed
        model = load_pretrained(AutoModelForSequenceClassification, source, num_labels=num_labels)
        return ClassifierBackbone(model, load_tokenizer(source), name=name, device=device, max_length=max_length)

    # A GGUF model is read from its snapshot: transformers converts GGUF files for causal LMs only.
    return load_through_snapshot(resolve_model(name), "model", build)
