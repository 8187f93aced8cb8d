"""Which final-rung candidate the search exports.

"dev" is LM-BFF's rule: the top of the final ranking (mean dev metric, then the continuous score). On a
32-example dev split that rule follows noise: replayed on four SmolLM2 SST-2 searches it exported candidates
one to three dev examples ahead of the manual prompt, at test 80.9 +- 4.1 against the manual prompt's
83.6 +- 0.8 (results/selection_sst-2.md).

"paired" treats the task's own prompt (`TaskSpec.has_own_prompt`: hand-written, or for a task file given only
label names its starting prompt, the generic template with the label-name words), which halving keeps to the
final rung, as the incumbent: a candidate ranked above it replaces it only when it wins on significantly more
of the same dev examples than it loses (one-sided exact sign test over the discordant examples of every seed,
p <= alpha). Among such candidates the best ranked is exported. Where finalist demonstrations gave the task's
prompt a version with demonstrations, the incumbent is whichever version of it ranks higher: showing
demonstrations is chosen on dev like the checkpoint is, since the prompt defended is the same. Without that
prompt in the final rung (`--no-keep-task-prompt`, or placeholder label words that the search replaces: no
prompt to defend), or for regression tasks, the dev rule applies. Defending the starting prompt of a task from
label names met a criterion fixed before 18 held-out searches (results/from_labels_selection_plan.md).
Candidates without stored per-example predictions (rows stored before predictions were) cannot challenge;
ensemble rows store theirs.

"paired-loss" (the default since it met a criterion fixed before 16 held-out searches finished:
results/selection_rules_heldout16_smollm2-135m.md) keeps the incumbent and the order of challengers (only
candidates ranked above it on mean dev metric challenge) but tests the gold class's log-probability instead of
right/wrong: a challenger replaces the task prompt when it gives the gold class a significantly higher
probability on the same dev examples (one-sided Wilcoxon signed-rank test over every example of every seed).
The sign test sees only the few examples on which exactly one of the two is right (often 1-6 of 32) and
ignores by how much; the signed-rank test uses every example and the size of each difference, while its ranks
keep one extreme example from deciding. The ranks also blunt large losses: a challenger more confident on most
examples can pass while confidently wrong on a few, which is why it must first rank above the incumbent on the
dev metric itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..tasks import TaskSpec
from .predictions import SplitPredictions, gold_log_probabilities
from .records import RankedCandidate

SELECTIONS = ("paired", "paired-loss", "dev")
DEFAULT_ALPHA = 0.1


@dataclass(frozen=True)
class Selection:
    entry: RankedCandidate
    rule: str                       # "dev", or the paired rule ("paired", "paired-loss") when its test decided
    reason: str                     # one line for the user
    wins: int | None = None         # the exported (or strongest rejected) challenger against the incumbent
    losses: int | None = None
    p_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "reason": self.reason, "wins": self.wins, "losses": self.losses,
                "p_value": self.p_value}


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided exact sign test: P(at least `wins` of wins + losses fair coin flips)."""
    n = wins + losses
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n


def correct_per_example(task: TaskSpec, predictions: SplitPredictions) -> np.ndarray:
    gold = np.asarray([task.label_index(label) for label in predictions.labels])
    return predictions.scores.argmax(axis=1) == gold


def paired_record(task: TaskSpec, challenger: Sequence[SplitPredictions],
                  incumbent: Sequence[SplitPredictions]) -> tuple[int, int]:
    """(examples only the challenger gets right, examples only the incumbent gets right), over seeds."""
    wins = losses = 0
    for mine, theirs in zip(challenger, incumbent):
        if mine.labels != theirs.labels:
            raise ValueError("paired predictions must be on the same examples in the same order")
        a, b = correct_per_example(task, mine), correct_per_example(task, theirs)
        wins += int(np.sum(a & ~b))
        losses += int(np.sum(~a & b))
    return wins, losses


def paired_log_prob_differences(task: TaskSpec, challenger: Sequence[SplitPredictions],
                                incumbent: Sequence[SplitPredictions]) -> np.ndarray:
    """log p(gold) of the challenger minus the incumbent's, per example, pooled over seeds; examples either
    side scored as non-finite are left out."""
    differences = []
    for mine, theirs in zip(challenger, incumbent):
        if mine.labels != theirs.labels:
            raise ValueError("paired predictions must be on the same examples in the same order")
        differences.append(gold_log_probabilities(task, mine.scores, mine.labels)
                           - gold_log_probabilities(task, theirs.scores, theirs.labels))
    pooled = np.concatenate(differences) if differences else np.zeros(0)
    return pooled[np.isfinite(pooled)]


def signed_rank_p(differences: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank test that the differences lean positive; zero differences are
    dropped, and with none left the answer is 1."""
    from scipy.stats import wilcoxon

    nonzero = differences[differences != 0]
    if len(nonzero) == 0:
        return 1.0
    return float(wilcoxon(nonzero, alternative="greater").pvalue)


def _challenge(rule: str, task: TaskSpec, mine: Sequence[SplitPredictions],
               theirs: Sequence[SplitPredictions]) -> tuple[int, int, float]:
    """(wins, losses, one-sided p) of a challenger against the incumbent under the paired `rule`."""
    if rule == "paired-loss":
        differences = paired_log_prob_differences(task, mine, theirs)
        return int(np.sum(differences > 0)), int(np.sum(differences < 0)), signed_rank_p(differences)
    wins, losses = paired_record(task, mine, theirs)
    return wins, losses, sign_test_p(wins, losses)


def _describe_record(rule: str, wins: int, losses: int) -> str:
    if rule == "paired-loss":
        return f"gives the gold class a higher probability on {wins} and a lower one on {losses} of the same dev examples"
    return f"wins {wins} and loses {losses} of the same dev examples"


def _without_demonstrations(candidate) -> dict:
    return {key: value for key, value in candidate.items() if key != "demonstrations"}


def is_version_of(candidate, prompt) -> bool:
    """Whether `candidate` is `prompt` (same template and label words) with any demonstrations or none."""
    return "template" in candidate and _without_demonstrations(candidate) == _without_demonstrations(prompt)


def best_task_prompt_version(ranking: Sequence[RankedCandidate], task_prompt_id: str) -> RankedCandidate:
    """The best-ranked version of the task's prompt: the prompt itself or, where finalist demonstrations gave
    it one, the same template and words with demonstrations. Whether to show demonstrations is chosen on dev,
    as the checkpoint is; the prompt stays the hand-written one, so the paired rule still defends it."""
    prompt = next(entry for entry in ranking if entry.candidate_id == task_prompt_id).candidate
    return next(entry for entry in ranking if is_version_of(entry.candidate, prompt))


def _own_prompt(entry: RankedCandidate) -> str:
    mode = entry.candidate.get("demonstrations", "off")
    return "the task's own prompt" + (f" with {mode} demonstrations" if mode != "off" else "")


TEST_NAMES = {"paired": "one-sided sign test", "paired-loss": "one-sided signed-rank test"}


def select_final(ranking: Sequence[RankedCandidate], task: TaskSpec, *, rule: str,
                 incumbent_id: str | None, seeds: Sequence[int],
                 dev_predictions: Callable[[str, int], SplitPredictions | None],
                 alpha: float = DEFAULT_ALPHA) -> Selection | None:
    """The candidate to export from the final `ranking` (best first). `dev_predictions(candidate_id,
    seed)`: the stored per-example dev predictions of that final-rung evaluation, or None."""
    if not ranking:
        return None
    top = ranking[0]
    ids = [entry.candidate_id for entry in ranking]
    if rule not in SELECTIONS:
        raise ValueError(f"selection rule: expected one of {', '.join(SELECTIONS)}, got {rule!r}")
    if rule == "dev" or incumbent_id not in ids or task.is_regression:
        why = ("the best mean dev metric" if rule == "dev" else
               "the best mean dev metric (no prompt of the task's own in the final rung)" if incumbent_id not in ids else
               "the best mean dev metric (the paired test is for classification)")
        return Selection(top, "dev", why)
    incumbent = best_task_prompt_version(ranking, incumbent_id)
    incumbent_id, own = incumbent.candidate_id, _own_prompt(incumbent)
    if top.candidate_id == incumbent_id:
        return Selection(incumbent, rule, f"{own} ranks first on dev")
    theirs = [dev_predictions(incumbent_id, seed) for seed in seeds]
    if any(p is None for p in theirs):
        return Selection(top, "dev", f"the best mean dev metric ({own}: dev predictions not stored)")
    strongest: tuple[float, int, int, RankedCandidate] | None = None
    for entry in ranking[:ids.index(incumbent_id)]:
        mine = [dev_predictions(entry.candidate_id, seed) for seed in seeds]
        if any(p is None for p in mine):
            continue  # stored before predictions were
        wins, losses, p_value = _challenge(rule, task, mine, theirs)
        if p_value <= alpha:
            return Selection(entry, rule, f"beats {own}: {_describe_record(rule, wins, losses)} "
                                          f"({TEST_NAMES[rule]} p = {p_value:.3f} <= {alpha})", wins, losses, p_value)
        if strongest is None or p_value < strongest[0]:
            strongest = (p_value, wins, losses, entry)
    if strongest is None:
        return Selection(incumbent, rule, f"{own}: no candidate ranked above it can be compared example by example")
    p_value, wins, losses, entry = strongest
    return Selection(incumbent, rule,
                     f"{own}: the best challenger ({entry.candidate_id[:10]}, dev {entry.mean_dev:.4f} "
                     f"vs {incumbent.mean_dev:.4f}) {_describe_record(rule, wins, losses)}, "
                     f"p = {p_value:.3f} > {alpha}: within the noise of "
                     f"{'/'.join(map(str, incumbent.dev_examples)) or '?'} examples",
                     wins, losses, p_value)
