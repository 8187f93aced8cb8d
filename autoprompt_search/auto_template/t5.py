"""`T5Generator`: LM-BFF's template generation with T5, which fills the two spans around the label
word; with its fast (cached) and reference (from scratch) search states."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from ..errors import UserError
from ..models import pad_sequences
from ..tasks import Example, TaskSpec
from .base import _GeneratorBase, _cache_kwargs, _chunks
from .beam import _SPAN1, StepScores, _Candidate, _Rules
from .formats import _dot_ids, _encode, _lower_first, _strip_final_punctuation, _upper_first

OBJECTIVES = ("mean_logits", "sum_logprob")


def _beam_rows(parents: torch.Tensor, chunk: int) -> torch.Tensor:
    """Rows of the previous step's batch (beam-major: row = item * chunk + example) that the new items
    continue."""
    return (parents.unsqueeze(1) * chunk + torch.arange(chunk, device=parents.device)).flatten()


class T5Generator(_GeneratorBase):
    """LM-BFF's template generation with a T5 model.

    Each training example becomes a T5 input with its label word between two sentinels (formats in
    `FORMAT_DESCRIPTIONS`). The decoder starts from `<extra_id_0>` and a single beam search runs over the
    whole training set. With `objective="mean_logits"` (LM-BFF's code) a token's score is the log-softmax of
    the decoder logits averaged over the examples; with `"sum_logprob"` (the paper's objective) it is the sum
    over examples of each example's log-probability. Span 1 ends with `<extra_id_1>`, span 2 with
    `<extra_id_2>` or `</s>`; a finished candidate stays in the beam with its score. Forbidden tokens are
    masked before the best (width + 3) tokens of each item are taken. On the last of `max_steps` steps only
    moves that finish a candidate are considered (unfinished candidates cannot become templates).
    """

    def __init__(self, model, tokenizer, beam_width: int = 100, max_steps: int = 18,
                 forbidden_token_ids: Iterable[int] | None = None, chunk_size: int = 16, device=None, *,
                 objective: str = "mean_logits", keep_per_format: int | None = None,
                 max_input_tokens: int = 256, precision: str = "fp32") -> None:
        if objective not in OBJECTIVES:
            raise UserError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        super().__init__(model, tokenizer, beam_width=beam_width, max_steps=max_steps,
                         forbidden_token_ids=forbidden_token_ids, chunk_size=chunk_size, device=device,
                         keep_per_format=keep_per_format, max_input_tokens=max_input_tokens, precision=precision)
        self.objective = objective
        self.sentinels = [self._sentinel(i) for i in range(3)]
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        start = model.config.decoder_start_token_id
        self.decoder_prefix = [self.pad if start is None else int(start), self.sentinels[0]]

    def _sentinel(self, index: int) -> int:
        token = f"<extra_id_{index}>"
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise UserError(f"the tokenizer has no {token}; T5 template generation needs T5's sentinel tokens")
        return int(token_id)

    def encoder_inputs(self, task: TaskSpec, examples: Sequence[Example], words: list[str],
                       fmt: str) -> list[list[int]]:
        """The token ids of every example's T5 input for a format."""
        s0, s1 = self.sentinels[0], self.sentinels[1]
        enc = lambda text: _encode(self.tokenizer, text)  # noqa: E731
        out = []
        for example, word in zip(examples, words):
            label_part = [s0] + enc(" " + word) + [s1]
            if fmt == "A":
                ids = enc(_upper_first(example.texts[0])) + label_part + [self.eos]
                ids = ids[-self.max_input_tokens:]
            elif fmt == "B":
                ids = label_part + enc(" " + _upper_first(example.texts[0])) + [self.eos]
                ids = ids[: self.max_input_tokens]
            else:
                first = _upper_first(_strip_final_punctuation(example.texts[0]))
                ids = enc(first) + label_part + enc(" " + _lower_first(example.texts[1])) + [self.eos]
                ids = ids[: self.max_input_tokens]
            out.append(ids)
        return out

    def _rules(self) -> _Rules:
        others = [self._sentinel_or_none(i) for i in range(100)]
        sentinel_ids = [i for i in others if i is not None]
        span1 = self._forbidden_mask(sentinel_ids + [self.eos])
        span1[self.sentinels[1]] = False
        span2 = self._forbidden_mask(sentinel_ids)
        span2[[self.sentinels[2], self.eos]] = False
        ends = (frozenset({self.sentinels[1]}), frozenset({self.sentinels[2], self.eos}))
        return _Rules(torch.stack([span1, span2]), torch.tensor(_dot_ids(self.texts), dtype=torch.long), ends)

    def _sentinel_or_none(self, index: int) -> int | None:
        token_id = self.tokenizer.convert_tokens_to_ids(f"<extra_id_{index}>")
        return None if token_id is None or token_id == self.tokenizer.unk_token_id else int(token_id)

    def _spans(self, cand: _Candidate) -> tuple[list[int], list[int]]:
        cut = cand.tokens.index(self.sentinels[1])
        return list(cand.tokens[:cut]), list(cand.tokens[cut + 1: -1])

    def _finish(self, total: torch.Tensor, count: int) -> torch.Tensor:
        if self.objective == "mean_logits":
            return torch.log_softmax(total / count, dim=-1)
        return total

    def _search_parts(self, task, examples, words, fmt, fast: bool, class_words=()):
        inputs = self.encoder_inputs(task, examples, words, fmt)
        state = _T5FastState(self, inputs) if fast else _T5ReferenceState(self, inputs)
        return state.root, state.advance, self._rules()


class _T5ReferenceState:
    """Every step: one full encoder-decoder forward over all examples for every beam item."""

    def __init__(self, gen: T5Generator, inputs: list[list[int]]) -> None:
        self.gen = gen
        self.batches = [pad_sequences([inputs[i] for i in chunk], gen.pad, left=False) for chunk in
                        _chunks(len(inputs), gen.chunk_size)]
        self.count = len(inputs)

    def _item_scores(self, item: _Candidate) -> torch.Tensor:
        gen = self.gen
        decoder_ids = torch.tensor([gen.decoder_prefix + list(item.tokens)], device=gen.device)
        total = torch.zeros(gen.vocab_size, dtype=torch.float64, device=gen.device)
        for ids, mask in self.batches:
            out = gen.model(input_ids=ids.to(gen.device), attention_mask=mask.to(gen.device),
                            decoder_input_ids=decoder_ids.expand(ids.shape[0], -1))
            total += gen._aggregate(out.logits[:, -1].unsqueeze(0), gen.objective)[0]
        return gen._finish(total, self.count)

    def root(self) -> StepScores:
        return self._item_scores(_Candidate((), _SPAN1, 0.0)).unsqueeze(0), None

    def advance(self, parents: list[int], items: list[_Candidate]) -> StepScores:
        return torch.stack([self._item_scores(item) for item in items]), None


class _T5FastState:
    """Encoder outputs and cross-attention keys/values computed once per example; the decoder
    self-attention cache kept per (beam item, example) row and reordered as beams are selected."""

    def __init__(self, gen: T5Generator, inputs: list[list[int]]) -> None:
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache
        from transformers.modeling_outputs import BaseModelOutput

        self.gen, self.count = gen, len(inputs)
        self._cache_types = (DynamicCache, EncoderDecoderCache, BaseModelOutput)
        self.chunks = []
        root_total = torch.zeros(gen.vocab_size, dtype=torch.float64, device=gen.device)
        for chunk in _chunks(len(inputs), gen.chunk_size):
            ids, mask = pad_sequences([inputs[i] for i in chunk], gen.pad, left=False)
            ids, mask = ids.to(gen.device), mask.to(gen.device)
            hidden = gen.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            decoder_ids = torch.tensor([gen.decoder_prefix], device=gen.device).expand(len(chunk), -1)
            out = gen.model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), attention_mask=mask,
                            decoder_input_ids=decoder_ids, **_cache_kwargs(gen.model, cache))
            self.chunks.append({
                "size": len(chunk), "hidden": hidden, "mask": mask,
                "cross": [(layer.keys, layer.values) for layer in cache.cross_attention_cache.layers],
                "self": [(layer.keys, layer.values) for layer in cache.self_attention_cache.layers],
            })
            root_total += gen._aggregate(out.logits[:, -1].unsqueeze(0), gen.objective)[0]
        self.root_scores = gen._finish(root_total, self.count).unsqueeze(0)

    def root(self) -> StepScores:
        return self.root_scores, None

    def advance(self, parents: list[int], items: list[_Candidate]) -> StepScores:
        DynamicCache, EncoderDecoderCache, BaseModelOutput = self._cache_types
        gen, n_items = self.gen, len(items)
        parent_rows = torch.tensor(parents, device=gen.device)
        last = torch.tensor([item.tokens[-1] for item in items], device=gen.device)
        total = torch.zeros((n_items, gen.vocab_size), dtype=torch.float64, device=gen.device)
        for chunk in self.chunks:
            size = chunk["size"]
            rows = _beam_rows(parent_rows, size)
            self_kv = [(k[rows], v[rows]) for k, v in chunk["self"]]
            cross_kv = [(k.repeat(n_items, 1, 1, 1), v.repeat(n_items, 1, 1, 1)) for k, v in chunk["cross"]]
            cache = EncoderDecoderCache(DynamicCache(self_kv), DynamicCache(cross_kv))
            hidden = chunk["hidden"].repeat(n_items, 1, 1)
            out = gen.model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                            attention_mask=chunk["mask"].repeat(n_items, 1),
                            decoder_input_ids=last.repeat_interleave(size).unsqueeze(1),
                            **_cache_kwargs(gen.model, cache))
            chunk["self"] = [(layer.keys, layer.values) for layer in cache.self_attention_cache.layers]
            logits = out.logits[:, -1].view(n_items, size, -1)
            total += gen._aggregate(logits, gen.objective)
        return gen._finish(total, self.count), None
