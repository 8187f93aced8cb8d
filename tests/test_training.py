"""Training and evaluation on the tiny random models: learning, determinism, best-on-dev restoration,
regression, the classification-head baseline and bad inputs."""
from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from autoprompt_search.models import load_backbone, load_classifier
from autoprompt_search.errors import UserError
from autoprompt_search.tasks import Example, get_task
from autoprompt_search.prompts import Template
from autoprompt_search.prompts import Prompt
from autoprompt_search.training import (
    TrainConfig,
    content_free_calibration,
    evaluate,
    fine_tune,
    predictions_from_scores,
    prompt_loss,
)
from autoprompt_search.prompts import Verbalizer

from conftest import TEST_DEVICE, toy_similarity_examples

SST2 = get_task("SST-2")
STSB = get_task("STS-B")


def _prompt(task=SST2, **kwargs) -> Prompt:
    return Prompt(Template.parse(task.template), Verbalizer.for_task(task), **kwargs)


def _config(**overrides) -> TrainConfig:
    return TrainConfig(**{**dict(steps=30, batch_size=8, lr=1e-3, eval_every=1000, max_length=48, seed=7), **overrides})


def _flipped(examples: list[Example]) -> list[Example]:
    return [Example(e.texts, "1" if e.label == "0" else "0") for e in examples]


@pytest.mark.parametrize("backbone_fixture", ["fresh_tiny_mlm", "fresh_tiny_causal"])
def test_prompt_fine_tuning_lowers_the_training_loss(request, backbone_fixture, toy_sentiment):
    backbone = request.getfixturevalue(backbone_fixture)
    train, _ = toy_sentiment
    before = evaluate(backbone, SST2, _prompt(), train, max_length=48)
    result = fine_tune(backbone, SST2, _prompt(), train, None, _config(steps=30, lr=1e-2), progress=False)
    assert len(result.train_losses) == 30 and all(np.isfinite(result.train_losses))
    first, last = np.mean(result.train_losses[:5]), np.mean(result.train_losses[-5:])
    assert last < 0.5 * first, result.train_losses
    assert result.dev is None and result.best_step == 30
    # The weights were updated in place: the fitted backbone now classifies its training set.
    after = evaluate(backbone, SST2, _prompt(), train, max_length=48)
    assert after.main >= 0.9 and after.main > before.main
    assert set(after.predictions) == set(SST2.labels)


def test_same_seed_gives_identical_runs(tiny_mlm_folder, toy_sentiment):
    train, dev = toy_sentiment

    def run(seed):
        backbone = load_backbone(str(tiny_mlm_folder), device=TEST_DEVICE)
        return fine_tune(backbone, SST2, _prompt(), train, dev, _config(steps=8, eval_every=4, seed=seed), progress=False)

    first, second, other = run(3), run(3), run(4)
    assert first.train_losses == second.train_losses
    assert first.dev.predictions == second.dev.predictions
    np.testing.assert_array_equal(first.dev.scores, second.dev.scores)
    assert first.history == second.history
    assert other.train_losses != first.train_losses  # the seed drives batch order


def test_best_dev_checkpoint_is_restored(fresh_tiny_mlm, toy_sentiment):
    train, _ = toy_sentiment
    # Dev holds the training sentences with flipped labels, so dev accuracy falls as training
    # succeeds: the best checkpoint is an early one, not the last.
    dev = _flipped(train)
    result = fine_tune(fresh_tiny_mlm, SST2, _prompt(), train, dev, _config(steps=24, eval_every=2, lr=1e-2),
                       progress=False)
    scores = [score for _, score in result.history]
    assert [step for step, _ in result.history] == list(range(0, 25, 2))  # step 0: the model it started from
    assert scores[-1] < max(scores), "the toy set-up must make the last checkpoint worse than the best"
    assert result.dev.main == pytest.approx(max(scores))
    assert result.best_step == result.history[scores.index(max(scores))][0]
    # The returned backbone holds the best weights: evaluating again gives the same dev score.
    again = evaluate(fresh_tiny_mlm, SST2, _prompt(), dev, max_length=48)
    assert again.main == pytest.approx(max(scores))


def test_test_set_is_scored_with_the_best_checkpoint(fresh_tiny_mlm, toy_sentiment):
    train, dev = toy_sentiment
    result = fine_tune(fresh_tiny_mlm, SST2, _prompt(), train, dev, _config(steps=6, eval_every=3),
                       test=dev, progress=False)
    np.testing.assert_allclose(result.test.scores, result.dev.scores)
    assert result.test.predictions == result.dev.predictions


def test_regression_fine_tuning_predicts_in_range(fresh_tiny_mlm):
    train, dev = toy_similarity_examples(16, seed=3), toy_similarity_examples(12, seed=4)
    result = fine_tune(fresh_tiny_mlm, STSB, _prompt(STSB), train, dev, _config(steps=12, eval_every=6),
                       progress=False)
    assert all(np.isfinite(result.train_losses)) and all(loss >= -1e-6 for loss in result.train_losses)
    predictions = np.asarray(result.dev.predictions, dtype=float)
    assert predictions.shape == (len(dev),)
    assert ((predictions >= 0.0) & (predictions <= 5.0)).all() and predictions.std() > 0
    assert set(result.dev.metrics) >= {"pearson", "spearman", "main"}
    assert np.mean(result.train_losses[-4:]) < np.mean(result.train_losses[:4])


def test_regression_loss_is_zero_when_the_pole_probability_matches_the_score():
    targets = torch.tensor([0.2, 0.9])
    exact = torch.log(torch.stack([1 - targets, targets], -1))
    assert prompt_loss(STSB, exact, targets).item() == pytest.approx(0.0, abs=1e-5)
    assert prompt_loss(STSB, exact.flip(-1), targets).item() > 0.1
    assert predictions_from_scores(STSB, exact.numpy()) == pytest.approx([1.0, 4.5])


def test_standard_fine_tuning_through_a_classification_head(tiny_classifier_folder, toy_sentiment):
    train, dev = toy_sentiment
    backbone = load_classifier(str(tiny_classifier_folder), num_labels=2, device=TEST_DEVICE, seed=0)
    result = fine_tune(backbone, SST2, None, train, dev, _config(steps=30), progress=False)
    assert np.mean(result.train_losses[-5:]) < np.mean(result.train_losses[:5])
    assert result.dev.scores.shape == (len(dev), 2)
    assert set(result.dev.predictions) <= set(SST2.labels) and "acc" in result.dev.metrics


def test_evaluate_keeps_example_order(tiny_causal, toy_sentiment):
    _, dev = toy_sentiment
    prompt = _prompt()
    result = evaluate(tiny_causal, SST2, prompt, dev, batch_size=5, max_length=48)
    with torch.no_grad():
        for index in (0, 3, len(dev) - 1):
            encoded = tiny_causal.encode(dev[index], prompt.template, prompt.verbalizer, max_length=48)
            alone = tiny_causal.class_scores(tiny_causal.collate([encoded]), prompt.verbalizer)[0].cpu().numpy()
            np.testing.assert_allclose(result.scores[index], alone, atol=1e-4)
    assert result.predictions == [SST2.labels[i] for i in result.scores.argmax(1)]
    assert result.tokens > 0


def test_label_first_evaluation_batches_sentences_of_similar_length(tiny_causal, monkeypatch):
    """A label-first template's prefix is the same for every example and the sentence is in the
    continuation, so batches must be grouped by continuation length, not by prefix length."""
    examples = [Example((" ".join(["good"] * (1 + (7 * i) % 23)),), "1") for i in range(40)]
    prompt = Prompt(Template.parse("*cls*_It_was*mask*.*+sent_0**sep+*"), Verbalizer.for_task(SST2))
    padded, real = [], []
    collate = tiny_causal.collate

    def recording_collate(items):
        batch = collate(items)
        padded.append(batch.continuation_mask.numel())
        real.append(int(batch.continuation_mask.sum()))
        return batch

    monkeypatch.setattr(tiny_causal, "collate", recording_collate)
    evaluate(tiny_causal, SST2, prompt, examples, batch_size=8, max_length=64)
    lengths = sorted(len(c) for e in examples for c in
                     tiny_causal.encode(e, prompt.template, prompt.verbalizer, max_length=64).continuations)
    # Grouped by length, each batch of 8 examples (16 continuations) pads to its own longest member.
    fewest = sum(len(lengths[i:i + 16]) * lengths[i:i + 16][-1] for i in range(0, len(lengths), 16))
    assert sum(padded) == fewest
    assert sum(real) == sum(lengths)


def test_calibration_is_subtracted(tiny_mlm, toy_sentiment):
    _, dev = toy_sentiment
    prompt = _prompt()
    calibration = content_free_calibration(tiny_mlm, SST2, prompt, max_length=48)
    assert calibration.shape == (2,) and np.exp(calibration).sum() == pytest.approx(1.0, abs=1e-5)
    plain = evaluate(tiny_mlm, SST2, prompt, dev, max_length=48)
    calibrated = evaluate(tiny_mlm, SST2, prompt, dev, max_length=48, calibration=calibration)
    np.testing.assert_allclose(calibrated.scores, plain.scores - calibration, atol=1e-6)


def test_demonstration_sampling_is_deterministic_under_the_seed(tiny_mlm, toy_sentiment):
    train, dev = toy_sentiment

    def demonstrations(query, index, rng: random.Random):
        picks = rng.sample([e for e in train if e.texts != query.texts], 2)
        return [(e, SST2.label_index(e.label)) for e in picks]

    prompt = _prompt(demonstrations=demonstrations, inference_samples=3)
    first = evaluate(tiny_mlm, SST2, prompt, dev[:6], max_length=96, seed=5)
    second = evaluate(tiny_mlm, SST2, prompt, dev[:6], max_length=96, seed=5)
    other = evaluate(tiny_mlm, SST2, prompt, dev[:6], max_length=96, seed=6)
    np.testing.assert_array_equal(first.scores, second.scores)
    assert not np.allclose(first.scores, other.scores)
    # Averaged log-softmax scores: each row is a mean of log-probabilities, so all negative.
    assert (first.scores < 0).all()


def test_no_training_examples_is_a_user_error(tiny_mlm_folder, toy_sentiment):
    backbone = load_backbone(str(tiny_mlm_folder), device=TEST_DEVICE)
    with pytest.raises(UserError, match="no training examples for SST-2"):
        fine_tune(backbone, SST2, _prompt(), [], toy_sentiment[1], _config(), progress=False)
    with pytest.raises(UserError, match="no examples to evaluate"):
        evaluate(backbone, SST2, _prompt(), [])


def test_unknown_label_in_training_data_is_a_user_error(fresh_tiny_mlm, toy_sentiment):
    train, dev = toy_sentiment
    bad = [*train[:3], Example(("A fine film.",), "positive")]
    with pytest.raises(UserError, match=r"unknown label 'positive' for task SST-2; expected one of \['0', '1'\]"):
        fine_tune(fresh_tiny_mlm, SST2, _prompt(), bad, dev, _config(steps=1, batch_size=4), progress=False)


@pytest.mark.parametrize("values, message", [
    ({"steps": 10, "learning_rate": 1e-5}, "unknown field(s) ['learning_rate']"),
    ({"batch_size": 0}, "field 'batch_size' has an invalid value 0"),
    ({"lr": -1.0}, "field 'lr' has an invalid value -1.0"),
])
def test_bad_training_config_is_a_user_error(values, message):
    with pytest.raises(UserError, match=__import__("re").escape(message)):
        TrainConfig.from_dict(values, source="search.toml [training]")


def test_paper_config_and_round_trip():
    paper = TrainConfig.paper(seed=13)
    assert (paper.steps, paper.batch_size, paper.lr, paper.eval_every, paper.seed) == (1000, 8, 1e-5, 100, 13)
    assert TrainConfig.from_dict(paper.to_dict()) == paper
    assert replace(paper, steps=5).steps == 5


def test_learning_rate_warms_up_from_zero_then_decays_linearly_to_zero(fresh_tiny_causal, toy_sentiment):
    train, _ = toy_sentiment
    result = fine_tune(fresh_tiny_causal, SST2, _prompt(), train, None,
                       _config(steps=8, lr=1e-3, warmup_ratio=0.25), progress=False)
    rates = result.learning_rates
    assert len(rates) == 8
    # 2 warmup steps: 0, then half the peak; then the decay from the peak over the remaining 6 steps.
    np.testing.assert_allclose(rates[:2], [0.0, 5e-4], rtol=1e-6)
    np.testing.assert_allclose(rates[2:], [1e-3 * (8 - s) / 6 for s in range(2, 8)], rtol=1e-6)


def test_without_warmup_the_rate_decays_from_the_peak(fresh_tiny_causal, toy_sentiment):
    train, _ = toy_sentiment
    result = fine_tune(fresh_tiny_causal, SST2, _prompt(), train, None, _config(steps=4, lr=1e-3), progress=False)
    np.testing.assert_allclose(result.learning_rates, [1e-3, 7.5e-4, 5e-4, 2.5e-4], rtol=1e-6)


def test_fine_tuning_that_only_lowers_dev_returns_the_model_it_started_from(fresh_tiny_causal, toy_sentiment):
    train, _ = toy_sentiment
    prompt = _prompt()
    # First a model that classifies `train` well; then training on inverted labels, scored on `train`,
    # can only make it worse.
    fine_tune(fresh_tiny_causal, SST2, prompt, train, None, _config(steps=30, lr=1e-2), progress=False)
    initial = {k: v.clone() for k, v in fresh_tiny_causal.model.state_dict().items()}
    start = evaluate(fresh_tiny_causal, SST2, prompt, train, max_length=48, seed=7)
    result = fine_tune(fresh_tiny_causal, SST2, prompt, _flipped(train), train,
                       _config(steps=12, lr=1e-2, eval_every=4), progress=False)
    assert result.history[0] == (0, start.main)
    assert all(score < start.main for _, score in result.history[1:]), result.history  # the premise
    assert result.best_step == 0 and result.dev.main == start.main
    for name, value in fresh_tiny_causal.model.state_dict().items():
        assert torch.equal(value, initial[name]), name


def test_without_eval_at_start_the_trained_model_is_kept(fresh_tiny_causal, toy_sentiment):
    train, dev = toy_sentiment
    result = fine_tune(fresh_tiny_causal, SST2, _prompt(), _flipped(train), dev,
                       _config(steps=12, lr=1e-2, eval_every=4, eval_at_start=False), progress=False)
    assert [step for step, _ in result.history] == [4, 8, 12] and result.best_step >= 4


def test_bf16_evaluation_casts_each_weight_once_however_many_batches(tiny_causal, toy_sentiment):
    """Autocast keeps its bf16 weight copies for one context, so scoring in one context per evaluation
    casts each weight once; a context per batch would cast every weight again for every batch."""
    from torch.utils._python_dispatch import TorchDispatchMode

    _, dev = toy_sentiment
    weights = {p.data_ptr() for p in tiny_causal.model.parameters() if p.dim() == 2}
    casts = []

    class CountWeightCasts(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._to_copy.default and args[0].data_ptr() in weights:
                casts.append(args[0].data_ptr())
            return func(*args, **(kwargs or {}))

    with CountWeightCasts():
        evaluate(tiny_causal, SST2, _prompt(), dev[:6], batch_size=2, max_length=48, precision="bf16")
    assert casts and len(casts) == len(set(casts))
