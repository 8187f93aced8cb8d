"""A bound on the padded tokens of a training micro-batch (`TrainConfig.micro_batch_tokens`, `--micro-batch-tokens`):
the planner never exceeds it and stays optimal under it, fine-tuning under it learns what it learns without
it, and bad values are one-line errors naming the field or flag."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from autoprompt_search.cli import main
from autoprompt_search.errors import UserError
from autoprompt_search.prompts import Prompt, Template, Verbalizer
from autoprompt_search.search import SearchOptions
from autoprompt_search.tasks import Example, get_task
from autoprompt_search.training import TrainConfig
from autoprompt_search.training import trainer
from autoprompt_search.training.micro_batches import padded_tokens, plan_micro_batches
from autoprompt_search.training.trainer import _encode, backward_batch, encoded_length, fine_tune

from conftest import toy_sentiment_examples
from test_micro_batches import brute_force_cost, within_bound

SST2 = get_task("SST-2")


@pytest.mark.parametrize("seed", range(8))
def test_the_plan_respects_the_bound_and_is_the_cheapest_that_does(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(5, 60) for _ in range(rng.randint(2, 5))]
    overhead = rng.choice([0, 5, 30])
    cap = rng.randint(40, 150)
    groups = plan_micro_batches(lengths, overhead, max_tokens=cap)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert within_bound(lengths, groups, cap)
    assert padded_tokens(lengths, groups) + overhead * len(groups) == brute_force_cost(lengths, overhead, cap)


def test_without_speed_splitting_the_bound_makes_the_fewest_groups():
    lengths = [30, 10, 31, 12, 29, 11]
    assert plan_micro_batches(lengths, None, max_tokens=1000) == [list(range(6))]
    groups = plan_micro_batches(lengths, None, max_tokens=93)
    assert len(groups) == 2 and within_bound(lengths, groups, 93)
    # A prompt longer than the bound runs alone rather than failing.
    assert plan_micro_batches([500, 10, 10], None, max_tokens=64) == [[1, 2], [0]]


def _batch(backbone):
    examples = toy_sentiment_examples(8, seed=5)
    examples = [Example((" ".join([e.texts[0]] * (1 + 2 * (i % 3))),), e.label) for i, e in enumerate(examples)]
    prompt = Prompt(Template.parse(SST2.template), Verbalizer.for_task(SST2))
    return examples, prompt, [_encode(backbone, e, prompt, (), 128, cached=False) for e in examples]


@pytest.mark.parametrize("backbone_fixture", ["fresh_tiny_causal", "fresh_tiny_mlm"])
def test_a_bounded_batch_has_the_gradient_of_the_whole_batch(request, backbone_fixture, monkeypatch):
    backbone = request.getfixturevalue(backbone_fixture)
    backbone.train(False)  # dropout off, so that both runs compute the same function
    examples, prompt, encoded = _batch(backbone)
    lengths = [encoded_length(item) for item in encoded]
    cap = 2 * max(lengths)
    assert len(lengths) * max(lengths) > cap  # the bound does split this batch

    def gradients(max_tokens):
        backbone.model.zero_grad(set_to_none=True)
        loss = backward_batch(backbone, SST2, prompt, encoded, examples, overhead_tokens=None, max_tokens=max_tokens)
        grads = {n: p.grad.clone() for n, p in backbone.model.named_parameters() if p.grad is not None}
        backbone.model.zero_grad(set_to_none=True)
        return loss, grads

    passes = []
    scores = trainer._scores
    monkeypatch.setattr(trainer, "_scores", lambda b, items, v: passes.append(items) or scores(b, items, v))
    whole_loss, whole = gradients(None)
    assert len(passes) == 1
    passes.clear()
    bounded_loss, bounded = gradients(cap)
    assert len(passes) > 1 and all(len(p) * max(encoded_length(i) for i in p) <= cap for p in passes)
    assert sum(len(p) for p in passes) == len(encoded)
    assert bounded_loss == pytest.approx(whole_loss, rel=1e-5)
    assert whole.keys() == bounded.keys() and whole
    for name in whole:
        torch.testing.assert_close(bounded[name], whole[name], rtol=1e-4, atol=1e-6, msg=name)


def test_fine_tuning_under_a_bound_learns_the_same_and_runs_more_passes(tiny_causal_folder, monkeypatch):
    from autoprompt_search.models import load_backbone
    from conftest import TEST_DEVICE

    train = toy_sentiment_examples(8, seed=1)
    dev = toy_sentiment_examples(8, seed=2)
    prompt = Prompt(Template.parse(SST2.template), Verbalizer.for_task(SST2))
    passes = []
    scores = trainer._scores
    monkeypatch.setattr(trainer, "_scores",
                        lambda b, items, v: (passes.append(len(items)) if torch.is_grad_enabled() else None)
                        or scores(b, items, v))
    results = {}
    for bound in (None, 16):
        passes.clear()
        backbone = load_backbone(str(tiny_causal_folder), device=TEST_DEVICE)
        config = TrainConfig(steps=3, batch_size=4, lr=1e-3, eval_every=3, seed=7, micro_batch_tokens=bound)
        results[bound] = (fine_tune(backbone, SST2, prompt, train, dev, config, progress=False), len(passes))
    (free, free_passes), (bounded, bounded_passes) = results[None], results[16]
    assert bounded_passes > free_passes
    assert bounded.train_losses == pytest.approx(free.train_losses, rel=1e-4)
    np.testing.assert_allclose(bounded.dev.scores, free.dev.scores, rtol=1e-4, atol=1e-5)
    assert bounded.dev.main == free.dev.main and bounded.best_step == free.best_step


@pytest.mark.parametrize("value", [0, -5, 2.5, True, "128"])
def test_a_bad_bound_is_a_one_line_error_naming_the_field(value):
    with pytest.raises(UserError, match="field 'micro_batch_tokens'") as error:
        TrainConfig.from_dict({"micro_batch_tokens": value})
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="micro_batch_tokens.*expected") as error:
        SearchOptions.from_dict({"task": "sst2", "micro_batch_tokens": value})
    assert "\n" not in str(error.value)


def test_the_flag_reaches_the_training_settings_and_a_bad_one_names_it(capsys, tmp_path):
    options = SearchOptions.from_dict({"task": "sst2", "micro_batch_tokens": 96})
    assert options.settings().train["micro_batch_tokens"] == 96
    assert SearchOptions.from_dict({"task": "sst2"}).settings().train["micro_batch_tokens"] is None
    code = main(["search", "--task", "sst2", "--out", str(tmp_path / "out"), "--micro-batch-tokens", "0"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code != 0 and len(err) == 1 and "--micro-batch-tokens" in err[0]
