"""`MaskedLMBackbone` (RoBERTa, BERT, ALBERT, ELECTRA generators...): the logits of the label words at
the mask, computed from the hidden state at the mask times the label-word rows of the output
embedding (never the full vocabulary at every position)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..prompts import Verbalizer, render_blocks, single_token_ids
from .base import (Backbone, Batch, Encoded, features_before_output_layer, final_logit_softcap, output_projection,
                   pad_sequences, vocabulary_logits)
from .combine import combine_word_scores


class MaskedLMBackbone(Backbone):
    kind = "mlm"

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        if tokenizer.mask_token_id is None:
            raise UserError(f"model {self.name!r} has no mask token; it is not a masked LM")
        self._word_id_cache: dict[tuple[tuple[str, ...], ...], list[int]] = {}

    def label_word_ids(self, verbalizer: Verbalizer) -> list[int]:
        """The token id of every label word (`verbalizer.all_words`: one per class unless a class has several)."""
        if verbalizer.word_lists not in self._word_id_cache:
            self._word_id_cache[verbalizer.word_lists] = single_token_ids(self.tokenizer, verbalizer)
        return self._word_id_cache[verbalizer.word_lists]

    def encode(self, example, template, verbalizer, demonstrations=(), max_length=None) -> Encoded:
        self.label_word_ids(verbalizer)  # fail early on multi-token words
        rendered = render_blocks(
            self.blocks(example, template, verbalizer, demonstrations), self.tokenizer,
            max_length=max_length or self.max_length, slot_text=self.tokenizer.mask_token,
            mask_token_id=self.tokenizer.mask_token_id,
        )
        return Encoded(rendered.input_ids, rendered.mask_index, text=rendered.text)

    def collate(self, items):
        input_ids, attention = pad_sequences([item.input_ids for item in items], self.tokenizer.pad_token_id)
        return Batch(input_ids, attention, mask_index=torch.tensor([item.mask_index for item in items]))

    def _mask_features(self, batch: Batch) -> torch.Tensor:
        batch = batch.to(self.device)
        features = features_before_output_layer(self.model, input_ids=batch.input_ids,
                                                 attention_mask=batch.attention_mask)
        return features[torch.arange(features.shape[0], device=self.device), batch.mask_index]

    def class_scores_for(self, batch: Batch, word_ids: Sequence[int]) -> torch.Tensor:
        weight, bias = output_projection(self.model)
        ids = torch.tensor(list(word_ids), device=self.device)
        scores = self._mask_features(batch) @ weight[ids].T
        scores = scores + bias[ids] if bias is not None else scores
        cap = final_logit_softcap(self.model)
        return torch.tanh(scores / cap) * cap if cap is not None else scores

    def class_scores(self, batch: Batch, verbalizer: Verbalizer | None = None) -> torch.Tensor:
        if verbalizer is None:
            raise ValueError("a masked LM needs the verbalizer to score classes")
        return combine_word_scores(self.class_scores_for(batch, self.label_word_ids(verbalizer)), verbalizer)

    def label_position_logprobs(self, batch: Batch) -> torch.Tensor:
        return F.log_softmax(vocabulary_logits(self.model, self._mask_features(batch)).float(), dim=-1)
