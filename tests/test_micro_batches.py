"""Micro-batches of similar length: the planner's groups are optimal for its cost, and splitting a
batch leaves its loss and gradient unchanged (up to rounding) on causal and masked models."""
from __future__ import annotations

import itertools
import random

import pytest
import torch

from autoprompt_search.prompts import Prompt, Template, Verbalizer
from autoprompt_search.tasks import Example, get_task
from autoprompt_search.training.micro_batches import padded_tokens, plan_micro_batches
from autoprompt_search.training.trainer import _encode, backward_batch, encoded_length

from conftest import toy_sentiment_examples

SST2 = get_task("SST-2")


def within_bound(lengths, groups, max_tokens) -> bool:
    """No group of two or more pads to more than `max_tokens` (None: no bound)."""
    return max_tokens is None or all(len(g) == 1 or len(g) * max(lengths[i] for i in g) <= max_tokens for g in groups)


def brute_force_cost(lengths, overhead, max_tokens=None):
    """The least cost over every partition of the indices (not only contiguous runs of sorted lengths)
    whose groups respect `max_tokens`."""
    best = float("inf")
    n = len(lengths)
    for labels in itertools.product(range(n), repeat=n):  # group label per index
        groups = [[i for i in range(n) if labels[i] == g] for g in set(labels)]
        if within_bound(lengths, groups, max_tokens):
            best = min(best, padded_tokens(lengths, groups) + overhead * len(groups))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_plan_is_a_partition_with_the_least_cost(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(5, 80) for _ in range(rng.randint(1, 5))]
    overhead = rng.choice([0, 5, 30, 1000])
    groups = plan_micro_batches(lengths, overhead)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    cost = padded_tokens(lengths, groups) + overhead * len(groups)
    assert cost == brute_force_cost(lengths, overhead)


def test_plan_splits_uneven_lengths_and_keeps_even_ones_together():
    uneven = [10, 12, 11, 100, 98, 13, 99, 9]
    groups = plan_micro_batches(uneven, overhead_tokens=24)
    assert sorted(map(sorted, groups)) == [[0, 1, 2, 5, 7], [3, 4, 6]]
    assert padded_tokens(uneven, groups) < len(uneven) * max(uneven)
    assert plan_micro_batches([40] * 8, overhead_tokens=24) == [list(range(8))]
    assert plan_micro_batches(uneven, overhead_tokens=None) == [list(range(8))]
    assert plan_micro_batches([], 24) == []


def _gradients(backbone, encoded, examples, overhead):
    backbone.model.zero_grad(set_to_none=True)
    prompt = Prompt(Template.parse(SST2.template), Verbalizer.for_task(SST2))
    loss = backward_batch(backbone, SST2, prompt, encoded, examples, overhead_tokens=overhead)
    grads = {n: p.grad.clone() for n, p in backbone.model.named_parameters() if p.grad is not None}
    backbone.model.zero_grad(set_to_none=True)
    return loss, grads


@pytest.mark.parametrize("backbone_fixture", ["fresh_tiny_causal", "fresh_tiny_mlm"])
def test_split_batch_has_the_gradient_of_the_whole_batch(request, backbone_fixture):
    backbone = request.getfixturevalue(backbone_fixture)
    backbone.train(False)  # dropout off (the tiny MLM has some), so that both runs compute the same function
    # Sentences of very different lengths, so that the planner does split the batch.
    examples = toy_sentiment_examples(8, seed=3)
    examples = [Example((" ".join([e.texts[0]] * (1 + 4 * (i % 2))),), e.label) for i, e in enumerate(examples)]
    prompt = Prompt(Template.parse(SST2.template), Verbalizer.for_task(SST2))
    encoded = [_encode(backbone, e, prompt, (), 128, cached=False) for e in examples]
    assert len(plan_micro_batches([encoded_length(item) for item in encoded], 0)) > 1
    whole_loss, whole = _gradients(backbone, encoded, examples, None)
    split_loss, split = _gradients(backbone, encoded, examples, 0)
    assert split_loss == pytest.approx(whole_loss, rel=1e-5)
    assert whole.keys() == split.keys() and whole
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-4, atol=1e-6, msg=name)
    # And the loss is the batch's mean, not a sum over micro-batches.
    single_losses = [_gradients(backbone, [item], [ex], None)[0] for item, ex in zip(encoded, examples)]
    assert whole_loss == pytest.approx(sum(single_losses) / len(single_losses), rel=1e-5)


def test_bf16_prices_an_extra_pass_higher_than_fp32(fresh_tiny_causal, monkeypatch):
    """Under bf16 autocast each pass casts every weight again, so a batch that fp32 would split in two
    (a few short prompts and a few long ones) runs whole."""
    from autoprompt_search.training import trainer
    from autoprompt_search.training.micro_batches import BF16_OVERHEAD_TOKENS, DEFAULT_OVERHEAD_TOKENS

    backbone = fresh_tiny_causal
    prompt = Prompt(Template.parse(SST2.template), Verbalizer.for_task(SST2))
    examples = [Example((" ".join(["good"] * (2 if i < 4 else 14)),), str(i % 2)) for i in range(8)]
    encoded = [_encode(backbone, e, prompt, (), 128, cached=False) for e in examples]
    lengths = [encoded_length(item) for item in encoded]
    assert len(plan_micro_batches(lengths, DEFAULT_OVERHEAD_TOKENS)) == 2
    assert len(plan_micro_batches(lengths, BF16_OVERHEAD_TOKENS)) == 1
    passes = []
    scores = trainer._scores
    monkeypatch.setattr(trainer, "_scores", lambda b, items, v: passes.append(len(items)) or scores(b, items, v))
    for precision in ("fp32", "bf16"):
        passes.clear()
        backward_batch(backbone, SST2, prompt, encoded, examples, precision=precision)
        assert len(passes) == (2 if precision == "fp32" else 1) and sum(passes) == 8
        backbone.model.zero_grad(set_to_none=True)
