"""The cheaper paths of training and scoring: bf16 autocast, "auto" precision, trainable-only and
caller-provided checkpoints, the encoding cache, and torch threads per parallel job."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from autoprompt_search.errors import UserError
from autoprompt_search.prompts import Prompt, Template, Verbalizer
from autoprompt_search.search import SearchOptions
from autoprompt_search.search.executors import JoblibExecutor, threads_per_job
from autoprompt_search.tasks import Example, get_task
from autoprompt_search.training import TrainConfig, clear_encoding_cache, evaluate, fine_tune
from autoprompt_search.training import precision as precision_module
from autoprompt_search.training.encodings import EncodingCache, encoding_cache
from autoprompt_search.training.trainer import _snapshot

SST2 = get_task("SST-2")


def _prompt(template: str | None = None, words: dict | None = None) -> Prompt:
    verbalizer = Verbalizer.from_mapping(SST2, words) if words else Verbalizer.for_task(SST2)
    return Prompt(Template.parse(template or SST2.template), verbalizer)


def _config(**overrides) -> TrainConfig:
    return TrainConfig(**{**dict(steps=8, batch_size=8, lr=1e-2, eval_every=2, max_length=48, seed=7), **overrides})


def _flipped(examples):
    return [Example(e.texts, "1" if e.label == "0" else "0") for e in examples]


def _weights(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# ---------------------------------------------------------------------------------------------
# precision


@pytest.mark.parametrize("backbone_fixture", ["tiny_mlm", "tiny_causal"])
def test_bf16_scores_are_close_to_fp32_but_computed_in_bf16(request, backbone_fixture, toy_sentiment):
    backbone = request.getfixturevalue(backbone_fixture)
    _, dev = toy_sentiment
    fp32 = evaluate(backbone, SST2, _prompt(), dev, max_length=48)
    bf16 = evaluate(backbone, SST2, _prompt(), dev, max_length=48, precision="bf16")
    assert bf16.scores.dtype == np.float64 and np.isfinite(bf16.scores).all()
    assert not np.array_equal(bf16.scores, fp32.scores), "bf16 autocast was not applied"
    np.testing.assert_allclose(bf16.scores, fp32.scores, atol=0.15)


def test_bf16_fine_tuning_learns(fresh_tiny_causal, toy_sentiment):
    train, _ = toy_sentiment
    result = fine_tune(fresh_tiny_causal, SST2, _prompt(), train, None, _config(steps=20, precision="bf16"),
                       progress=False)
    assert np.isfinite(result.train_losses).all()
    assert np.mean(result.train_losses[-5:]) < np.mean(result.train_losses[:5])
    assert all(p.dtype == torch.float32 for p in fresh_tiny_causal.model.parameters())  # weights stay fp32


def test_auto_precision_follows_the_cpu_flags(monkeypatch, tiny_mlm, toy_sentiment):
    monkeypatch.delenv("AUTOPROMPT_NATIVE_BF16")
    monkeypatch.setattr(precision_module, "read_cpu_flags", lambda: {"fpu", "avx2", "avx512f"})
    assert precision_module.resolve_precision("auto", "cpu") == "fp32"
    _, dev = toy_sentiment
    fp32 = evaluate(tiny_mlm, SST2, _prompt(), dev, max_length=48)
    auto = evaluate(tiny_mlm, SST2, _prompt(), dev, max_length=48, precision="auto")
    np.testing.assert_array_equal(auto.scores, fp32.scores)
    for flag in precision_module.NATIVE_BF16_CPU_FLAGS:
        monkeypatch.setattr(precision_module, "read_cpu_flags", lambda flag=flag: {"avx2", flag})
        assert precision_module.resolve_precision("auto", "cpu") == "bf16"
    assert precision_module.resolve_precision("fp32", "cpu") == "fp32"


def test_auto_precision_is_resolved_into_the_search_configuration(monkeypatch):
    """The configuration hash records what was computed: "auto" on a CPU without native bf16 is the
    fp32 configuration (its results are reused), and with native bf16 the bf16 one."""
    monkeypatch.delenv("AUTOPROMPT_NATIVE_BF16")

    def settings(flags, precision="auto"):
        monkeypatch.setattr(precision_module, "read_cpu_flags", lambda: flags)
        return SearchOptions(task="SST-2", device="cpu", precision=precision).settings()

    assert settings({"avx2"}).train["precision"] == "fp32"
    assert settings({"avx2"}) == settings({"avx2"}, "fp32")
    assert settings({"avx512_bf16"}).train["precision"] == "bf16"
    assert settings({"avx512_bf16"}) == settings({"avx2"}, "bf16")
    assert settings({"avx512_bf16"}, "fp32").train["precision"] == "fp32"


def test_the_variable_overrides_what_auto_assumes(monkeypatch):
    monkeypatch.setattr(precision_module, "read_cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setenv("AUTOPROMPT_NATIVE_BF16", "0")
    assert precision_module.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(precision_module, "read_cpu_flags", lambda: {"avx2"})
    monkeypatch.setenv("AUTOPROMPT_NATIVE_BF16", "1")
    assert precision_module.resolve_precision("auto", "cpu") == "bf16"
    assert precision_module.resolve_precision("fp32", "cpu") == "fp32"


def test_a_bad_precision_is_a_user_error_naming_the_field():
    with pytest.raises(UserError, match="'precision'.*'fp16'"):
        TrainConfig(precision="fp16").validate()
    with pytest.raises(UserError, match="--precision"):
        SearchOptions.from_dict({"task": "sst2", "precision": "half"}, origins={"precision": "--precision"})
    assert SearchOptions.from_dict({"task": "sst2", "precision": "bf16"}).settings().train["precision"] == "bf16"


# ---------------------------------------------------------------------------------------------
# checkpoints


def _fit(backbone, train):
    """A model that classifies `train` well (so that training on flipped labels can only hurt it)."""
    fine_tune(backbone, SST2, _prompt(), train, None, _config(steps=30, eval_every=1000), progress=False)


def _only_hurting_run(backbone, train, **kwargs):
    """Training on flipped labels, scored on `train`: dev only falls, so the best step is 0."""
    result = fine_tune(backbone, SST2, _prompt(), _flipped(train), train, _config(steps=8, eval_every=4),
                       progress=False, **kwargs)
    assert result.best_step == 0, "the set-up must make step 0 the best checkpoint"
    return result


def test_step_0_restore_from_caller_weights_is_exact_and_leaves_them_untouched(fresh_tiny_causal, toy_sentiment):
    train, _ = toy_sentiment
    model = fresh_tiny_causal.model
    _fit(fresh_tiny_causal, train)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    kept = {k: v.clone() for k, v in initial.items()}
    _only_hurting_run(fresh_tiny_causal, train, initial_state=initial)
    for name, value in model.state_dict().items():
        assert torch.equal(value, kept[name]), name
        assert torch.equal(initial[name], kept[name]), f"fine_tune modified the caller's {name}"


def test_step_0_restore_when_the_caller_passes_the_live_state_dict(fresh_tiny_mlm, toy_sentiment):
    train, _ = toy_sentiment
    model = fresh_tiny_mlm.model
    _fit(fresh_tiny_mlm, train)
    before = _weights(model)
    _only_hurting_run(fresh_tiny_mlm, train, initial_state=model.state_dict())  # shares the weights' memory
    for name, value in model.named_parameters():
        assert torch.equal(value, before[name]), name


def test_only_trainable_parameters_are_snapshotted_and_frozen_ones_stay(fresh_tiny_causal, toy_sentiment):
    train, _ = toy_sentiment
    model = fresh_tiny_causal.model
    frozen = [name for name, p in model.named_parameters() if "layers.0." in name or "embed" in name]
    assert frozen
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    snapshot = _snapshot(model)
    assert set(snapshot) == {name for name, p in model.named_parameters() if p.requires_grad}
    _fit(fresh_tiny_causal, train)
    before = _weights(model)
    _only_hurting_run(fresh_tiny_causal, train)
    for name, value in model.named_parameters():
        assert torch.equal(value, before[name]), name


def test_a_best_checkpoint_after_step_0_is_restored_with_frozen_parameters(fresh_tiny_mlm, toy_sentiment):
    train, _ = toy_sentiment
    model = fresh_tiny_mlm.model
    for name, p in model.named_parameters():
        p.requires_grad_("layer.0." not in name)
    assert not all(p.requires_grad for p in model.parameters())
    dev = _flipped(train)
    result = fine_tune(fresh_tiny_mlm, SST2, _prompt(), train, dev, _config(steps=24, lr=1e-2, eval_at_start=False),
                       progress=False)
    scores = [score for _, score in result.history]
    assert scores[-1] < max(scores), "the set-up must make the last checkpoint worse than the best"
    again = evaluate(fresh_tiny_mlm, SST2, _prompt(), dev, max_length=48)
    assert again.main == pytest.approx(max(scores))
    np.testing.assert_allclose(again.scores, result.dev.scores, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# encoding cache


@pytest.mark.parametrize("backbone_fixture", ["tiny_mlm", "tiny_causal"])
def test_cached_encodings_give_the_uncached_scores_and_follow_template_and_words(request, backbone_fixture,
                                                                                 toy_sentiment):
    backbone = request.getfixturevalue(backbone_fixture)
    _, dev = toy_sentiment
    variants = [_prompt(), _prompt("*cls**sent_0*_This_is*mask*.*sep+*"),
                _prompt(words={"0": "awful", "1": "wonderful"})]
    uncached = []
    for prompt in variants:
        clear_encoding_cache()
        uncached.append(evaluate(backbone, SST2, prompt, dev, max_length=48).scores)
    assert not np.array_equal(uncached[0], uncached[1]) and not np.array_equal(uncached[0], uncached[2])
    clear_encoding_cache()
    cache = encoding_cache(backbone)
    for prompt, expected in zip(variants, uncached):  # each variant after the others filled the cache
        np.testing.assert_array_equal(evaluate(backbone, SST2, prompt, dev, max_length=48).scores, expected)
    hits = cache.hits
    for prompt, expected in zip(variants, uncached):
        np.testing.assert_array_equal(evaluate(backbone, SST2, prompt, dev, max_length=48).scores, expected)
    assert cache.hits == hits + len(variants) * len(dev)
    clear_encoding_cache()
    short = evaluate(backbone, SST2, variants[0], dev, max_length=12).scores  # max_length is part of the key
    assert not np.array_equal(short, uncached[0])


def test_the_encoding_cache_is_bounded_and_evicts_the_least_recently_used():
    cache = EncodingCache(max_entries=2)
    calls = []

    def encoder(value):
        return lambda: calls.append(value) or value

    assert cache.get("a", encoder("A")) == "A" and cache.get("b", encoder("B")) == "B"
    assert cache.get("a", encoder("A2")) == "A"  # a hit, and "a" is now the most recent
    cache.get("c", encoder("C"))
    assert len(cache) == 2
    assert cache.get("b", encoder("B2")) == "B2"  # "b" was evicted
    assert calls == ["A", "B", "C", "B2"]
    assert cache.get(["unhashable"], encoder("X")) == "X" and len(cache) == 2


# ---------------------------------------------------------------------------------------------
# threads per parallel job


@pytest.mark.parametrize("cores", [1, 2, 3, 8, 16])
@pytest.mark.parametrize("jobs", [-1, 1, 2, 3, 4, 32])
def test_jobs_times_threads_never_exceeds_the_cores(cores, jobs):
    threads = threads_per_job(jobs, cores)
    assert threads >= 1
    concurrent = cores if jobs < 1 else jobs
    assert concurrent * threads <= max(cores, concurrent)
    if concurrent <= cores:
        assert (threads + 1) * concurrent > cores  # and no core is left idle for nothing


def _torch_threads(_item) -> int:
    import torch

    return torch.get_num_threads()


def test_joblib_workers_run_with_their_share_of_the_cores():
    from autoprompt_search.search.executors import available_cores

    cores = available_cores()
    threads = list(JoblibExecutor(n_jobs=2).map_unordered(_torch_threads, range(4)))
    assert threads and all(2 * t <= max(cores, 2) for t in threads)
    assert all(t == max(1, cores // 2) for t in threads)


# ---------------------------------------------------------------------------------------------
# step-0 dev results reused from the zero-shot rung


def test_fine_tuning_after_a_zero_shot_evaluation_does_not_score_step_0_again(tiny_causal_folder, tmp_path,
                                                                           monkeypatch):
    from autoprompt_search.search import PromptEvaluator
    from autoprompt_search.training import trainer as trainer_module

    from test_search import search_options, write_toy_lmbff

    data = write_toy_lmbff(tmp_path / "data", seeds=(13, 21))
    settings = search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13, 21)).settings()
    calls = []
    original = trainer_module.evaluate
    monkeypatch.setattr(trainer_module, "evaluate", lambda *a, **k: calls.append(1) or original(*a, **k))
    candidate = {"template": SST2.template, "label_words": {"0": "awful", "1": "wonderful"}, "demonstrations": "off"}

    def fine_tuned(evaluator, state, seed):
        calls.clear()
        outcome = evaluator.evaluate_with(state, candidate, seed, 4)
        return outcome, len(calls)

    cold_evaluator = PromptEvaluator(settings)
    cold_state = cold_evaluator.load_state()
    cold, cold_calls = fine_tuned(cold_evaluator, cold_state, 13)

    evaluator = PromptEvaluator(settings)
    state = evaluator.load_state()
    zero_shot = evaluator.evaluate_with(state, candidate, 13, 0)
    warm, warm_calls = fine_tuned(evaluator, state, 13)
    assert warm_calls == cold_calls - 1  # step 0 came from the zero-shot evaluation
    from autoprompt_search.search.records import RESIDENT_MB

    def results(extra):  # the resident set is a measurement of the process, like the wall time
        return {k: v for k, v in extra.items() if k != RESIDENT_MB}

    assert (warm.dev_metric, results(warm.extra)) == (cold.dev_metric, results(cold.extra))
    if warm.extra["best_step"] == 0:
        assert warm.dev_metric == zero_shot.dev_metric
    # Another seed is another dev split: nothing to reuse, and a second fine-tuning of seed 13 reuses again.
    _, other_calls = fine_tuned(evaluator, state, 21)
    assert other_calls == cold_calls
    _, again_calls = fine_tuned(evaluator, state, 13)
    assert again_calls == cold_calls - 1
