"""The pipeline behind `search-templates --task ...`: candidates from every source, the strategy
over them, and the output folder (leaderboard, candidates, progress plot and best prompt).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

from .candidates import make_candidate
from .configs import data_fingerprint, hashed_train_config, remember_config
from ..data import load_task
from ..prompts import Verbalizer
from ..training import release_freed_memory
from .evaluator import EvaluatorSettings, PromptEvaluator
from .executors import SerialExecutor
from .leaderboard import Leaderboard
from .options import SearchOptions, make_strategy, search_executor
from .plots import plot_leaderboard
from .prompt_origin import describe_start, with_origins
from .ensemble import ENSEMBLE, build_ensemble, is_ensemble, with_ensemble
from .finalists import evaluate_finalist_demonstrations
from .predictions import load_predictions
from .records import candidate_id, describe_candidate, with_entries
from .selection import select_final
from .sidefiles import write_json_atomic
from .sources import build_candidates
from .strategies import describe_plan
from .study import Study
from .trial import clear_process_state, process_local


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


def prompt_document(settings: EvaluatorSettings, task, model: str, candidate: Mapping[str, Any], *, seed: int,
                    dev: Mapping[int, float], test: Mapping[int, float | None] | None = None,
                    found_by: Mapping[str, Any] | None = None) -> dict:
    """The exported document of a candidate: one prompt, or an ensemble whose members each carry their
    template, label words and demonstrations (drawn from `seed`'s training split)."""
    from ..prompts import build_document, build_ensemble_document

    if is_ensemble(candidate):
        members = [prompt_document(settings, task, model, member, seed=seed, dev={},
                                   found_by={"candidate_id": candidate_id(member)}) for member in candidate[ENSEMBLE]]
        return build_ensemble_document(members, dev=dev, test=test, found_by=found_by)
    return build_document(task, model, candidate, dev=dev, test=test, found_by=found_by,
                          demonstrations=demonstration_section_for(settings, candidate, seed))


def _local_concurrency(options: SearchOptions) -> int:
    """How many evaluations run at once on this machine: the local workers; 1 for a cluster (its machines
    are not this one) or a serial search."""
    if options.scheduler or options.backend == "serial" or options.jobs < 1:
        return 1
    return options.jobs


def _with_jobs(options: SearchOptions, backbone, train: Mapping[str, Any], say) -> SearchOptions:
    """`options` with `jobs` decided when left to the search (0): one evaluation per core as memory
    allows on a CPU (parallelism.auto_jobs), sized by the loaded model."""
    from dataclasses import replace

    if options.jobs != 0:
        return options
    if options.scheduler is not None or options.backend in ("dask", "ray"):
        return replace(options, jobs=-1)  # a cluster: as many as it has workers
    from .parallelism import auto_jobs, frozen_parameter_count, parameter_count

    jobs, why = auto_jobs(parameter_count(backbone.model), backbone.device.type, tuning=options.tuning,
                          frozen=frozen_parameter_count(backbone.model, train))
    say(f"parallel evaluations: {jobs} ({why}; --jobs N to choose)")
    return replace(options, jobs=jobs)


def run_pipeline(options: SearchOptions, say=print):
    """Generate candidates, evaluate them with the chosen strategy, and leave in `options.out`:
    leaderboard.sqlite, candidates.json, progress.png and best.json."""
    try:
        return _run_pipeline(options, say)
    finally:
        release_freed_memory()  # the heap kept for the next training step: a finished search holds no more than its model


def _run_pipeline(options: SearchOptions, say):
    from ..prompts import write_document

    task = options.check_inputs()  # every input file and setting, before any model loads or folder is made
    if describe_start(task):
        say(describe_start(task))
    settings = options.settings()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    evaluator = PromptEvaluator(settings)
    state = process_local(evaluator.state_key(), evaluator.load_state)  # shared with serial evaluations

    def screen(template: str, words_task) -> float:  # through the evaluator: the zero-shot rung reuses it
        return evaluator.zero_shot_dev(state, make_candidate(template, Verbalizer.for_task(words_task)), options.seeds[0])

    candidates, sources = build_candidates(options, task, state.backbone, say, screen=screen)
    evaluator.restore(state)
    release_freed_memory()  # generation's beams and caches: the race allocates differently, so give them back
    decided = _with_jobs(options, state.backbone, settings.train, say)
    executor = search_executor(decided)
    evaluator.concurrent = _local_concurrency(decided)
    if not isinstance(executor, SerialExecutor):
        # Evaluations run in worker processes, each with its own model: this one would sit idle beside them.
        del state, screen
        clear_process_state()
        release_freed_memory()
    own_words = sources.task_prompt_words or Verbalizer.for_task(task)
    task_prompt = candidate_id(make_candidate(task.template, own_words, options.demonstrations[0]))
    defended = task_prompt if task.has_own_prompt else None
    write_json_atomic(out / "candidates.json", with_origins(candidates, sources, defended))
    strategy = make_strategy(options, protected=(task_prompt,) if task_prompt in {candidate_id(c) for c in candidates}
                             else ())
    say(f"{len(candidates)} candidates; plan:\n{describe_plan(strategy.plan(len(candidates)))}")
    # The cache folder lives in `out`; leaving it out of the hash lets a moved output folder resume.
    config = {"settings": {**asdict(settings), "cache_dir": None, "train": hashed_train_config(settings.train)},
              "strategy": options.strategy,
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
    finalists = evaluate_finalist_demonstrations(study, result, options.finalist_demonstrations, options.demo_finalists,
                                                 task.num_sentences, task.num_classes,
                                                 task_prompt_id=defended,
                                                 progress=options.progress, say=say)
    if finalists.candidates:
        candidates = [*candidates, *finalists.candidates]
        write_json_atomic(out / "candidates.json", with_origins(candidates, sources, defended))
    result.ranking = with_entries(result.ranking, finalists.ranked)
    result.n_evaluated, result.n_reused = result.n_evaluated + finalists.n_evaluated, result.n_reused + finalists.n_reused

    def export_choice(ranking):
        return select_final(
            ranking, task, rule=options.selection, incumbent_id=defended,
            seeds=options.seeds,
            dev_predictions=lambda cid, seed: load_predictions(leaderboard, study.config_hash, cid, seed,
                                                               options.max_steps).get("dev"),
            alpha=options.selection_alpha)

    # Rule "forward" grows the ensemble from the single prompt the export would otherwise return.
    single = export_choice(result.ranking) if options.ensemble_size and options.ensemble_members == "forward" else None
    ensemble = build_ensemble(study, result, candidates, task, options.ensemble_size,
                              members_rule=options.ensemble_members,
                              start=single.entry.candidate_id if single is not None else None,
                              progress=options.progress, say=say)
    if options.ensemble_size and ensemble.ranked is None:
        say(f"no ensemble: {ensemble.reason}")
    result.ranking, result.n_evaluated = with_ensemble(result.ranking, ensemble), result.n_evaluated + ensemble.n_evaluated
    leaderboard.checkpoint()  # every row in the .sqlite file itself, so that copying it alone loses nothing
    plot_leaderboard(leaderboard, out / "progress.png", config_hash=study.config_hash)
    say(leaderboard.to_table(config_hash=study.config_hash))
    selection = export_choice(result.ranking)
    best = selection.entry if selection is not None else None
    if best is not None:
        rows = [r for r in leaderboard.rows(study.config_hash)
                if r.candidate_id == best.candidate_id and r.budget == options.max_steps]
        document = prompt_document(
            settings, task, options.model, best.candidate, seed=options.seeds[0], dev={r.seed: r.dev_metric for r in rows},
            test={r.seed: r.test_metric for r in rows},
            found_by={"strategy": options.strategy, "steps": options.max_steps, "seeds": list(options.seeds),
                      "config_hash": study.config_hash, "leaderboard": str(out / "leaderboard.sqlite"),
                      "candidate_id": best.candidate_id,
                      "sources": sources.get(best.candidate.get("template"), ["file"]),
                      **sources.origin(best.candidate),
                      "evaluations_run": result.n_evaluated, "evaluations_reused": result.n_reused,
                      "selection": selection.to_dict()})
        write_document(document, out / "best.json")
        say(f"selection ({selection.rule}): {selection.reason}")
        say(f"best: {describe_candidate(best.candidate)}  dev {best.mean_dev:.4f}"
            + (f"  test {best.mean_test:.4f}" if best.mean_test is not None else ""))
        origin = sources.origin(best.candidate)
        if origin:
            say(f"best template from: {', '.join(origin['template_source'])}; "
                f"label words from: {origin['label_words_source']}")
        say(f"wrote {out / 'best.json'}, {out / 'progress.png'}, {out / 'leaderboard.sqlite'}")
    return result
