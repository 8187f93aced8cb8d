"""`--jobs` left to the search: one evaluation per core as memory allows on a CPU, one on a GPU, capped
by AUTOPROMPT_MAX_JOBS; the pipeline says what it chose."""
from __future__ import annotations

import gc

import pytest

from autoprompt_search.errors import UserError
from autoprompt_search.search import SearchOptions
from autoprompt_search.search.parallelism import auto_jobs, evaluation_memory, kept_memory_fits

GB = 2**30


def test_one_evaluation_per_core_as_memory_allows(monkeypatch):
    monkeypatch.delenv("AUTOPROMPT_MAX_JOBS", raising=False)
    smollm2, gemma = 135_000_000, 268_000_000
    assert evaluation_memory(smollm2) < 5 * GB < evaluation_memory(gemma) < 9 * GB
    assert auto_jobs(smollm2, "cpu", cores=2, memory=22 * GB)[0] == 2
    assert auto_jobs(gemma, "cpu", cores=2, memory=12 * GB)[0] == 1  # a 16 GB laptop: one Gemma at a time
    assert auto_jobs(smollm2, "cpu", cores=8, memory=12 * GB)[0] == 2
    assert auto_jobs(smollm2, "cpu", cores=1, memory=64 * GB)[0] == 1
    assert auto_jobs(smollm2, "cpu", cores=4, memory=1 * GB)[0] == 1  # never fewer than one
    assert auto_jobs(gemma, "cpu", cores=2, memory=12 * GB, tuning="lora")[0] == 2  # LoRA keeps no copies
    assert auto_jobs(smollm2, "cuda", cores=16, memory=128 * GB)[0] == 1


def test_the_variable_caps_the_choice(monkeypatch):
    monkeypatch.setenv("AUTOPROMPT_MAX_JOBS", "1")
    jobs, why = auto_jobs(135_000_000, "cpu", cores=4, memory=64 * GB)
    assert jobs == 1 and "AUTOPROMPT_MAX_JOBS" in why
    monkeypatch.setenv("AUTOPROMPT_MAX_JOBS", "3")
    assert auto_jobs(135_000_000, "cpu", cores=4, memory=64 * GB)[0] == 3


def test_jobs_zero_means_auto_and_negative_is_an_error():
    assert SearchOptions(task="sst2").jobs == 1
    SearchOptions.from_dict({"task": "sst2", "jobs": 0})
    with pytest.raises(UserError, match="jobs"):
        SearchOptions.from_dict({"task": "sst2", "jobs": -2})


def test_the_pipeline_chooses_and_reports_its_jobs(tiny_causal_folder, tmp_path, monkeypatch):
    from autoprompt_search.search import pipeline
    from autoprompt_search.search.options import search_executor

    from test_search import search_options, write_toy_lmbff

    data = write_toy_lmbff(tmp_path / "data", seeds=(13,))
    options = search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13,), jobs=0)
    chosen = []
    monkeypatch.setattr(pipeline, "search_executor", lambda o: chosen.append(o.jobs) or search_executor(o))
    said = []
    pipeline.run_pipeline(options, say=said.append)
    assert chosen == [1]  # conftest caps the automatic choice at one
    assert any(line.startswith("parallel evaluations: 1 (") for line in said)
    chosen.clear()
    pipeline.run_pipeline(search_options(tiny_causal_folder, data, tmp_path / "out2", seeds=(13,), jobs=2),
                          say=said.append)
    assert chosen == [2]


def test_kept_freed_memory_must_fit_twice_over():
    """Gemma keeps its freed memory on this 24 GB machine but not on a 16 GB laptop; SmolLM2 on both."""
    smollm2, gemma = 135_000_000, 268_000_000
    assert kept_memory_fits(smollm2, memory=12 * GB) and kept_memory_fits(gemma, memory=21 * GB)
    assert not kept_memory_fits(gemma, memory=12 * GB)
    assert kept_memory_fits(gemma, "lora", memory=12 * GB)  # no gradients or moments of the base weights


def test_kept_freed_memory_stays_where_the_available_memory_is_unknown(monkeypatch):
    from autoprompt_search.search import parallelism

    monkeypatch.setattr(parallelism, "available_memory", lambda: None)
    assert kept_memory_fits(10**12)


def test_the_evaluator_stops_keeping_freed_memory_where_it_would_not_fit(tiny_causal_folder, tmp_path, monkeypatch):
    from autoprompt_search.search import evaluator as evaluator_module, parallelism
    from autoprompt_search.search.evaluator import PromptEvaluator

    from test_search import search_options, write_toy_lmbff

    data = write_toy_lmbff(tmp_path / "data", seeds=(13,))
    settings = search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13,)).settings()
    stops = []
    monkeypatch.setattr(evaluator_module, "stop_keeping_freed_memory", lambda: stops.append(1) or True)
    monkeypatch.setattr(parallelism, "available_memory", lambda: 64 * GB)
    PromptEvaluator(settings).load_state()
    assert stops == []
    monkeypatch.setattr(parallelism, "available_memory", lambda: 1024)  # less than any model needs
    PromptEvaluator(settings).load_state()
    assert stops == [1]


def test_evaluations_at_once_each_count_on_their_share_of_the_memory(tiny_causal_folder, tmp_path, monkeypatch):
    """Two workers that load together see the same available memory; each keeps its freed memory only
    if both together would fit."""
    from autoprompt_search.search import evaluator as evaluator_module, parallelism
    from autoprompt_search.search.evaluator import PromptEvaluator

    from test_search import search_options, write_toy_lmbff

    data = write_toy_lmbff(tmp_path / "data", seeds=(13,))
    settings = search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13,)).settings()
    one = PromptEvaluator(settings).load_state()
    need = parallelism.KEPT_MEMORY_FACTOR * parallelism.evaluation_memory(parallelism.parameter_count(one.backbone.model))
    stops = []
    monkeypatch.setattr(evaluator_module, "stop_keeping_freed_memory", lambda: stops.append(1) or True)
    monkeypatch.setattr(parallelism, "available_memory", lambda: int(1.5 * need))  # room for one, not two
    PromptEvaluator(settings).load_state()
    assert stops == []
    PromptEvaluator(settings, concurrent=2).load_state()
    assert stops == [1]
    assert kept_memory_fits(135_000_000, memory=12 * GB) and not kept_memory_fits(135_000_000, memory=12 * GB, sharing=2)


def test_the_pipeline_tells_the_evaluator_how_many_evaluations_run_at_once(tiny_causal_folder, tmp_path, monkeypatch):
    from autoprompt_search.search import pipeline

    from test_search import search_options, write_toy_lmbff

    data = write_toy_lmbff(tmp_path / "data", seeds=(13,))
    concurrency = []
    real_study = pipeline.Study

    def study(leaderboard, config, strategy, evaluator, executor, **kwargs):
        concurrency.append(evaluator.concurrent)
        return real_study(leaderboard, config, strategy, evaluator, executor, **kwargs)

    monkeypatch.setattr(pipeline, "Study", study)
    pipeline.run_pipeline(search_options(tiny_causal_folder, data, tmp_path / "a", seeds=(13,), jobs=2), say=lambda *_: None)
    pipeline.run_pipeline(search_options(tiny_causal_folder, data, tmp_path / "b", seeds=(13,)), say=lambda *_: None)
    assert concurrency == [2, 1]


def test_with_worker_processes_the_search_process_lets_go_of_its_model(tiny_causal_folder, tmp_path, monkeypatch):
    """Generation and screening load a model here; once evaluations run in workers (each loading its own),
    this process's copy is dropped instead of sitting idle beside theirs."""
    import weakref

    from autoprompt_search.search import pipeline
    from autoprompt_search.search.evaluator import PromptEvaluator
    from autoprompt_search.search.executors import SerialExecutor
    from autoprompt_search.search.trial import clear_process_state

    from test_search import search_options, write_toy_lmbff

    loaded = []
    real_load = PromptEvaluator.load_state

    def load_state(self):
        state = real_load(self)
        loaded.append(weakref.ref(state.backbone.model))
        return state

    monkeypatch.setattr(PromptEvaluator, "load_state", load_state)
    alive_when_racing = []

    class InProcessWorkers:  # not the serial executor, so the search treats it as workers elsewhere
        def map_unordered(self, function, items):
            if not alive_when_racing:
                gc.collect()
                alive_when_racing.append(loaded[0]() is not None)
            yield from SerialExecutor().map_unordered(function, items)

    monkeypatch.setattr(pipeline, "search_executor", lambda options: InProcessWorkers())
    clear_process_state()  # a model an earlier test left in this process would be reused, not loaded
    data = write_toy_lmbff(tmp_path / "data", seeds=(13,))
    pipeline.run_pipeline(search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13,)), say=lambda *_: None)
    assert alive_when_racing == [False]  # (the in-process "workers" then load a model of their own)


def test_a_process_holds_one_evaluator_state_at_a_time(monkeypatch):
    import weakref

    from autoprompt_search.search import trial

    class Heavy:
        pass

    trial.clear_process_state()
    released, made = [], []
    monkeypatch.setattr(trial, "release_freed_memory", lambda: released.append(1) or True)

    def factory():
        made.append(Heavy())
        return made[-1]

    first = weakref.ref(trial.process_local("rte", factory))
    made.clear()
    assert trial.process_local("rte", factory) is first() and not made and not released  # the same key: reused
    second = trial.process_local("sst-5", factory)
    assert first() is None and released == [1]  # the other task's state dropped before this one loaded
    assert trial.process_local("sst-5", factory) is second and len(made) == 1
    trial.clear_process_state()


@pytest.mark.parametrize("fails", [False, True])
def test_a_finished_search_hands_its_kept_memory_back(monkeypatch, fails):
    from autoprompt_search.search import pipeline

    released = []

    def body(options, say):
        assert not released  # not before the search ends
        if fails:
            raise RuntimeError("stopped")
        return "result"

    monkeypatch.setattr(pipeline, "_run_pipeline", body)
    monkeypatch.setattr(pipeline, "release_freed_memory", lambda: released.append(1) or True)
    if fails:
        with pytest.raises(RuntimeError):
            pipeline.run_pipeline(None)
    else:
        assert pipeline.run_pipeline(None) == "result"
    assert released == [1]
