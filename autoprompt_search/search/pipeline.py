"""The pipeline behind `search-templates --task ...`: candidates from every source, the strategy
over them, and the output folder (leaderboard, candidates, progress plot and best prompt).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

from .configs import data_fingerprint, remember_config
from ..data import load_task
from .evaluator import EvaluatorSettings, PromptEvaluator
from .leaderboard import Leaderboard
from .options import SearchOptions, make_strategy, search_executor
from .plots import plot_leaderboard
from .records import describe_candidate
from .sidefiles import write_json_atomic
from .sources import build_candidates
from .strategies import describe_plan
from .study import Study
from .trial import process_local


def demonstration_section_for(settings: EvaluatorSettings, candidate: Mapping[str, Any], seed: int) -> dict:
    """The exported prompt's "demonstrations": the search's sampler settings, and with demonstrations
    the seed's training examples as the pool and the seed, so predict draws what the search drew."""
    from ..data import load_split
    from ..prompts import demonstration_section

    mode = candidate.get("demonstrations", "off")
    pool = ()
    if mode != "off":
        task = load_task(settings.task_file or settings.task)
        pool = load_split(task, "train", data_dir=settings.data_dir, k=settings.k, seed=seed)
    return demonstration_section(mode, {"filter_rate": settings.demo_filter_rate,
                                        "inference_samples": settings.demo_inference_samples,
                                        "encoder": settings.demo_encoder, "lengths": dict(settings.demo_lengths),
                                        "max_length": settings.train.get("max_length", 128)}, pool, seed)


def run_pipeline(options: SearchOptions, say=print):
    """Generate candidates, evaluate them with the chosen strategy, and leave in `options.out`:
    leaderboard.sqlite, candidates.json, progress.png and best.json."""
    from ..prompts import build_document, write_document

    task = options.check_inputs()  # every input file and setting, before any model loads or folder is made
    executor = search_executor(options)
    settings = options.settings()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    evaluator = PromptEvaluator(settings)
    state = process_local(evaluator.state_key(), evaluator.load_state)  # shared with serial evaluations
    candidates, sources = build_candidates(options, task, state.backbone, say)
    state.backbone.model.load_state_dict(state.pristine)
    write_json_atomic(out / "candidates.json", candidates)
    strategy = make_strategy(options)
    say(f"{len(candidates)} candidates; plan:\n{describe_plan(strategy.plan(len(candidates)))}")
    # The cache folder lives in `out`; leaving it out of the hash lets a moved output folder resume.
    config = {"settings": {**asdict(settings), "cache_dir": None}, "strategy": options.strategy,
              "seeds": list(options.seeds),
              "min_steps": options.min_steps, "max_steps": options.max_steps, "eta": options.eta}
    leaderboard = Leaderboard(out / "leaderboard.sqlite")
    study = Study(leaderboard, config, strategy, evaluator, executor, retry_failed=options.retry_failed)
    splits = ("train", "dev", "test") if settings.test_at_steps is not None else ("train", "dev")
    fingerprint = data_fingerprint(task, data_dir=options.data_dir, k=options.k, seeds=options.seeds, splits=splits)
    remember_config(leaderboard, study.config_hash, config, fingerprint)
    result = study.run(candidates, progress=options.progress)
    if result.failures:
        say(f"{result.n_failed} evaluation(s) failed and left the race (FAIL rows in the leaderboard); "
            f"a rerun skips them unless given --retry-failed")
    plot_leaderboard(leaderboard, out / "progress.png", config_hash=study.config_hash)
    say(leaderboard.to_table(config_hash=study.config_hash))
    best = result.best
    if best is not None:
        rows = [r for r in leaderboard.rows(study.config_hash)
                if r.candidate_id == best.candidate_id and r.budget == options.max_steps]
        document = build_document(
            task, options.model, best.candidate, dev={r.seed: r.dev_metric for r in rows},
            test={r.seed: r.test_metric for r in rows},
            found_by={"strategy": options.strategy, "steps": options.max_steps, "seeds": list(options.seeds),
                      "config_hash": study.config_hash, "leaderboard": str(out / "leaderboard.sqlite"),
                      "candidate_id": best.candidate_id,
                      "sources": sources.get(best.candidate["template"], ["file"]),
                      "evaluations_run": result.n_evaluated, "evaluations_reused": result.n_reused},
            demonstrations=demonstration_section_for(settings, best.candidate, options.seeds[0]))
        write_document(document, out / "best.json")
        say(f"best: {describe_candidate(best.candidate)}  dev {best.mean_dev:.4f}"
            + (f"  test {best.mean_test:.4f}" if best.mean_test is not None else ""))
        say(f"wrote {out / 'best.json'}, {out / 'progress.png'}, {out / 'leaderboard.sqlite'}")
    return result
