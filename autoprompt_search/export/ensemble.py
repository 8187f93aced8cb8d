"""Export of an ensemble prompt file: with `--fine-tune`, each member fine-tuned on the first seed's split
at the search's final budget (as the search trained it) and saved in its own folder beside the JSON."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..prompts import SCHEMA_VERSION, save_fine_tuned
from ..search import EvaluatorSettings, Leaderboard


def fine_tune_members(document: dict, leaderboard: Leaderboard, settings: EvaluatorSettings, output: Path,
                      say: Callable[[str], None] = lambda line: None) -> dict:
    """The ensemble document with each member's `fine_tuned_model` set to `<output stem>-model-<i>`."""
    from ..search import fine_tuned_classifier
    from ..training import merged_adapters

    found_by = document["found_by"]
    stored = {row.candidate_id: row.candidate for row in leaderboard.rows(found_by["config_hash"])}
    members = []
    for position, member in enumerate(document["members"]):
        candidate = stored.get(member.get("candidate_id"))
        if candidate is None:
            raise UserError(f"ensemble member {position} (candidate {str(member.get('candidate_id'))[:10]}) is not in "
                            f"{leaderboard.path}")
        say(f"fine-tuning ensemble member {position + 1}/{len(document['members'])}")
        classifier = fine_tuned_classifier(settings, candidate, found_by["seeds"][0], found_by["steps"])
        model_folder = f"{output.with_suffix('').name}-model-{position}"
        with merged_adapters(classifier.backbone.model):  # LoRA-tuned: saved as a plain model
            save_fine_tuned(classifier.backbone, output.parent / model_folder)
        del classifier  # one member's weights in memory at a time
        members.append({**member, "fine_tuned_model": model_folder})
    return {**document, "schema_version": SCHEMA_VERSION, "members": members}
