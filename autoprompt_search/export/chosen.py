"""`export --candidate`: the prompt document of a candidate chosen from the leaderboard (by id prefix, or
"ensemble" for the best-ranked ensemble) instead of the search's best."""
from __future__ import annotations

from ..errors import UserError
from ..search import Leaderboard, RankedCandidate, stored_config

ENSEMBLE_CHOICE = "ensemble"


def choose(leaderboard: Leaderboard, config_hash: str, choice: str) -> RankedCandidate:
    """The ranked candidate `choice` names: an id prefix (as the leaderboard table prints it), or "ensemble"."""
    ranking = leaderboard.ranking(config_hash=config_hash)
    if choice == ENSEMBLE_CHOICE:
        found = [entry for entry in ranking if "ensemble" in entry.candidate][:1]
        if not found:
            raise UserError(f"--candidate ensemble: {leaderboard.path} has no ensemble for configuration "
                            f"{config_hash[:12]}; run the search with --ensemble-size 2 or more")
        return found[0]
    if len(choice) < 4 or any(c not in "0123456789abcdef" for c in choice.lower()):
        raise UserError(f"--candidate: got {choice!r}, expected 'ensemble' or a candidate id (at least 4 hex "
                        f"digits, as the leaderboard table prints it)")
    found = [entry for entry in ranking if entry.candidate_id.startswith(choice.lower())]
    if len(found) != 1:
        raise UserError(f"--candidate {choice}: matches {len(found)} candidates in {leaderboard.path}; expected one"
                        + ("" if found else " (see `search-templates leaderboard`)"))
    return found[0]


def chosen_document(leaderboard: Leaderboard, config_hash: str, choice: str, settings) -> dict:
    """The exported document of the chosen candidate, with its per-seed metrics at its budget."""
    from ..data import load_task
    from ..search import prompt_document

    entry = choose(leaderboard, config_hash, choice)
    config = stored_config(leaderboard, config_hash)
    seeds = list(config.get("seeds") or [])
    rows = [r for r in leaderboard.rows(config_hash) if r.candidate_id == entry.candidate_id and r.budget == entry.budget]
    task = load_task(settings.task_file or settings.task)
    found_by = {"strategy": config.get("strategy"), "steps": entry.budget, "seeds": seeds or sorted(r.seed for r in rows),
                "config_hash": config_hash, "leaderboard": str(leaderboard.path), "candidate_id": entry.candidate_id,
                "chosen": choice}
    return prompt_document(settings, task, settings.model, entry.candidate, seed=found_by["seeds"][0],
                           dev={r.seed: r.dev_metric for r in rows}, test={r.seed: r.test_metric for r in rows},
                           found_by=found_by)
