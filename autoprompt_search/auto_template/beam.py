"""The beam search both generators share: candidates, the rules for extending them, and the fast
(`torch.topk`) and reference (plain Python sorting) selection of each step's beam."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

# Stages of a candidate: writing span 1, writing span 2, finished.
_SPAN1, _SPAN2, _DONE = 0, 1, 2
# Markers in a causal candidate's token list: where the label word / the end of the template went.
LABEL_MARK = -1
END_MARK = -2


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
