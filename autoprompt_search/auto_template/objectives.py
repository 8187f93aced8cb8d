"""The causal generator's objectives: LM-BFF's likelihood, and a discriminative one.

The likelihood objective (sum over examples of log P(template tokens | prefix)) rewards short spans and
does not predict zero-shot accuracy (SST-2 with SmolLM2: Spearman -0.07). The discriminative objective
scores what the classifier will need: after `prefix + span 1`, how much more probable the example's gold
label word is than the other classes' words,

    value = D + fluency_weight * F / n,
    D = mean over examples of [log p(gold word | prefix, span 1) - logsumexp_c log p(word_c | prefix, span 1)]
    F = sum over the n moves so far (span tokens, label word, ending) of the mean over examples of their
        log-probability,

so the span's own fluency is a prior and, divided by its length, does not make every added token a cost
(an empty span does not win by default). D is 0 until the label word is placed. The beam adds step
scores, so each move is scored by the change of `value` it makes; that needs each candidate's F and D,
which the fast search carries forward from the previous step (`DiscriminativeTracker`) and the reference
search recomputes from scratch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UserError
from .beam import _SPAN1, LABEL_MARK, StepScores, _Candidate

CAUSAL_OBJECTIVES = ("likelihood", "discriminative")


@dataclass(frozen=True)
class DiscriminativeSetup:
    """What the discriminative objective needs besides the likelihood's inputs."""

    class_ids: torch.Tensor  # [C] the single token of every class's label word
    gold: torch.Tensor  # [E] per example, the index in class_ids of its own label word
    fluency_weight: float = 0.1
    length_normalize: bool = True


def check_objective(objective: str, fluency_weight: float) -> None:
    if objective not in CAUSAL_OBJECTIVES:
        raise UserError(f"objective must be one of {CAUSAL_OBJECTIVES}, got {objective!r}")
    if not fluency_weight >= 0:
        raise UserError(f"fluency_weight must be >= 0, got {fluency_weight}")


def class_margins(logits: torch.Tensor, class_ids: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Next-token logits [..., E, V] -> log p(gold word) - logsumexp_c log p(word_c), [..., E] (the
    vocabulary normaliser cancels, so only the class words' logits are needed)."""
    class_logits = logits[..., class_ids].double()
    shape = (*class_logits.shape[:-1], 1)
    gold_logits = class_logits.gather(-1, gold.view(*([1] * (class_logits.dim() - 2)), -1, 1).expand(shape))
    return gold_logits.squeeze(-1) - torch.logsumexp(class_logits, dim=-1)


def discriminative_sums(logits: torch.Tensor, items: list[_Candidate], word_ids: torch.Tensor,
                        endings: torch.Tensor, setup: DiscriminativeSetup, gold: torch.Tensor):
    """Logits [B, E, V] of B items on E examples -> sums over the examples of: each token's
    log-probability [B, V], the span end's log-probability [B], the class margin [B]."""
    lse = torch.logsumexp(logits, dim=-1).double()
    stages = torch.tensor([c.stage for c in items], device=logits.device)
    markers = torch.where(stages.unsqueeze(1) == _SPAN1, word_ids.unsqueeze(0), endings.unsqueeze(0))
    end = (logits.gather(2, markers.unsqueeze(2)).squeeze(2).double() - lse).sum(1)
    ext = logits.sum(1, dtype=torch.float64) - lse.sum(1, keepdim=True)
    return ext, end, class_margins(logits, setup.class_ids, gold).sum(1)


def objective_value(margin: torch.Tensor, fluency: torch.Tensor, moves: torch.Tensor,
                    setup: DiscriminativeSetup) -> torch.Tensor:
    norm = moves.clamp(min=1).double() if setup.length_normalize else 1.0
    return margin + setup.fluency_weight * fluency / norm


def step_deltas(items: list[_Candidate], fluency: torch.Tensor, margin: torch.Tensor, ext_mean: torch.Tensor,
                end_mean: torch.Tensor, margin_mean: torch.Tensor, setup: DiscriminativeSetup) -> StepScores:
    """The change of `value` of every move: add a token [B, V], end the current span [B]. Placing the label
    word (ending span 1) fixes the candidate's class margin to this step's."""
    dev = ext_mean.device
    moves = torch.tensor([len(c.tokens) for c in items], device=dev)
    in_span1 = torch.tensor([c.stage == _SPAN1 for c in items], device=dev)
    old = objective_value(margin, fluency, moves, setup)
    ext = objective_value(margin.unsqueeze(1), fluency.unsqueeze(1) + ext_mean, moves.unsqueeze(1) + 1,
                          setup) - old.unsqueeze(1)
    end = objective_value(torch.where(in_span1, margin_mean, margin), fluency + end_mean, moves + 1, setup) - old
    return ext, end


class DiscriminativeTracker:
    """Each active candidate's F and D, carried from its parent: the fast search's bookkeeping."""

    def __init__(self, count: int, setup: DiscriminativeSetup, device) -> None:
        self.count, self.setup = count, setup
        self.fluency = torch.zeros(1, dtype=torch.float64, device=device)
        self.margin = torch.zeros(1, dtype=torch.float64, device=device)
        self.last: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def follow(self, parents: list[int], items: list[_Candidate]) -> None:
        """Move to the new active candidates (each is its parent plus one token or the label word)."""
        ext_mean, end_mean, margin_mean = self.last
        fluency, margin = [], []
        for parent, item in zip(parents, items):
            token = item.tokens[-1]
            if token == LABEL_MARK:
                fluency.append(self.fluency[parent] + end_mean[parent])
                margin.append(margin_mean[parent])
            else:
                fluency.append(self.fluency[parent] + ext_mean[parent, token])
                margin.append(self.margin[parent])
        self.fluency, self.margin = torch.stack(fluency), torch.stack(margin)

    def scores(self, items: list[_Candidate], sums) -> StepScores:
        ext_mean, end_mean, margin_mean = (s / self.count for s in sums)
        self.last = (ext_mean, end_mean, margin_mean)
        return step_deltas(items, self.fluency, self.margin, ext_mean, end_mean, margin_mean, self.setup)
