"""`CausalGenerator`: template generation with a decoder-only model, which can only continue text (see
its docstring for how the two spans are searched); with its fast (cached) and reference (from scratch)
search states."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from ..errors import UserError
from ..models import pad_sequences
from ..tasks import Example, TaskSpec
from .base import _GeneratorBase, _cache_kwargs, _chunks
from .beam import _SPAN1, LABEL_MARK, StepScores, _Candidate, _Rules
from .formats import _check_formats, _dot_ids, _encode, _lower_first, _strip_final_punctuation, _upper_first
from .objectives import (DiscriminativeSetup, DiscriminativeTracker, check_objective, class_margins,
                         discriminative_sums, step_deltas)


class CausalGenerator(_GeneratorBase):
    """Template generation with a decoder-only language model.

    A causal model cannot fill a gap, so each candidate is written left to right as
    `span 1, label word, span 2` and scored on every training example. Per example the text is
    `prefix + span 1 + " " + label word + span 2 + ending`:

    * format A (x first): prefix = the sentence, ending = `end_text` (a newline: the template ends there);
    * format B (template first): prefix = the start-of-text token, ending = the first token of the sentence;
    * pair: prefix = the first sentence without its final punctuation, ending = the first token of the
      second sentence (first letter lower-cased).

    The objective is the sum over training examples of log P(span 1, label word, span 2, ending | prefix).
    One beam search runs over the whole training set. At every step each candidate may add a token to the
    current span (scored by the summed log-probabilities of that token, same token for every example) or end
    the span: ending span 1 adds each example's own label word, ending span 2 adds each example's ending;
    the step scores them by the summed log-probabilities of those tokens. Label words and endings must be
    single tokens, so all candidates advance one token per step and share one batched, cached forward.
    Span 2 is kept short (`max_span2_tokens`).

    The beam keeps a bank of `beam_width` candidates per stage (span 1, span 2, finished), as grid beam
    search does for forced tokens. With one shared beam a candidate still writing span 1 has not yet paid
    for the label word, which a plain LM finds improbable after most text (SmolLM2: about -10 per example
    in SST-2), so span-1 candidates always outrank the others and no candidate ever finishes. Within a bank
    all active candidates have been scored on the same number of tokens. Finished candidates stay in their
    bank with their score; on the last of `max_steps` steps only moves that finish a candidate are
    considered. Cost per step: up to 2 x `beam_width` x examples rows, fed in forwards of at most
    `max_batch_rows` rows and `max_batch_tokens` cached positions (rows x (prefix + generated tokens)): the
    keys/values a forward holds grow with both, and long inputs (RTE premises) would otherwise need tens of
    GB. `chunk_size` is the number of examples per forward of `reference_generate`.

    `objective="discriminative"` (objectives.py) scores instead how much more probable each example's
    gold label word is than the other classes' words after `prefix + span 1`, with the span's
    length-normalised fluency weighted by `fluency_weight` as a prior (`length_normalize=False`: summed).
    It needs the input before the label word, so it searches format A (and pair, where the label word
    sees only the first sentence); format B, where the label word comes before the sentence, is refused.
    """

    def __init__(self, model, tokenizer, beam_width: int = 100, max_steps: int = 16,
                 forbidden_token_ids: Iterable[int] | None = None, chunk_size: int = 4, device=None, *,
                 max_span2_tokens: int = 5, end_text: str | None = "\n", keep_per_format: int | None = None,
                 max_input_tokens: int = 256, max_batch_rows: int = 1024, max_batch_tokens: int = 32768,
                 objective: str = "likelihood", fluency_weight: float = 0.1, length_normalize: bool = True,
                 precision: str = "fp32") -> None:
        check_objective(objective, fluency_weight)
        self.objective, self.fluency_weight, self.length_normalize = objective, fluency_weight, length_normalize
        super().__init__(model, tokenizer, beam_width=beam_width, max_steps=max_steps,
                         forbidden_token_ids=forbidden_token_ids, chunk_size=chunk_size, device=device,
                         keep_per_format=keep_per_format, max_input_tokens=max_input_tokens, precision=precision)
        self.max_span2_tokens = max_span2_tokens
        if max_batch_rows < 1 or max_batch_tokens < 1:
            raise UserError(f"max_batch_rows and max_batch_tokens must be >= 1; got {max_batch_rows}, "
                            f"{max_batch_tokens}")
        self.max_batch_rows, self.max_batch_tokens = max_batch_rows, max_batch_tokens
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise UserError("the tokenizer has neither a start-of-text nor an end-of-text token")
        self.start = int(start)
        self.end_token = self._single_token(end_text, "end_text") if end_text is not None else tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.start

    def _single_token(self, text: str, what: str) -> int:
        ids = _encode(self.tokenizer, text)
        if len(ids) != 1:
            raise UserError(f"{what} {text!r} is {len(ids)} tokens for this tokenizer "
                            f"({self.tokenizer.convert_ids_to_tokens(ids)}); the causal generator needs one token")
        return ids[0]

    def sequences(self, task: TaskSpec, examples: Sequence[Example], words: list[str], fmt: str):
        """Per example: the prefix ids, the label word id and the ending id."""
        enc = lambda text: _encode(self.tokenizer, text)  # noqa: E731
        prefixes, word_ids, endings = [], [], []
        for example, word in zip(examples, words):
            word_ids.append(self._single_token(" " + word, "label word"))
            if fmt == "A":
                prefix, ending = enc(_upper_first(example.texts[0])), self.end_token
            elif fmt == "B":
                prefix, ending = [], enc(" " + _upper_first(example.texts[0]))[0]
            else:
                prefix = enc(_upper_first(_strip_final_punctuation(example.texts[0])))
                ending = enc(" " + _lower_first(example.texts[1]))[0]
            prefixes.append([self.start] + prefix[-(self.max_input_tokens - 1):])
            endings.append(ending)
        return prefixes, word_ids, endings

    def _rules(self) -> _Rules:
        mask = self._forbidden_mask([self.end_token] if self.end_token is not None else [])
        return _Rules(torch.stack([mask, mask]), torch.tensor(_dot_ids(self.texts), dtype=torch.long),
                      max_span2_tokens=self.max_span2_tokens, banked=True)

    def _spans(self, cand: _Candidate) -> tuple[list[int], list[int]]:
        cut = cand.tokens.index(LABEL_MARK)
        return list(cand.tokens[:cut]), [t for t in cand.tokens[cut + 1:] if t >= 0]

    def _formats(self, task: TaskSpec, formats) -> tuple[str, ...]:
        if self.objective != "discriminative":
            return _check_formats(task, formats)
        if formats is None and task.num_sentences == 1:
            return ("A",)
        formats = _check_formats(task, formats)
        if "B" in formats:
            raise UserError("the discriminative objective cannot search format B with a causal model: the "
                            "label word comes before the sentence, so it cannot depend on it; use format A")
        return formats

    def _setup(self, word_ids: list[int], class_words: Sequence[str]) -> DiscriminativeSetup | None:
        if self.objective != "discriminative":
            return None
        class_ids = [self._single_token(" " + w, "label word") for w in class_words]
        if len(set(class_ids)) != len(class_ids):
            raise UserError(f"the discriminative objective needs distinct label words; got {list(class_words)}")
        gold = [class_ids.index(w) for w in word_ids]
        return DiscriminativeSetup(torch.tensor(class_ids, device=self.device), torch.tensor(gold, device=self.device),
                                   self.fluency_weight, self.length_normalize)

    def _search_parts(self, task, examples, words, fmt, fast: bool, class_words=()):
        prefixes, word_ids, endings = self.sequences(task, examples, words, fmt)
        cls = _CausalFastState if fast else _CausalReferenceState
        state = cls(self, prefixes, word_ids, endings, self._setup(word_ids, class_words))
        return state.root, state.advance, self._rules()


def _fed_tokens(item: _Candidate, word_id: int) -> list[int]:
    return [word_id if t == LABEL_MARK else t for t in item.tokens]


def _at_least_fp32(logits: torch.Tensor) -> torch.Tensor:
    """Logits under bf16 autocast come back in bf16: the log-sum-exps over the vocabulary need fp32."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def _logits_kwargs(model) -> dict:
    """Ask for the last position's logits only, where the model supports it (saves the LM head on prompts)."""
    import inspect

    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def _step_scores(logits: torch.Tensor, items: list[_Candidate], word_ids: torch.Tensor,
                 endings: torch.Tensor) -> StepScores:
    """Next-token logits [B, E, V] of B items on E examples -> summed log-probabilities (extension [B, V],
    span end [B]). log_softmax = logits - logsumexp, so the [B, E, V] log-probabilities are never built."""
    lse = torch.logsumexp(logits, dim=-1).double()  # [B, E]
    stages = torch.tensor([c.stage for c in items], device=logits.device)
    markers = torch.where(stages.unsqueeze(1) == _SPAN1, word_ids.unsqueeze(0), endings.unsqueeze(0))
    ends = (logits.gather(2, markers.unsqueeze(2)).squeeze(2).double() - lse).sum(1)
    ext = logits.sum(1, dtype=torch.float64) - lse.sum(1, keepdim=True)
    return ext, ends


def _reference_step_scores(log_probs: torch.Tensor, item: _Candidate, word_ids: torch.Tensor,
                           endings: torch.Tensor) -> StepScores:
    """Plain version for one item: full log-probabilities [E, V] -> (extension [V], span end [])."""
    markers = word_ids if item.stage == _SPAN1 else endings
    return log_probs.sum(0), log_probs[torch.arange(len(markers)), markers].sum()


class _CausalReferenceState:
    """Every step: one full forward of prefix + generated text for every beam item and example."""

    def __init__(self, gen: CausalGenerator, prefixes, word_ids, endings, setup=None) -> None:
        self.gen, self.prefixes, self.setup = gen, prefixes, setup
        self.word_ids, self.endings = torch.tensor(word_ids), torch.tensor(endings)

    def _item_scores(self, item: _Candidate) -> StepScores:
        if self.setup is not None:
            return self._discriminative_item_scores(item)
        gen = self.gen
        ext = torch.zeros(gen.vocab_size, dtype=torch.float64, device=gen.device)
        end = torch.zeros((), dtype=torch.float64, device=gen.device)
        for chunk in _chunks(len(self.prefixes), gen.chunk_size):
            seqs = [self.prefixes[i] + _fed_tokens(item, int(self.word_ids[i])) for i in chunk]
            ids, mask = pad_sequences(seqs, gen.pad, left=True)
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            logits = gen.model(input_ids=ids.to(gen.device), attention_mask=mask.to(gen.device),
                               position_ids=positions.to(gen.device), use_cache=False,
                               **_logits_kwargs(gen.model)).logits[:, -1]
            log_probs = torch.log_softmax(logits.double(), dim=-1)
            index = list(chunk)
            chunk_ext, chunk_end = _reference_step_scores(log_probs, item, self.word_ids[index].to(gen.device),
                                                          self.endings[index].to(gen.device))
            ext += chunk_ext
            end += chunk_end
        return ext, end

    def _discriminative_item_scores(self, item: _Candidate) -> StepScores:
        """F and D of the item recomputed from every position's logits, then the moves' changes."""
        gen, setup, count = self.gen, self.setup, len(self.prefixes)
        fed = len(item.tokens)
        cut = item.tokens.index(LABEL_MARK) if LABEL_MARK in item.tokens else None
        ext = torch.zeros(gen.vocab_size, dtype=torch.float64, device=gen.device)
        end, fluency, margin, margin_now = (torch.zeros((), dtype=torch.float64, device=gen.device) for _ in range(4))
        for chunk in _chunks(count, gen.chunk_size):
            index = list(chunk)
            seqs = [self.prefixes[i] + _fed_tokens(item, int(self.word_ids[i])) for i in chunk]
            ids, mask = pad_sequences(seqs, gen.pad, left=True)
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            logits = gen.model(input_ids=ids.to(gen.device), attention_mask=mask.to(gen.device),
                               position_ids=positions.to(gen.device), use_cache=False).logits.double()
            log_probs = torch.log_softmax(logits, dim=-1)
            width = ids.shape[1]
            for j in range(fed):  # the generated token j sits at width - fed + j, predicted one position earlier
                targets = ids[:, width - fed + j].to(gen.device)
                fluency += log_probs[:, width - fed + j - 1].gather(1, targets.unsqueeze(1)).sum()
            gold = setup.gold[index]
            if cut is not None:
                margin += class_margins(logits[:, width - fed + cut - 1], setup.class_ids, gold).sum()
            last = log_probs[:, -1]
            markers = (self.word_ids if item.stage == _SPAN1 else self.endings)[index].to(gen.device)
            ext += last.sum(0)
            end += last[torch.arange(len(index)), markers].sum()
            margin_now += class_margins(logits[:, -1], setup.class_ids, gold).sum()
        ext, end = step_deltas([item], (fluency / count).view(1), (margin / count).view(1), (ext / count).view(1, -1),
                               (end / count).view(1), (margin_now / count).view(1), setup)
        return ext[0], end[0]

    def root(self) -> StepScores:
        ext, end = self._item_scores(_Candidate((), _SPAN1, 0.0))
        return ext.unsqueeze(0), end.unsqueeze(0)

    def advance(self, parents: list[int], items: list[_Candidate]) -> StepScores:
        scores = [self._item_scores(item) for item in items]
        return torch.stack([s[0] for s in scores]), torch.stack([s[1] for s in scores])


class _CausalFastState:
    """Prefix keys/values computed once per example; each step feeds one token per (beam item, example)
    row through the model with a key-value cache.

    Examples are sorted by prefix length and cut into groups so that a forward holds at most
    `max_batch_rows` rows (all beam items x the group's examples; one forward per step when they fit) and
    `max_batch_tokens` cached positions, and pads the prefixes only to the group's longest. The generated
    tokens' keys/values are kept per row (copied out of the forward's cache, so the repeated prefix is freed)
    and gathered by parent as beams are selected.
    """

    def __init__(self, gen: CausalGenerator, prefixes, word_ids, endings, setup=None) -> None:
        from transformers.cache_utils import DynamicCache

        self.gen, self._cache_type, dev = gen, DynamicCache, gen.device
        self.order = sorted(range(len(prefixes)), key=lambda i: len(prefixes[i]))
        self.word_ids = torch.tensor([word_ids[i] for i in self.order], device=dev)
        self.endings = torch.tensor([endings[i] for i in self.order], device=dev)
        self.count = len(prefixes)
        self.setup = setup
        self.tracker = DiscriminativeTracker(self.count, setup, dev) if setup is not None else None
        self.gold = setup.gold[torch.tensor(self.order, device=dev)] if setup is not None else None
        self.lengths = [len(prefixes[i]) for i in self.order]
        self.prefix = []  # per group: (example range, mask [G, P], lengths [G], [(keys, values)] per layer)
        # (per step group: [(keys, values)] per layer with rows item-major, the step groups); None at the root
        self.generated: tuple[list, list[range]] | None = None
        logits = []
        for group in _chunks(self.count, max(1, gen.max_batch_rows)):
            ids, mask = pad_sequences([prefixes[self.order[i]] for i in group], gen.pad, left=True)
            ids, mask = ids.to(dev), mask.to(dev)
            cache = DynamicCache()
            out = gen.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0),
                            **_cache_kwargs(gen.model, cache), **_logits_kwargs(gen.model))
            self.prefix.append((group, mask, mask.sum(1), [(layer.keys, layer.values) for layer in cache.layers]))
            logits.append(_at_least_fp32(out.logits[:, -1]))
        root = [_Candidate((), _SPAN1, 0.0)]
        self.root_scores = self._finish(root, self._partial(torch.cat(logits).unsqueeze(0), root, range(self.count)))

    def _partial(self, logits: torch.Tensor, items: list[_Candidate], group: range) -> tuple:
        """This example group's contribution to the step's scores (summed over groups by `advance`)."""
        word_ids, endings = self.word_ids[group.start:group.stop], self.endings[group.start:group.stop]
        if self.setup is None:
            return _step_scores(logits, items, word_ids, endings)
        return discriminative_sums(logits, items, word_ids, endings, self.setup, self.gold[group.start:group.stop])

    def _finish(self, items: list[_Candidate], sums: tuple) -> StepScores:
        return sums if self.tracker is None else self.tracker.scores(items, sums)

    def root(self) -> StepScores:
        return self.root_scores

    def _groups(self, n_items: int, fed: int) -> list[range]:
        """Consecutive example ranges whose forward (n_items rows each, prefixes padded to the range's
        longest, plus the fed tokens) fits the row and token budgets; at least one example per range."""
        groups, start = [], 0
        for stop in range(1, self.count + 1):
            rows = n_items * (stop - start)
            width = self.lengths[stop - 1] + fed  # sorted ascending: the range's longest is its last
            if stop - start > 1 and (rows > self.gen.max_batch_rows or rows * width > self.gen.max_batch_tokens):
                groups.append(range(start, stop - 1))
                start = stop - 1
        groups.append(range(start, self.count))
        return groups

    def advance(self, parents: list[int], items: list[_Candidate]) -> StepScores:
        gen, dev, n_items = self.gen, self.gen.device, len(items)
        fed = len(items[0].tokens)  # every active item has advanced one token per step
        last = torch.tensor([item.tokens[-1] for item in items], device=dev)
        tokens = torch.where((last == LABEL_MARK).unsqueeze(1), self.word_ids.unsqueeze(0), last.unsqueeze(1))
        parent_rows = torch.tensor(parents, device=dev)
        if self.tracker is not None:
            self.tracker.follow(parents, items)
        sums = None
        new_generated, groups = [], self._groups(n_items, fed)
        for group in groups:
            kv, mask, lengths = self._group_cache(group, parent_rows, n_items)
            group_tokens = tokens[:, group.start:group.stop].reshape(-1, 1)
            mask = torch.cat([mask, torch.ones((mask.shape[0], fed), dtype=mask.dtype, device=dev)], 1)
            cache = self._cache_type(kv)
            out = gen.model(input_ids=group_tokens, attention_mask=mask, position_ids=(lengths + fed - 1).unsqueeze(1),
                            **_cache_kwargs(gen.model, cache))
            prefix_len = mask.shape[1] - fed
            new_generated.append([(layer.keys[:, :, prefix_len:].clone(), layer.values[:, :, prefix_len:].clone())
                                  for layer in cache.layers])
            part = self._partial(_at_least_fp32(out.logits[:, -1]).view(n_items, len(group), -1), items, group)
            sums = part if sums is None else tuple(a + b for a, b in zip(sums, part))
        self.generated = (new_generated, groups)
        return self._finish(items, sums)

    def _group_cache(self, group: range, parent_rows: torch.Tensor, n_items: int):
        """Keys/values of (prefix + generated so far) for the rows (item, example in `group`), item-major."""
        pieces = []  # (per-layer prefix kv [g, ...], mask, lengths) of the prefix groups this group covers
        for prefix_group, mask, lengths, layers in self.prefix:
            lo, hi = max(group.start, prefix_group.start), min(group.stop, prefix_group.stop)
            if lo < hi:
                sl = slice(lo - prefix_group.start, hi - prefix_group.start)
                pieces.append(([(k[sl], v[sl]) for k, v in layers], mask[sl], lengths[sl]))
        # Left padding: the real tokens are the last `length` columns, so cut the columns no row needs
        # and pad the pieces to a common width.
        width = max(int(p[2].max()) for p in pieces)
        keys_values, masks = [], []
        for layers, mask, _ in pieces:
            keep = min(width, mask.shape[1])
            pad = width - keep
            masks.append(torch.nn.functional.pad(mask[:, -keep:], (pad, 0)))
            keys_values.append([(torch.nn.functional.pad(k[:, :, -keep:], (0, 0, pad, 0)),
                                 torch.nn.functional.pad(v[:, :, -keep:], (0, 0, pad, 0))) for k, v in layers])
        prefix_kv = [(torch.cat([kv[layer][0] for kv in keys_values]), torch.cat([kv[layer][1] for kv in keys_values]))
                     for layer in range(len(keys_values[0]))]
        mask = torch.cat(masks).repeat(n_items, 1)
        lengths = torch.cat([p[2] for p in pieces]).repeat(n_items)
        generated = self._generated_rows(group, parent_rows)
        kv = []
        for layer, (pk, pv) in enumerate(prefix_kv):
            pk, pv = pk.repeat(n_items, 1, 1, 1), pv.repeat(n_items, 1, 1, 1)
            if generated is not None:
                gk, gv = generated[layer]
                pk, pv = torch.cat([pk, gk], 2), torch.cat([pv, gv], 2)
            kv.append((pk, pv))
        return kv, mask, lengths

    def _generated_rows(self, group: range, parent_rows: torch.Tensor) -> list | None:
        """The generated keys/values of the parents' rows for the examples in `group`."""
        if self.generated is None:
            return None
        stored, old_groups = self.generated
        layers = len(stored[0])
        out = []
        for layer in range(layers):
            key_parts, value_parts = [], []
            for old_group, kv in zip(old_groups, stored):
                lo, hi = max(group.start, old_group.start), min(group.stop, old_group.stop)
                if lo >= hi:
                    continue
                size = len(old_group)
                examples = torch.arange(lo - old_group.start, hi - old_group.start, device=parent_rows.device)
                rows = (parent_rows.unsqueeze(1) * size + examples.unsqueeze(0))  # [items, examples in overlap]
                key_parts.append(kv[layer][0][rows.flatten()].view(*rows.shape, *kv[layer][0].shape[1:]))
                value_parts.append(kv[layer][1][rows.flatten()].view(*rows.shape, *kv[layer][1].shape[1:]))
            keys, values = torch.cat(key_parts, 1), torch.cat(value_parts, 1)
            out.append((keys.flatten(0, 1), values.flatten(0, 1)))
        return out
