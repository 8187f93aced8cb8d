"""Automatic template generation (LM-BFF "auto T").

One beam search serves the whole training set: every training example contributes to the score of every
candidate, so the search finds the template text that best fits the task as a whole.

* `T5Generator` follows LM-BFF's `generate_template.py`: the label word of each example is put between two
  T5 sentinel spans and T5 fills the spans; the filled spans become the template text around the mask.
* `CausalGenerator` does the same with a decoder-only model, which can only continue text; see its
  docstring for how the two spans are searched.

Both have a fast `generate` (encoder outputs / prompt prefixes computed once, all beam items decoded in one
batch with a key-value cache, selection with `torch.topk`) and a `reference_generate` that re-runs every
forward from scratch for every beam item and step. Both return the same ranked templates.
"""
from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from ..models import pad_sequences
from ..errors import UserError
from ..tasks import Example, TaskSpec, get_task

SINGLE_SENTENCE_FORMATS = ("A", "B")
PAIR_FORMATS = ("pair",)
FORMAT_DESCRIPTIONS = {
    "A": "sentence first: <x> <span 1> <label word> <span 2>",
    "B": "template first: <span 1> <label word> <span 2> <x>",
    "pair": "<x1 without final punctuation> <span 1> <label word> <span 2> <x2>",
}
OBJECTIVES = ("mean_logits", "sum_logprob")

# Characters that LM-BFF template syntax cannot hold in literal text ("_" means a space, "*" delimits
# variables, braces mark the readable syntax) or that would break a one-template-per-line file.
_UNREPRESENTABLE_CHARS = set("*_{}\n\r\t\ufffd")

# Stages of a candidate: writing span 1, writing span 2, finished.
_SPAN1, _SPAN2, _DONE = 0, 1, 2
# Markers in a causal candidate's token list: where the label word / the end of the template went.
LABEL_MARK = -1
END_MARK = -2


@dataclass(frozen=True)
class GeneratedTemplate:
    template: str  # LM-BFF syntax, e.g. "*cls**sent_0*_A*mask*_movie.*sep+*"
    readable: str  # e.g. "{cls}{sent_0} A{mask} movie.{sep+}"
    score: float  # the search objective of the candidate (higher is better)
    format: str  # "A", "B" or "pair"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "GeneratedTemplate":
        missing = {"template", "readable", "score", "format"} - set(data)
        if missing:
            raise UserError(f"generated template entry {data!r} lacks the fields {sorted(missing)}")
        return cls(str(data["template"]), str(data["readable"]), float(data["score"]), str(data["format"]))


def save_templates(templates: Sequence[GeneratedTemplate], path: str | Path) -> tuple[Path, Path]:
    """Write LM-BFF's format (one template per line) to `path` and the scores to `path` with `.json`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    json_path = path.with_suffix(".json") if path.suffix != ".json" else path.with_suffix(".scores.json")
    path.write_text("".join(t.template + "\n" for t in templates), encoding="utf-8")
    payload = {"templates": [t.to_dict() for t in templates]}
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path, json_path


def load_generated_templates(json_path: str | Path) -> list[GeneratedTemplate]:
    json_path = Path(json_path)
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{json_path}: cannot read generated templates ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("templates"), list):
        raise UserError(f"{json_path}: expected an object with a 'templates' list")
    return [GeneratedTemplate.from_dict(entry) for entry in data["templates"]]


# ---------------------------------------------------------------------------------------------------------
# Text helpers


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _strip_final_punctuation(text: str) -> str:
    text = text.rstrip()
    return text[:-1].rstrip() if text and text[-1] in string.punctuation else text


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def token_texts(tokenizer, vocab_size: int) -> list[str]:
    """The surface text of every token id, with a leading space where the token starts a word."""
    n = min(len(tokenizer), vocab_size)
    pieces = tokenizer.convert_ids_to_tokens(list(range(n)))
    texts = []
    for token_id, piece in enumerate(pieces):
        if piece is None:
            texts.append("")
        elif "\u2581" in piece:  # sentencepiece marks a space with U+2581
            texts.append(piece.replace("\u2581", " "))
        else:
            texts.append(tokenizer.decode([token_id], clean_up_tokenization_spaces=False))
    return texts + [""] * (vocab_size - n)


def default_forbidden_token_ids(tokenizer, vocab_size: int) -> set[int]:
    """Tokens never added to a template: special tokens, lone spaces, runs of dots, and tokens whose text
    the LM-BFF syntax cannot hold (`*`, `_`, braces, newlines, partial UTF-8 bytes)."""
    texts = token_texts(tokenizer, vocab_size)
    forbidden = set(int(i) for i in tokenizer.all_special_ids if i is not None)
    for token_id, text in enumerate(texts):
        core = text.strip()
        if token_id >= len(tokenizer) or not core:
            forbidden.add(token_id)
        elif len(core) >= 2 and set(core) == {"."}:
            forbidden.add(token_id)
        elif _UNREPRESENTABLE_CHARS & set(text):
            forbidden.add(token_id)
    return forbidden


def _dot_ids(texts: list[str]) -> list[int]:
    return [i for i, text in enumerate(texts) if text.strip() == "."]


def _span_literal(token_ids: Iterable[int], texts: list[str]) -> str:
    return "".join(texts[i] for i in token_ids).replace(" ", "_")


def _template_for(fmt: str, span1: str, span2: str) -> str:
    sentence_follows = "" if span2.endswith("_") else "+"
    if fmt == "A":
        return f"*cls**sent_0*{span1}*mask*{span2}*sep+*"
    if fmt == "B":
        return f"*cls*{span1}*mask*{span2}*{sentence_follows}sent_0**sep+*"
    if fmt == "pair":
        return f"*cls**sent-_0*{span1}*mask*{span2}*{sentence_follows}sentl_1**sep+*"
    raise AssertionError(fmt)


def _readable_fallback(template: str) -> str:
    parts = template.split("*")
    return "".join(p.replace("_", " ") if i % 2 == 0 else "{" + p + "}" for i, p in enumerate(parts))


def _validated(template: str, num_sentences: int) -> str | None:
    """The readable form of a valid template, None if it is not valid for the task."""
    try:
        from ..prompts import Template
    except ImportError:  # the template module not there yet: check the essentials ourselves
        slots_ok = all(f"sent_{i}*" in template or f"sentl_{i}*" in template for i in range(num_sentences))
        return _readable_fallback(template) if template.count("*mask*") == 1 and slots_ok else None
    try:
        parsed = Template.parse(template)
        parsed.validate(num_sentences=num_sentences)
    except UserError:
        return None
    return parsed.to_readable()


# ---------------------------------------------------------------------------------------------------------
# Inputs shared by both generators


def _check_formats(task: TaskSpec, formats: Sequence[str] | None) -> tuple[str, ...]:
    allowed = PAIR_FORMATS if task.num_sentences == 2 else SINGLE_SENTENCE_FORMATS
    if formats is None:
        return allowed
    formats = tuple(formats)
    bad = [f for f in formats if f not in allowed]
    if bad or not formats:
        raise UserError(f"formats {list(formats)} are not available for task {task.name} "
                        f"({task.num_sentences} sentence(s)); expected some of {list(allowed)}")
    return formats


def _label_words_of(task: TaskSpec, examples: Sequence[Example], label_words: dict | None) -> list[str]:
    """The label word of every training example (STS-B style regression: the low/high pole by score)."""
    words = dict(task.label_words if label_words is None else label_words)
    if not examples:
        raise UserError(f"task {task.name}: template generation needs at least one training example")
    out = []
    for index, example in enumerate(examples):
        if len(example.texts) != task.num_sentences:
            raise UserError(f"training example {index} has {len(example.texts)} sentence(s); task "
                            f"{task.name} expects {task.num_sentences}")
        if example.label is None:
            raise UserError(f"training example {index} has no label; template generation needs gold labels")
        if task.is_regression:
            low, high = task.regression_range
            label = task.labels[0] if float(example.label) < (low + high) / 2 else task.labels[1]
        else:
            label = task.labels[task.label_index(example.label)]
        if label not in words or not str(words[label]).strip():
            raise UserError(f"no label word for label {label!r} of task {task.name}; "
                            f"label_words has {sorted(words)}")
        out.append(str(words[label]).strip())
    return out


def _keep_count(task: TaskSpec, beam_width: int, keep_per_format: int | None) -> int:
    if keep_per_format is not None:
        return keep_per_format
    return beam_width if task.num_sentences == 2 else max(1, beam_width // 2)


# ---------------------------------------------------------------------------------------------------------
# The beam search shared by both generators


@dataclass(frozen=True)
class _Candidate:
    tokens: tuple[int, ...]  # generated tokens (T5: vocabulary ids incl. sentinels; causal: ids and marks)
    stage: int
    score: float
    span2_length: int = 0


@dataclass
class _Rules:
    """Which tokens a candidate may add and what adding a token does to it."""

    stage_forbidden: torch.Tensor  # bool [2, V]: tokens masked while writing span 1 / span 2
    dot_ids: torch.Tensor  # "." tokens: never a second one right after a first one
    span_ends: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset())  # T5: tokens ending a span
    max_span2_tokens: int | None = None
    # Causal search: one bank of `width` candidates per stage (span 1, span 2, finished), so a candidate is
    # only compared with candidates that have placed as many of the label word / ending as itself.
    banked: bool = False

    def mask(self, items: list[_Candidate], scores: torch.Tensor) -> torch.Tensor:
        stages = torch.tensor([c.stage for c in items], device=scores.device)
        scores = scores.masked_fill(self.stage_forbidden.to(scores.device)[stages], float("-inf"))
        dot_set = set(self.dot_ids.tolist())
        after_dot = [b for b, c in enumerate(items) if c.tokens and c.tokens[-1] in dot_set]
        if after_dot and len(dot_set):
            rows = torch.tensor(after_dot, device=scores.device)
            scores[rows.unsqueeze(1), self.dot_ids.to(scores.device).unsqueeze(0)] = float("-inf")
        if self.max_span2_tokens is not None:
            full = [b for b, c in enumerate(items) if c.stage == _SPAN2 and c.span2_length >= self.max_span2_tokens]
            if full:
                scores[torch.tensor(full, device=scores.device)] = float("-inf")
        return scores

    def finishing_only(self, items: list[_Candidate], ext: torch.Tensor,
                       end: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """On the last step keep only moves that finish a candidate: anything still unfinished afterwards
        is dropped, so it must not push finished candidates out of the beam."""
        closing = torch.full_like(ext, float("-inf"))
        end_tokens = sorted(self.span_ends[_SPAN2])
        for b, item in enumerate(items):
            if item.stage == _SPAN2 and end_tokens:
                closing[b, end_tokens] = ext[b, end_tokens]
        if end is not None:
            in_span2 = torch.tensor([c.stage == _SPAN2 for c in items], device=end.device)
            end = end.masked_fill(~in_span2, float("-inf"))
        return closing, end

    def extend(self, item: _Candidate, token: int, token_score: float) -> _Candidate:
        stage, span2_length = item.stage, item.span2_length
        if token in self.span_ends[stage]:
            stage += 1
        elif stage == _SPAN2:
            span2_length += 1
        return _Candidate(item.tokens + (token,), stage, item.score + token_score, span2_length)

    def end(self, item: _Candidate, end_score: float) -> _Candidate:
        mark = LABEL_MARK if item.stage == _SPAN1 else END_MARK
        return _Candidate(item.tokens + (mark,), item.stage + 1, item.score + end_score, item.span2_length)


# A step's scores for the active candidates: extension scores [B, V] and, for causal models, the score of
# ending the current span [B] (None for T5, whose spans end with a sentinel token).
StepScores = tuple[torch.Tensor, "torch.Tensor | None"]


def _target_stages(items: list[_Candidate], token_ids: torch.Tensor, rules: _Rules) -> torch.Tensor:
    """The stage each (item, token) extension lands in: the item's own, or the next one for a span end."""
    stages = torch.tensor([c.stage for c in items], device=token_ids.device).unsqueeze(1).expand_as(token_ids)
    for stage, ends in enumerate(rules.span_ends):
        if ends:
            is_end = torch.isin(token_ids, torch.tensor(sorted(ends), device=token_ids.device))
            stages = torch.where(is_end & (stages == stage), stages + 1, stages)
    return stages


def _chosen_indices(pool: torch.Tensor, targets: torch.Tensor, width: int, banked: bool) -> list[int]:
    """Indices of the best `width` finite pool entries, or the best `width` per target stage when banked
    (banks in stage order, best first within a bank)."""
    groups = [torch.ones_like(targets, dtype=torch.bool)] if not banked else [targets == s for s in
                                                                               (_SPAN1, _SPAN2, _DONE)]
    chosen: list[int] = []
    for in_group in groups:
        scores = pool.masked_fill(~in_group, float("-inf"))
        take = min(width, int(torch.isfinite(scores).sum()))
        if take:
            chosen += scores.topk(take).indices.tolist()
    return chosen


def _select_fast(items, ext, end, finished, width, rules) -> tuple[list[_Candidate], list[int], list[_Candidate]]:
    """Keep the best `width` (per stage when banked) of: finished candidates, each item's best (width+3)
    tokens, each item's span end."""
    k = min(width + 3, ext.shape[1])
    top_scores, top_ids = ext.topk(k, dim=1)
    dev = ext.device
    base = torch.tensor([c.score for c in items], dtype=torch.float64, device=dev)
    pools = [torch.tensor([c.score for c in finished], dtype=torch.float64, device=dev),
             (base.unsqueeze(1) + top_scores).flatten()]
    targets = [torch.full((len(finished),), _DONE, device=dev), _target_stages(items, top_ids, rules).flatten()]
    if end is not None:
        pools.append(base + end)
        targets.append(torch.tensor([c.stage + 1 for c in items], device=dev))
    chosen = _chosen_indices(torch.cat(pools), torch.cat(targets), width, rules.banked)
    n_fin, n_ext = len(finished), top_scores.numel()
    top_scores_list, top_ids_list = top_scores.tolist(), top_ids.tolist()
    end_list = end.tolist() if end is not None else None
    active, parents, done = [], [], []
    for index in chosen:
        if index < n_fin:
            done.append(finished[index])
            continue
        if index < n_fin + n_ext:
            b, j = divmod(index - n_fin, k)
            new = rules.extend(items[b], top_ids_list[b][j], top_scores_list[b][j])
        else:
            b = index - n_fin - n_ext
            new = rules.end(items[b], end_list[b])
        if new.stage == _DONE:
            done.append(new)
        else:
            active.append(new)
            parents.append(b)
    return active, parents, done


def _select_reference(items, ext, end, finished, width, rules):
    """The same selection written plainly with Python sorting."""
    pool: list[tuple[float, int, _Candidate]] = []
    for item in finished:
        pool.append((item.score, -1, item))
    for b, item in enumerate(items):
        row = ext[b].tolist()
        best = sorted(range(len(row)), key=lambda t: -row[t])[: width + 3]
        for token in best:
            if row[token] != float("-inf"):
                pool.append((item.score + row[token], b, rules.extend(item, token, row[token])))
        if end is not None and end[b].item() != float("-inf"):
            pool.append((item.score + end[b].item(), b, rules.end(item, end[b].item())))
    pool.sort(key=lambda entry: -entry[0])
    if rules.banked:
        kept = [entry for stage in (_SPAN1, _SPAN2, _DONE)
                for entry in [e for e in pool if e[2].stage == stage][:width]]
    else:
        kept = pool[:width]
    active, parents, done = [], [], []
    for _, parent, cand in kept:
        if cand.stage == _DONE:
            done.append(cand)
        else:
            active.append(cand)
            parents.append(parent)
    return active, parents, done


def _beam_search(root_scores: Callable[[], StepScores],
                 advance: Callable[[list[int], list[_Candidate]], StepScores],
                 rules: _Rules, width: int, max_steps: int, select, desc: str, progress: bool) -> list[_Candidate]:
    active = [_Candidate((), _SPAN1, 0.0)]
    finished: list[_Candidate] = []
    ext, end = root_scores()
    for step in tqdm(range(max_steps), desc=desc, disable=not progress, leave=False):
        ext = rules.mask(active, ext)
        if step == max_steps - 1:
            ext, end = rules.finishing_only(active, ext, end)
        active, parents, finished = select(active, ext, end, finished, width, rules)
        if not active or step == max_steps - 1:
            break
        ext, end = advance(parents, active)
    return sorted(finished, key=lambda c: -c.score)


def _cache_kwargs(model, cache) -> dict:
    """Pass a key-value cache under the name this transformers version uses (`cache` since 5.x)."""
    import inspect

    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return {name: cache, "use_cache": True}


def _chunks(n: int, size: int) -> list[range]:
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def _beam_rows(parents: torch.Tensor, chunk: int) -> torch.Tensor:
    """Rows of the previous step's batch (beam-major: row = item * chunk + example) that the new items
    continue."""
    return (parents.unsqueeze(1) * chunk + torch.arange(chunk, device=parents.device)).flatten()


class _GeneratorBase:
    def __init__(self, model, tokenizer, *, beam_width: int, max_steps: int, forbidden_token_ids,
                 chunk_size: int, device, keep_per_format: int | None, max_input_tokens: int) -> None:
        if beam_width < 1 or max_steps < 1 or chunk_size < 1:
            raise UserError(f"beam_width, max_steps and chunk_size must be >= 1; got {beam_width}, "
                            f"{max_steps}, {chunk_size}")
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.tokenizer = tokenizer
        self.beam_width = beam_width
        self.max_steps = max_steps
        self.chunk_size = chunk_size
        self.keep_per_format = keep_per_format
        self.max_input_tokens = max_input_tokens
        self.vocab_size = self._output_vocab_size()
        self.texts = token_texts(tokenizer, self.vocab_size)
        if forbidden_token_ids is None:
            forbidden_token_ids = default_forbidden_token_ids(tokenizer, self.vocab_size)
        self.forbidden_token_ids = frozenset(int(i) for i in forbidden_token_ids)

    def _output_vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    def _forbidden_mask(self, extra: Iterable[int] = ()) -> torch.Tensor:
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        ids = [i for i in (*self.forbidden_token_ids, *extra) if 0 <= i < self.vocab_size]
        mask[ids] = True
        return mask

    def _to_templates(self, task: TaskSpec, fmt: str, candidates: list[_Candidate]) -> list[GeneratedTemplate]:
        out, seen = [], set()
        for cand in candidates:
            span1, span2 = self._spans(cand)
            template = _template_for(fmt, _span_literal(span1, self.texts), _span_literal(span2, self.texts))
            if template in seen:
                continue
            readable = _validated(template, task.num_sentences)
            if readable is None:
                continue
            seen.add(template)
            out.append(GeneratedTemplate(template, readable, float(cand.score), fmt))
        return out[: _keep_count(task, self.beam_width, self.keep_per_format)]

    def _run(self, task, train_examples, label_words, formats, progress, fast: bool) -> list[GeneratedTemplate]:
        task = get_task(task)
        formats = _check_formats(task, formats)
        words = _label_words_of(task, train_examples, label_words)
        results: list[GeneratedTemplate] = []
        with torch.inference_mode():
            for fmt in formats:
                root, advance, rules = self._search_parts(task, train_examples, words, fmt, fast)
                select = _select_fast if fast else _select_reference
                desc = f"auto-T {fmt}{'' if fast else ' (reference)'}"
                candidates = _beam_search(root, advance, rules, self.beam_width, self.max_steps, select, desc,
                                          progress)
                results.extend(self._to_templates(task, fmt, candidates))
        return results

    def generate(self, task: TaskSpec | str, train_examples: Sequence[Example], label_words: dict | None = None,
                 formats: Sequence[str] | None = None, *, progress: bool = True) -> list[GeneratedTemplate]:
        """Templates for the task, best first within each format (formats in the order given)."""
        return self._run(task, train_examples, label_words, formats, progress, fast=True)

    def reference_generate(self, task: TaskSpec | str, train_examples: Sequence[Example],
                           label_words: dict | None = None, formats: Sequence[str] | None = None, *,
                           progress: bool = True) -> list[GeneratedTemplate]:
        """Same result as `generate`, recomputing every forward from scratch (slow; for checking)."""
        return self._run(task, train_examples, label_words, formats, progress, fast=False)

    def _aggregate(self, logits: torch.Tensor, objective: str) -> torch.Tensor:
        """Per-example next-token logits [B, E, V] -> this chunk's contribution [B, V]."""
        logits = logits.double()
        if objective == "mean_logits":
            return logits.sum(1)
        return torch.log_softmax(logits, dim=-1).sum(1)


# ---------------------------------------------------------------------------------------------------------
# T5


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
                 max_input_tokens: int = 256) -> None:
        if objective not in OBJECTIVES:
            raise UserError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        super().__init__(model, tokenizer, beam_width=beam_width, max_steps=max_steps,
                         forbidden_token_ids=forbidden_token_ids, chunk_size=chunk_size, device=device,
                         keep_per_format=keep_per_format, max_input_tokens=max_input_tokens)
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

    def _search_parts(self, task, examples, words, fmt, fast: bool):
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


# ---------------------------------------------------------------------------------------------------------
# Decoder-only models


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
    """

    def __init__(self, model, tokenizer, beam_width: int = 100, max_steps: int = 16,
                 forbidden_token_ids: Iterable[int] | None = None, chunk_size: int = 4, device=None, *,
                 max_span2_tokens: int = 5, end_text: str | None = "\n", keep_per_format: int | None = None,
                 max_input_tokens: int = 256, max_batch_rows: int = 1024, max_batch_tokens: int = 32768) -> None:
        super().__init__(model, tokenizer, beam_width=beam_width, max_steps=max_steps,
                         forbidden_token_ids=forbidden_token_ids, chunk_size=chunk_size, device=device,
                         keep_per_format=keep_per_format, max_input_tokens=max_input_tokens)
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

    def _search_parts(self, task, examples, words, fmt, fast: bool):
        prefixes, word_ids, endings = self.sequences(task, examples, words, fmt)
        cls = _CausalFastState if fast else _CausalReferenceState
        state = cls(self, prefixes, word_ids, endings)
        return state.root, state.advance, self._rules()


def _fed_tokens(item: _Candidate, word_id: int) -> list[int]:
    return [word_id if t == LABEL_MARK else t for t in item.tokens]


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

    def __init__(self, gen: CausalGenerator, prefixes, word_ids, endings) -> None:
        self.gen, self.prefixes = gen, prefixes
        self.word_ids, self.endings = torch.tensor(word_ids), torch.tensor(endings)

    def _item_scores(self, item: _Candidate) -> StepScores:
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

    def __init__(self, gen: CausalGenerator, prefixes, word_ids, endings) -> None:
        from transformers.cache_utils import DynamicCache

        self.gen, self._cache_type, dev = gen, DynamicCache, gen.device
        self.order = sorted(range(len(prefixes)), key=lambda i: len(prefixes[i]))
        self.word_ids = torch.tensor([word_ids[i] for i in self.order], device=dev)
        self.endings = torch.tensor([endings[i] for i in self.order], device=dev)
        self.count = len(prefixes)
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
            logits.append(out.logits[:, -1])
        self.root_scores = _step_scores(torch.cat(logits).unsqueeze(0), [_Candidate((), _SPAN1, 0.0)],
                                        self.word_ids, self.endings)

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
        ext = torch.zeros((n_items, gen.vocab_size), dtype=torch.float64, device=dev)
        end = torch.zeros(n_items, dtype=torch.float64, device=dev)
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
            logits = out.logits[:, -1].view(n_items, len(group), -1)
            group_ext, group_end = _step_scores(logits, items, self.word_ids[group.start:group.stop],
                                                self.endings[group.start:group.stop])
            ext += group_ext
            end += group_end
        self.generated = (new_generated, groups)
        return ext, end

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
