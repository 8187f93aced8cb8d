"""The backbone interface: encoded prompts, padded batches, the shared `Backbone` base class and the
helpers that read a model's output embedding."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from ..tasks import Example
from ..prompts import Block, Template, Verbalizer
from .sources import default_device


@dataclass
class Encoded:
    """One prompt ready for a backbone. Masked LMs use `input_ids` and `mask_index`; causal LMs use
    `input_ids` as the prefix and `continuations` (one token list per class)."""

    input_ids: list[int]
    mask_index: int
    continuations: list[list[int]] = field(default_factory=list)
    text: str = ""


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mask_index: torch.Tensor | None = None
    continuation_ids: torch.Tensor | None = None  # [B, C, M], right-padded
    continuation_mask: torch.Tensor | None = None  # [B, C, M]

    def to(self, device) -> "Batch":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Batch(**moved)


class _DecoderInput(Exception):
    pass


def output_projection(model) -> tuple[torch.Tensor, torch.Tensor | None]:
    head = model.get_output_embeddings()
    return head.weight, getattr(head, "bias", None)


def final_logit_softcap(model) -> float | None:
    """Gemma 2 (and Gemma 3 when configured) squash the final logits with cap * tanh(logits / cap)
    after the output projection; scores computed from the projection must do the same."""
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    cap = getattr(text_config, "final_logit_softcapping", None)
    return float(cap) if cap else None


TRAINING_ATTENTION_ON_CPU = "eager"


def _set_attention(model, implementation: str | None) -> None:
    if implementation and getattr(model.config, "_attn_implementation", None) != implementation:
        model.set_attn_implementation(implementation)


def _training_attention(model, device: torch.device) -> str | None:
    """The attention to train with on the CPU: the plain (eager) one, whose backward costs less than torch's
    fused SDPA kernel's on prompts of SST-2's length (results/speed_attention.md: bf16 training steps of
    SmolLM2 at 0.93x the CPU time at one thread; the demo's 8-step evaluations at two threads fell from
    16-28 s to 14-24 s, results/demo_timing.md run 10). Scoring keeps the model's own choice, which scored
    about as fast (eager 1.04x and 0.98x). None where there is nothing to switch (an accelerator, a model
    without it)."""
    if device.type != "cpu" or not hasattr(model, "set_attn_implementation"):
        return None
    current = getattr(model.config, "_attn_implementation", None)
    if current in (None, TRAINING_ATTENTION_ON_CPU):
        return None
    try:  # a model without an eager path keeps its own
        model.set_attn_implementation(TRAINING_ATTENTION_ON_CPU)
        model.set_attn_implementation(current)
    except (ValueError, NotImplementedError):
        return None
    return TRAINING_ATTENTION_ON_CPU


def vocabulary_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """The model's own final logits for hidden states taken before its output layer: the output
    embedding, its bias if any, and the final soft-cap if the model has one."""
    weight, bias = output_projection(model)
    # F.linear takes the weight itself: autocast caches its bf16 copy for the context, which it does not
    # for a transposed view (`hidden @ weight.T` cast the whole vocabulary matrix again at every call).
    logits = F.linear(hidden, weight, bias)
    cap = final_logit_softcap(model)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


def features_before_output_layer(model, **inputs) -> torch.Tensor:
    """Run the model up to, not through, its output embedding and return that layer's input: the
    transformed hidden states [B, T, H]. Works for any head that ends in the output embedding."""
    captured = {}

    def grab(module, args):
        captured["features"] = args[0]
        raise _DecoderInput

    handle = model.get_output_embeddings().register_forward_pre_hook(grab)
    try:
        model(**inputs)
    except _DecoderInput:
        pass
    finally:
        handle.remove()
    return captured["features"]


class Backbone:
    """Shared behaviour: templates + verbalizers -> encoded prompts -> class scores."""

    kind = "base"

    def __init__(self, model, tokenizer, *, name: str = "", device=None, max_length: int = 128):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.device = torch.device(device) if device is not None else default_device()
        if self.model is not None:  # None: a tokenizer-only backbone that encodes prompts (load_encoder)
            self.model.to(self.device)
            self._scoring_attention = getattr(self.model.config, "_attn_implementation", None)
            self._train_attention = _training_attention(self.model, self.device)
        self.max_length = max_length
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token

    # -- prompt construction ------------------------------------------------------------------
    def blocks(self, example: Example, template: Template, verbalizer: Verbalizer,
               demonstrations: Sequence[tuple[Example, int]] = ()) -> list[Block]:
        # LM-BFF: *label_i* is class i's word, *labelx_i* the word of the i-th demonstration in this prompt.
        shown = tuple(verbalizer.words[label] for _, label in demonstrations)
        query = Block(template, tuple(example.texts), demo_label_words=verbalizer.words, demonstration_words=shown)
        demos = [Block(template, tuple(demo.texts), label_word=verbalizer.words[label], is_demonstration=True,
                       demo_label_words=verbalizer.words, demonstration_words=shown)
                 for demo, label in demonstrations]
        return self.order_blocks(query, demos)

    def order_blocks(self, query: Block, demos: list[Block]) -> list[Block]:
        return [query, *demos]

    def encode(self, example: Example, template: Template, verbalizer: Verbalizer,
               demonstrations: Sequence[tuple[Example, int]] = (), max_length: int | None = None) -> Encoded:
        raise NotImplementedError

    def collate(self, items: Sequence[Encoded]) -> Batch:
        raise NotImplementedError

    def class_scores(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def label_position_logprobs(self, batch: Batch) -> torch.Tensor:
        """Full-vocabulary log-probabilities at the label position, [B, V] (label-word search)."""
        raise NotImplementedError

    # -- helpers for label search -------------------------------------------------------------
    def token_to_word(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id]).strip()

    def word_token_mask(self) -> torch.Tensor:
        """Tokens that are whole words as they follow a space (e.g. RoBERTa's 'Ġgreat', SentencePiece's
        '▁great', BERT's non-'##' pieces), made of letters."""
        vocab_size = self.model.get_output_embeddings().weight.shape[0]
        allowed = torch.zeros(vocab_size, dtype=torch.bool)
        special = set(self.tokenizer.all_special_ids)
        tokens = self.tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(self.tokenizer)))))
        marks_spaces = any(t is not None and t.startswith(("Ġ", "▁")) for t in tokens)
        starts = [token_id for token_id, token in enumerate(tokens)
                  if token is not None and token_id not in special and _is_word_start_token(token, marks_spaces)]
        # The vocabulary's own spelling is not the word: byte-level BPE writes a space as 'Ġ', itself a letter
        # ('ĠĠ' is two spaces), and a piece of a multi-byte character decodes to nothing printable.
        words = self.tokenizer.batch_decode([[token_id] for token_id in starts])
        for token_id, word in zip(starts, words):
            allowed[token_id] = word.strip().isalpha()
        return allowed

    def train(self, mode: bool = True):
        self.model.train(mode)
        if getattr(self, "_train_attention", None):
            _set_attention(self.model, self._train_attention if mode else self._scoring_attention)
        return self

    def parameters(self):
        return self.model.parameters()


def _is_word_start_token(token: str, vocab_marks_spaces: bool) -> bool:
    """A token that begins a word: 'Ġgreat' / '▁great' in byte-BPE and SentencePiece vocabularies,
    any alphabetic non-'##' piece in WordPiece ones (which have no space marker)."""
    if token.startswith(("Ġ", "▁")):
        return token[1:].isalpha()
    if vocab_marks_spaces or token.startswith("##"):
        return False
    return token.isalpha()


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int, *, left: bool = False):
    """Token lists -> (ids, attention mask), padded on the right, or on the left for causal prefixes
    whose last token must line up."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(longest - len(seq), longest) if left else slice(0, len(seq))
        ids[row, span] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, span] = 1
    return ids, mask
