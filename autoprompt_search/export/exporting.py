"""Export the best prompt of a finished search: best.json, its demonstration pool and an optional fine-tuned model."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..prompts import SCHEMA_VERSION, read_document, save_fine_tuned, write_document
from ..search import EvaluatorSettings, Leaderboard, stored_config


def open_leaderboard(out: str) -> Leaderboard:
    """The leaderboard of a search's output folder `out` (or `out` itself when it names the database file)."""
    path = Path(out)
    file = path / "leaderboard.sqlite" if path.is_dir() or not path.suffix else path
    if not file.is_file():
        raise UserError(f"no leaderboard at {file}; run a search with --out {out} first")
    return Leaderboard(file)


def export_best(out: str, *, fine_tune: bool, output: str | None = None, candidate: str | None = None) -> dict:
    """Write the best prompt of the search in `out` to `output` (default OUT/best.json) and return the document.

    With `fine_tune`, the backbone is fine-tuned with the best prompt on the first seed's split and saved
    beside the JSON (each member of an ensemble in its own folder). `candidate` ("ensemble" or an id
    prefix) exports that leaderboard candidate instead of the best (default output OUT/<candidate>.json).
    """
    # Here, not at the top: they load torch, which `leaderboard` (a user of open_leaderboard) never needs.
    from ..search import demonstration_section_for, fine_tuned_classifier
    from ..training import merged_adapters

    folder = Path(out)
    best = folder / "best.json"
    if not best.is_file():
        raise UserError(f"{best} does not exist; run `search-templates --task ... --out {out}` first")
    document = read_document(best).document
    output = Path(output) if output else (best if candidate is None else folder / f"{candidate}.json")
    if candidate is not None:
        from .chosen import chosen_document

        leaderboard = open_leaderboard(out)
        config_hash = document["found_by"].get("config_hash") or leaderboard.latest_config_hash()
        document = chosen_document(leaderboard, config_hash, candidate, _stored_settings(leaderboard, config_hash))
    found_by = document["found_by"]
    if document.get("kind") == "ensemble":
        if fine_tune:
            from .ensemble import fine_tune_members

            leaderboard = open_leaderboard(out)
            settings = _stored_settings(leaderboard, found_by["config_hash"])
            document = fine_tune_members(document, leaderboard, settings, output)
        write_document(document, output)
        return document
    needs_pool = document["demonstrations"].get("mode", "off") != "off" and not document["demonstrations"].get("pool")
    if fine_tune or needs_pool:
        leaderboard = open_leaderboard(out)
        rows = [r for r in leaderboard.rows(found_by["config_hash"]) if r.candidate_id == found_by["candidate_id"]]
        if not rows:
            raise UserError(f"{best}: its candidate is not in {folder / 'leaderboard.sqlite'}")
        settings, candidate, seed = _stored_settings(leaderboard, found_by["config_hash"]), rows[0].candidate, found_by["seeds"][0]
        if needs_pool:  # written before prompts carried their demonstration examples
            document = {**document, "schema_version": SCHEMA_VERSION, "kind": "prompt",
                        "demonstrations": demonstration_section_for(settings, candidate, seed)}
        if fine_tune:
            classifier = fine_tuned_classifier(settings, candidate, seed, found_by["steps"])
            model_folder = output.with_suffix("").name + "-model"
            with merged_adapters(classifier.backbone.model):  # LoRA-tuned: saved as a plain model
                save_fine_tuned(classifier.backbone, output.parent / model_folder)
            document = {**document, "fine_tuned_model": model_folder}
    write_document(document, output)
    return document


def _stored_settings(leaderboard: Leaderboard, config_hash: str) -> EvaluatorSettings:
    """The evaluator settings the search ran with: from the leaderboard's configurations (a folder made
    before they were stored there falls back to its search_config.json)."""
    folder = Path(leaderboard.path).parent
    settings = stored_config(leaderboard, config_hash).get("settings")
    if not isinstance(settings, dict):
        raise UserError(f"{leaderboard.path}: configuration {config_hash[:12]} has no evaluator settings")
    known = set(EvaluatorSettings.__dataclass_fields__)
    settings = EvaluatorSettings(**{key: value for key, value in settings.items() if key in known})
    settings.cache_dir = settings.cache_dir or str(folder / "cache")
    return settings
