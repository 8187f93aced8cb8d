"""Strategies: what to evaluate. A strategy (`SuccessiveHalving`, `Exhaustive`) only plans rungs
and picks the survivors of each; it never runs or stores an evaluation.

Survivors are picked by the rung's dev metric, ties by a continuous dev score (mean gold-class
log-probability): a zero-shot rung on 32 dev examples ties often, and the candidate id (a hash) is
no evidence. The id decides only when both tie (or no score exists), so selection stays deterministic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

from ..errors import UserError
from .records import score_sort_key

FIRST_RUNG_MODES = ("zero_shot", "short")


@dataclass(frozen=True)
class Rung:
    """One round of evaluations: `n_candidates` candidates, each on every seed at `steps`."""

    index: int
    steps: int
    seeds: tuple[int, ...]
    n_candidates: int

    @property
    def evaluations(self) -> int:
        return self.n_candidates * len(self.seeds)

    @property
    def training_steps(self) -> int:
        return self.evaluations * self.steps


class Strategy(Protocol):
    def plan(self, n_candidates: int) -> list[Rung]:
        """All rungs for this many candidates; the last one gives the final ranking."""

    def select(self, rung: Rung, scores: Mapping[str, float],
               tie_scores: Mapping[str, float | None] | None = None) -> list[str]:
        """Candidate ids (from `scores`: mean dev metric per candidate) that go to the next rung;
        `tie_scores` (continuous dev score per candidate, None when unknown) orders ties."""


def top_candidates(scores: Mapping[str, float], keep: int,
                   tie_scores: Mapping[str, float | None] | None = None) -> list[str]:
    """The `keep` best ids by score; NaN ranks last. Ties go to the higher `tie_scores` value
    (missing ranks lowest), then to the smaller candidate id."""
    tie_scores = tie_scores or {}

    def key(cid: str) -> tuple[float, float, str]:
        score = scores[cid]
        tie = tie_scores.get(cid)
        tie = None if tie is None or math.isnan(tie) else tie
        return (math.inf if score is None or math.isnan(score) else -score, score_sort_key(tie), cid)

    return sorted(scores, key=key)[:keep]


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise UserError("seeds: expected at least one seed, got an empty list")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds: expected distinct seeds, got {list(seeds)}")
    return seeds


@dataclass(frozen=True)
class Exhaustive:
    """Every candidate on every seed at the full budget (LM-BFF's own protocol)."""

    steps: int
    seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", _check_seeds(self.seeds))
        if self.steps < 0:
            raise UserError(f"steps: expected a number >= 0 (0 = zero-shot), got {self.steps}")

    def plan(self, n_candidates: int) -> list[Rung]:
        return [Rung(0, self.steps, self.seeds, n_candidates)] if n_candidates else []

    def select(self, rung: Rung, scores: Mapping[str, float],
               tie_scores: Mapping[str, float | None] | None = None) -> list[str]:
        return top_candidates(scores, len(scores), tie_scores)


@dataclass(frozen=True)
class SuccessiveHalving:
    """Evaluate all candidates cheaply, keep the best 1/eta, give them eta times more, repeat.

    Rung 0 runs every candidate on the first `min_seeds` seeds, either zero-shot (steps = 0,
    `first_rung="zero_shot"`) or with a short fine-tune of `min_steps` (`first_rung="short"`).
    Each later rung keeps exactly ceil(n / eta) candidates (ties by the continuous dev score, then id), multiplies the
    steps by eta (the first fine-tuning rung after zero-shot uses `min_steps`), capped at
    `max_steps`, and multiplies the number of seeds by eta. The last rung is always `max_steps`
    on all seeds; when one candidate is left the plan jumps straight to it, and a rung that would
    leave one survivor becomes the last rung when that costs no more steps (`_cheaper_as_final`).
    """

    min_steps: int
    max_steps: int
    seeds: tuple[int, ...]
    eta: float = 3
    min_seeds: int = 1
    first_rung: str = "zero_shot"
    # Candidate ids that always reach the final rung (the task's own prompt): one takes the last place
    # among the survivors when the rung's scores would drop it. Early scores on 32 dev examples say little
    # about a prompt after full fine-tuning (SST-2 demo: the manual prompt, 83 on test after fine-tuning,
    # lost a tie at 8 steps; the winner scored 59 on test), so the search returns the task's prompt
    # unless a candidate beats it at the full budget.
    protected: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", _check_seeds(self.seeds))
        if self.first_rung not in FIRST_RUNG_MODES:
            raise UserError(f"first_rung: expected one of {FIRST_RUNG_MODES}, got {self.first_rung!r}")
        if not self.eta > 1:
            raise UserError(f"eta: expected a number > 1, got {self.eta}")
        if not 1 <= self.min_seeds <= len(self.seeds):
            raise UserError(f"min_seeds: expected 1..{len(self.seeds)} (the number of seeds), "
                            f"got {self.min_seeds}")
        if self.max_steps < 0 or self.min_steps < 0:
            raise UserError(f"min_steps/max_steps: expected numbers >= 0, got "
                            f"{self.min_steps}/{self.max_steps}")
        if self.max_steps > 0 and not 1 <= self.min_steps <= self.max_steps:
            raise UserError(f"min_steps: expected 1..max_steps ({self.max_steps}), got {self.min_steps}")
        if self.first_rung == "short" and self.max_steps == 0:
            raise UserError("first_rung 'short' needs max_steps > 0; use 'zero_shot' for a "
                            "zero-shot-only search")

    def step_schedule(self) -> list[int]:
        """Training steps per rung before the one-candidate shortcut."""
        schedule = [0] if self.first_rung == "zero_shot" else []
        if self.max_steps == 0:
            return schedule
        steps = self.min_steps
        while True:
            schedule.append(steps)
            if steps >= self.max_steps:
                return schedule
            steps = min(self.max_steps, max(steps + 1, int(round(steps * self.eta))))

    def plan(self, n_candidates: int) -> list[Rung]:
        schedule = self.step_schedule()
        rungs: list[Rung] = []
        n_active = n_candidates
        for index, steps in enumerate(schedule):
            if n_active == 0:
                break
            is_last = index == len(schedule) - 1 or n_active == 1 or self._cheaper_as_final(steps, index, n_active)
            if is_last:
                rungs.append(Rung(index, self.max_steps, self.seeds, n_active))
                break
            n_seeds = min(len(self.seeds), int(self.min_seeds * self.eta ** index))
            rungs.append(Rung(index, steps, self.seeds[:n_seeds], n_active))
            n_active = math.ceil(n_active / self.eta)
        return rungs

    def _cheaper_as_final(self, steps: int, index: int, n_active: int) -> bool:
        """A fine-tuning rung whose single survivor would then be trained again at the full budget
        becomes the final rung itself when that costs no more training steps: e.g. 2 candidates at
        24 steps then 1 at 32 (80 steps per seed) against 2 at 32 (64), every finalist with a full result."""
        if steps == 0 or math.ceil(n_active / self.eta) != 1:
            return False
        n_seeds = min(len(self.seeds), int(self.min_seeds * self.eta ** index))
        as_planned = n_active * steps * n_seeds + self.max_steps * len(self.seeds)
        return n_active * self.max_steps * len(self.seeds) <= as_planned

    def select(self, rung: Rung, scores: Mapping[str, float],
               tie_scores: Mapping[str, float | None] | None = None) -> list[str]:
        keep = math.ceil(len(scores) / self.eta)
        survivors = top_candidates(scores, keep, tie_scores)
        for cid in self.protected:
            if cid in scores and cid not in survivors:
                replaceable = [s for s in survivors if s not in self.protected]
                if replaceable:
                    survivors[survivors.index(replaceable[-1])] = cid
        return survivors


@dataclass(frozen=True)
class FinalRung:
    """A strategy of one rung: the given candidates at the final budget on every seed
    (the stages after a race: the ensemble's members, the finalists' demonstration variants)."""

    index: int
    steps: int
    seeds: tuple[int, ...]

    def plan(self, n_candidates: int) -> list[Rung]:
        return [Rung(self.index, self.steps, self.seeds, n_candidates)] if n_candidates else []

    def select(self, rung: Rung, scores, tie_scores=None) -> list[str]:
        return top_candidates(scores, len(scores), tie_scores)


def describe_plan(rungs: Sequence[Rung]) -> str:
    """Human-readable compute plan: evaluations and training steps per rung, and totals."""
    lines = []
    for rung in rungs:
        budget = "zero-shot" if rung.steps == 0 else f"{rung.steps} steps"
        lines.append(f"rung {rung.index}: {rung.n_candidates} candidate(s) x {len(rung.seeds)} seed(s) "
                     f"({budget}) = {rung.evaluations} evaluations, {rung.training_steps} training steps")
    total_evaluations = sum(r.evaluations for r in rungs)
    total_steps = sum(r.training_steps for r in rungs)
    lines.append(f"total: {total_evaluations} evaluations, {total_steps} training steps")
    return "\n".join(lines)


def total_training_steps(rungs: Sequence[Rung]) -> int:
    return sum(r.training_steps for r in rungs)
