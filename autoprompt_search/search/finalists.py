"""Demonstrations for the race's finalists: after the race, the best few candidates are evaluated
again with demonstrations in their context (LM-BFF's "+ demonstrations"), at the final budget on
every seed, and join the final ranking beside the versions without.

Why after the race and not in its grid: with demonstrations a training step costs 1.6-2.5x and a test
example 3.6-7x (results/demonstrations_smollm2-135m.md), so doubling every candidate of the race
doubles its cost, while what decides the export is whether demonstrations help the few prompts that
are good anyway. The variants run through the same study (claimed, stored and resumed like any
evaluation) and under the same configuration hash, so a finished search given this stage later
reuses its race and runs only the variants.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..errors import UserError
from ..prompts import Template
from .records import RankedCandidate, candidate_id
from .strategies import FinalRung
from .study import SearchResult, Study, run_search


@dataclass
class FinalistOutcome:
    candidates: list[dict[str, Any]] = field(default_factory=list)  # the variants evaluated, best finalist first
    ranked: list[RankedCandidate] = field(default_factory=list)     # their aggregates at the final budget
    n_evaluated: int = 0                                            # evaluations run now
    n_reused: int = 0                                               # evaluations found in the leaderboard
    skipped: list[str] = field(default_factory=list)                # why a finalist got no variant


def demonstration_variants(finalists: Sequence[Mapping[str, Any]], modes: Sequence[str], num_sentences: int,
                           num_labels: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Each finalist with each mode, in finalist order; a finalist that already has demonstrations
    or whose template cannot take them is skipped, with the reason."""
    variants, skipped, seen = [], [], set()
    for finalist in finalists:
        if "template" not in finalist:  # an ensemble
            continue
        if finalist.get("demonstrations", "off") != "off":
            skipped.append(f"{candidate_id(finalist)[:10]} already has demonstrations")
            continue
        try:
            Template.parse(finalist["template"]).validate(num_sentences=num_sentences, num_labels=num_labels,
                                                           demonstrations=True)
        except UserError as error:
            skipped.append(f"{candidate_id(finalist)[:10]}: {error}")
            continue
        for mode in modes:
            variant = {**finalist, "demonstrations": mode}
            if candidate_id(variant) not in seen:
                seen.add(candidate_id(variant))
                variants.append(variant)
    return variants, skipped


def evaluate_finalist_demonstrations(study: Study, result: SearchResult, modes: Sequence[str], n_finalists: int,
                                     num_sentences: int, num_labels: int, *, task_prompt_id: str | None = None,
                                     progress: bool = True, say: Callable[[str], None] = print) -> FinalistOutcome:
    """Evaluate the top `n_finalists` of `result.ranking` with each of `modes` at the race's final
    budget on every seed, and the task's prompt (`task_prompt_id`) too wherever it reached the final rung:
    the paired selection defends that prompt in its best version, so its version with demonstrations must
    exist whether or not it ranks among the best. Nothing runs without modes, finalists or a race."""
    if not modes or n_finalists < 1 or not result.rungs or not result.ranking:
        return FinalistOutcome()
    finalists = [entry.candidate for entry in result.ranking[:n_finalists]]
    finalists += [entry.candidate for entry in result.ranking[n_finalists:] if entry.candidate_id == task_prompt_id]
    variants, skipped = demonstration_variants(finalists, modes, num_sentences, num_labels)
    outcome = FinalistOutcome(variants, skipped=skipped)
    for reason in skipped:
        say(f"finalist demonstrations: skipped {reason}")
    if not variants:
        return outcome
    final = result.rungs[-1].rung
    say(f"finalist demonstrations: {len(variants)} candidate(s) ({', '.join(modes)} demonstrations for the best "
        f"{len(finalists)}) at {final.steps} steps on {len(final.seeds)} seed(s)")
    run = run_search(variants, FinalRung(final.index, final.steps, tuple(final.seeds)), study.evaluate,
                     study.leaderboard, study.config_hash, study.executor, progress=progress, retry_failed=False,
                     claim_settings=study.claim_settings)
    outcome.ranked, outcome.n_evaluated, outcome.n_reused = run.ranking, run.n_evaluated, run.n_reused
    result.failures.extend(run.failures)
    return outcome
