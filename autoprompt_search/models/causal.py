"""`CausalLMBackbone` (SmolLM2, GPT-2, Llama...): the log-likelihood of the label word and the template
text after it, given everything before it. The prefix is run once per example and its key/value
cache shared by all classes; only the few continuation positions are projected onto the vocabulary, in
chunks sized by the vocabulary so that a 262k one (Gemma 3) holds no more at once than a 49k one."""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..prompts import Verbalizer, render_blocks, word_in_context
from .base import Backbone, Batch, Encoded, output_projection, pad_sequences, vocabulary_logits
from .combine import combine_word_scores


# fp32 logits held at once when continuation positions are scored without gradients: 96 MiB is 512 rows of
# SmolLM2's 49k vocabulary, 96 rows of Gemma 3's 262k one (512 of those rows were 537 MB a tensor).
LOGITS_BYTES_PER_CHUNK = 96 * 2**20
# With gradients, each projected position's logits are kept for the backward pass. Past this many bytes
# (a label-first template on a 262k vocabulary: 8 x 2 x 45 rows, 755 MB a tensor) the rows are projected in
# chunks of this size whose logits are recomputed in the backward pass instead of kept; below it nothing
# changes (SmolLM2's 49k vocabulary allows 1365 rows, more than a label-first SST-2 batch of 8 usually has).
# On Gemma this and the byte-sized chunks above lowered an 8-step evaluation's peak by 1.2-1.5 GB
# (results/memory_gemma_label_first.md).
GRAD_LOGITS_BYTES = 256 * 2**20


def rows_per_chunk(vocabulary: int, budget: int) -> int:
    """Rows of fp32 logits over `vocabulary` entries that fit in `budget` bytes (at least one)."""
    return max(1, budget // (4 * vocabulary))


class CausalLMBackbone(Backbone):
    kind = "causal"

    def order_blocks(self, query, demos):
        # The label is read at the end of a causal prompt, so demonstrations come first.
        return [*demos, query]

    def _continuation(self, prefix: str, rest: str, prefix_ids: list[int]) -> list[int]:
        full = self.tokenizer(prefix + rest, add_special_tokens=False)["input_ids"]
        if full[:len(prefix_ids)] == prefix_ids and len(full) > len(prefix_ids):
            return full[len(prefix_ids):]
        return self.tokenizer(rest, add_special_tokens=False)["input_ids"]

    def encode(self, example, template, verbalizer, demonstrations=(), max_length=None) -> Encoded:
        blocks = self.blocks(example, template, verbalizer, demonstrations)
        rendered = render_blocks(blocks, self.tokenizer, max_length=max_length or self.max_length,
                                 slot_text=" " + self._longest_word(verbalizer))
        prefix = rendered.prefix
        prefix_ids = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        if not prefix_ids:
            prefix_ids = [self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None
                          else self.tokenizer.eos_token_id]
        continuations = [self._continuation(prefix, word_in_context(word, prefix) + rendered.suffix, prefix_ids)
                         for word in verbalizer.all_words]
        return Encoded(prefix_ids, len(prefix_ids), continuations, text=rendered.prefix + "{label}" + rendered.suffix)

    def collate(self, items):
        input_ids, attention = pad_sequences([item.input_ids for item in items], self.tokenizer.pad_token_id, left=True)
        num_classes = len(items[0].continuations)
        longest = max(len(c) for item in items for c in item.continuations)
        cont = torch.full((len(items), num_classes, longest), self.tokenizer.pad_token_id, dtype=torch.long)
        cont_mask = torch.zeros((len(items), num_classes, longest), dtype=torch.long)
        for b, item in enumerate(items):
            for c, tokens in enumerate(item.continuations):
                cont[b, c, :len(tokens)] = torch.tensor(tokens)
                cont_mask[b, c, :len(tokens)] = 1
        return Batch(input_ids, attention, continuation_ids=cont, continuation_mask=cont_mask)

    def _cache_argument(self) -> str:
        # transformers 5 renamed `past_key_values` to `cache`; support both. Looked up once.
        if not hasattr(self, "_cache_kwarg"):
            parameters = inspect.signature(self.model.base_model.forward).parameters
            self._cache_kwarg = "cache" if "cache" in parameters else "past_key_values"
        return self._cache_kwarg

    def _longest_word(self, verbalizer: Verbalizer) -> str:
        """The label word with the most tokens, which sizes the slot when truncating (once per verbalizer)."""
        cache = self.__dict__.setdefault("_longest_words", {})
        words = verbalizer.all_words
        if words not in cache:
            cache[words] = max(words, key=lambda w: len(self.tokenizer(" " + w, add_special_tokens=False)["input_ids"]))
        return cache[words]

    def _run_prefix(self, batch: Batch):
        positions = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                    position_ids=positions, use_cache=True)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        return out.last_hidden_state[:, -1], cache, positions[:, -1]

    def _vocab_logprobs(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(vocabulary_logits(self.model, hidden).float(), dim=-1)

    def _target_logprobs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """[N]: log P(targets[i] | hidden[i]) over the full vocabulary. A long label-first continuation
        (every sentence token, once per class) goes through the vocabulary in chunks of a few hundred MB:
        without gradients so that little is held at a time (results/eval_memory.md: SST-2's test set with a
        label-first template peaked at 1773 MB instead of 2101 MB), with gradients only past
        `GRAD_LOGITS_BYTES`, each chunk's logits recomputed in the backward pass rather than kept."""
        vocabulary = output_projection(self.model)[0].shape[0]
        if not torch.is_grad_enabled():
            size = rows_per_chunk(vocabulary, LOGITS_BYTES_PER_CHUNK)
            return torch.cat([self._gathered_logprobs(rows, ids)
                              for rows, ids in zip(hidden.split(size), targets.split(size))])
        size = rows_per_chunk(vocabulary, GRAD_LOGITS_BYTES)
        if len(hidden) <= size:
            return self._gathered_logprobs(hidden, targets)
        return torch.cat([checkpoint(self._gathered_logprobs, rows, ids, use_reentrant=False)
                          for rows, ids in zip(hidden.split(size), targets.split(size))])

    def _gathered_logprobs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self._vocab_logprobs(hidden).gather(1, targets[:, None])[:, 0]

    def label_position_logprobs(self, batch: Batch) -> torch.Tensor:
        batch = batch.to(self.device)
        last_hidden, _, _ = self._run_prefix(batch)
        return self._vocab_logprobs(last_hidden)

    def class_scores(self, batch: Batch, verbalizer: Verbalizer | None = None) -> torch.Tensor:
        """Sum of log P(continuation token | everything before it) over each class's continuation; a
        class with several label words combines its words' sums (`verbalizer.combine`)."""
        return combine_word_scores(self._continuation_scores(batch), verbalizer)

    def _continuation_scores(self, batch: Batch) -> torch.Tensor:
        """[B, W]: the log-likelihood of each encoded continuation (one per label word)."""
        batch = batch.to(self.device)
        last_hidden, cache, last_position = self._run_prefix(batch)
        first_logprobs = self._vocab_logprobs(last_hidden)  # [B, V], shared by all classes
        cont, cont_mask = batch.continuation_ids, batch.continuation_mask
        size, num_classes, length = cont.shape
        scores = first_logprobs.gather(1, cont[:, :, 0])  # [B, C]
        if length == 1:
            return scores
        # Every class continues the same prefix: repeat its cache instead of re-running it.
        cache.batch_repeat_interleave(num_classes)
        flat = cont.reshape(size * num_classes, length)
        flat_mask = cont_mask.reshape(size * num_classes, length)
        prefix_mask = batch.attention_mask.repeat_interleave(num_classes, dim=0)
        positions = last_position.repeat_interleave(num_classes)[:, None] + 1 + torch.arange(length - 1, device=self.device)
        out = self.model.base_model(input_ids=flat[:, :-1], attention_mask=torch.cat([prefix_mask, flat_mask[:, :-1]], 1),
                                    position_ids=positions, use_cache=True, **{self._cache_argument(): cache})
        hidden = out.last_hidden_state  # [B*C, M-1, H]
        targets = flat[:, 1:]
        target_mask = flat_mask[:, 1:].bool()
        selected = hidden[target_mask]  # only real continuation positions reach the vocabulary projection
        token_logprobs = self._target_logprobs(selected, targets[target_mask])
        rest = torch.zeros(size * num_classes, length - 1, device=self.device, dtype=token_logprobs.dtype)
        rest[target_mask] = token_logprobs
        return scores + rest.sum(1).reshape(size, num_classes)
