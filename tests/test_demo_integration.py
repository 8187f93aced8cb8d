"""Demonstrations in the training/evaluation path: LM-BFF's sentence limits and longer prompts,
order-independent inference averaging, exclusion of the query in real fine-tuning, and the
GPT-3 style in-context baseline, on tiny random models."""
from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FILLER_WORDS, toy_sentiment_examples
from autoprompt_search.demonstrations import (
    DemonstrationConfig,
    DemonstrationSampler,
    class_index,
    demo_prompt_settings,
    query_key,
    with_demonstration_lengths,
)
from autoprompt_search.prompts import SentenceLimits, truncate_to_tokens
from autoprompt_search.training import (
    evaluate_in_context,
    in_context_demonstrations,
    in_context_prompt,
    prompt_token_count,
)
from autoprompt_search.errors import UserError
from autoprompt_search.tasks import Example, get_task
from autoprompt_search.prompts import Template
from autoprompt_search.prompts import Prompt
from autoprompt_search.training import TrainConfig, evaluate, fine_tune
from autoprompt_search.training.trainer import _encode
from autoprompt_search.prompts import Verbalizer

# How a demonstration's label word and the query's label slot appear in each task's manual template.
# `{}` is the word; MLM_SLOT / CAUSAL_SLOT stand for the query's slot.
SLOT_PATTERNS = {
    "SST-2": "It was{}.",
    "SST-5": "It was{}.",
    "RTE": "?{},",
    "TREC": "{}:",
}
FIXED_SETTINGS = settings(max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def backbone_for(kind: str, request):
    return request.getfixturevalue("tiny_mlm" if kind == "mlm" else "tiny_causal")


def sentence_strategy(max_words: int = 30):
    words = st.lists(st.sampled_from(FILLER_WORDS), min_size=0, max_size=max_words)
    return st.builds(lambda ws, end: (" ".join(ws).capitalize() + end) if ws else "", words,
                     st.sampled_from([".", "!", " .", ""]))


def example_strategy(task_name: str):
    task = get_task(task_name)
    return st.tuples(*[sentence_strategy() for _ in range(task.num_sentences)])


def written_token_count(tokenizer, template: Template, index: int, text: str) -> int:
    """Tokens of sentence `index` as the template writes it (modifiers and leading space applied)."""
    part = next(p for p in template.parts if p.kind == "sent" and p.index == index)
    written = (" " if part.space else "") + part.apply_to_sentence(text)
    return len(tokenizer(written, add_special_tokens=False)["input_ids"]) if part.apply_to_sentence(text) else 0


def is_written_prefix(template: Template, index: int, shorter: str, original: str) -> bool:
    part = next(p for p in template.parts if p.kind == "sent" and p.index == index)
    return part.apply_to_sentence(original).startswith(part.apply_to_sentence(shorter))


def slot_text(backbone, word: str | None) -> str:
    if word is not None:
        return " " + word
    return backbone.tokenizer.mask_token if backbone.kind == "mlm" else "{label}"


# ---------------------------------------------------------------------------------------------
# sentence limits and the length settings


@pytest.mark.parametrize("kind", ["mlm", "causal"])
@pytest.mark.parametrize("task_name", sorted(SLOT_PATTERNS))
@FIXED_SETTINGS
@given(data=st.data())
def test_limits_and_truncation_never_drop_the_mask_or_a_label_word(kind, task_name, data, request):
    backbone = backbone_for(kind, request)
    task = get_task(task_name)
    template, verbalizer = Template.parse(task.template), Verbalizer.for_task(task)
    query = Example(data.draw(example_strategy(task_name)), None)
    demos = [(Example(data.draw(example_strategy(task_name)), label), c) for c, label in enumerate(task.labels)]
    limit = st.one_of(st.none(), st.integers(1, 25))
    limits = SentenceLimits(data.draw(limit), data.draw(limit))
    empty_demos = [(Example(("",) * task.num_sentences, d.label), c) for d, c in demos]
    shortest = prompt_token_count(backbone.encode(Example(("",) * task.num_sentences), template, verbalizer,
                                                  empty_demos, max_length=10_000))
    max_length = data.draw(st.integers(shortest + 2, shortest + 120))
    prompt = Prompt(template, verbalizer, demonstrations=lambda *_: demos, max_length=max_length,
                    sentence_limits=limits)

    limited_query, limited_demos = limits.apply(backbone.tokenizer, template, query, demos)
    for position, (example, original) in enumerate([(limited_query, query), *((d, o) for (d, _), (o, _)
                                                                             in zip(limited_demos, demos))]):
        for index, (text, before) in enumerate(zip(example.texts, original.texts)):
            cap = limits.first if position == 0 and index == 0 else limits.other
            assert is_written_prefix(template, index, text, before)
            if cap is not None:
                assert written_token_count(backbone.tokenizer, template, index, text) <= cap
            if cap is None or written_token_count(backbone.tokenizer, template, index, before) <= cap:
                assert text == before  # nothing is cut that fits

    encoded = _encode(backbone, query, prompt, demos, None)
    text = encoded.text
    pattern = SLOT_PATTERNS[task_name]
    assert text.count(pattern.format(slot_text(backbone, None))) == 1
    for word in set(verbalizer.words):
        expected = sum(verbalizer.words[c] == word for _, c in demos)
        assert text.count(pattern.format(" " + word)) == expected
    if backbone.kind == "mlm":
        assert encoded.input_ids.count(backbone.tokenizer.mask_token_id) == 1
        assert encoded.input_ids[encoded.mask_index] == backbone.tokenizer.mask_token_id
        assert len(encoded.input_ids) <= max_length
    else:
        # Every class's label word and the template text after it fit in the limit too.
        assert prompt_token_count(encoded) <= max_length


@pytest.mark.parametrize("kind", ["mlm", "causal"])
def test_truncate_to_tokens_keeps_a_token_aligned_start(kind, request):
    tokenizer = backbone_for(kind, request).tokenizer
    text = "The movie was really wonderful and the music was lovely, but the ending was too long."
    total = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    for limit in range(1, total + 2):
        cut = truncate_to_tokens(text, tokenizer, limit)
        assert text.startswith(cut)
        assert len(tokenizer(cut, add_special_tokens=False)["input_ids"]) <= limit
        assert (cut == text) == (limit >= total)
    assert truncate_to_tokens(text, tokenizer, None) == text
    with pytest.raises(ValueError):
        truncate_to_tokens(text, tokenizer, 0)


def test_a_slot_that_drops_the_last_character_is_cut_as_written(tiny_mlm):
    """RTE's `*sent-_0*` drops the final period: the limit counts the sentence without it, and the
    template still drops one character, not a letter of the kept words."""
    template = Template.parse(get_task("RTE").template)
    query = Example(("The dog was very lovely and the cat was very dull.", "the film was long."))
    limited = SentenceLimits(first=4).limit_example(query, tiny_mlm.tokenizer, template, is_query=True)
    written = template.parts[1].apply_to_sentence(limited.texts[0])
    expected = truncate_to_tokens(query.texts[0][:-1], tiny_mlm.tokenizer, 4)
    assert written == expected and written.split()[-1] in query.texts[0].split()
    assert limited.texts[1] == query.texts[1]  # no other limit given


def test_demo_prompt_settings_follow_lm_bff_and_overrides():
    assert demo_prompt_settings("MR", 128) == demo_prompt_settings("mr", 128)
    mr = demo_prompt_settings("MR", 128)
    assert (mr.max_length, mr.limits) == (256, SentenceLimits(110, 50))
    sst2 = demo_prompt_settings("SST-2", 128)
    assert (sst2.max_length, sst2.limits.active) == (128, False)
    rte = demo_prompt_settings("RTE", 128)
    assert (rte.max_length, rte.limits) == (256, SentenceLimits(240, None))
    assert demo_prompt_settings("SST-5", 64).max_length == 128  # doubles the run's own length
    custom = demo_prompt_settings("MR", 128, {"max_length": 96, "other_sent_limit": None, "first_sent_limit": 7})
    assert (custom.max_length, custom.limits) == (96, SentenceLimits(7, None))
    config = DemonstrationConfig(mode="random", max_demo_sentence_tokens=9, max_length=200)
    assert config.prompt_settings("MR", 128) == replace(mr, max_length=200, limits=SentenceLimits(110, 9))


@pytest.mark.parametrize("overrides, field", [
    ({"max_lenght": 10}, "max_lenght"),
    ({"max_length": 4}, "max_length"),
    ({"max_length": None}, "max_length"),
    ({"first_sent_limit": 0}, "first_sent_limit"),
    ({"other_sent_limit": "20"}, "other_sent_limit"),
])
def test_bad_length_overrides_are_user_errors_naming_the_field(overrides, field):
    with pytest.raises(UserError, match=f"search.toml: demonstrations.*{field}"):
        demo_prompt_settings("MR", 128, overrides, where="search.toml: demonstrations")


def test_prompts_get_the_lengths_only_with_demonstrations():
    task = get_task("SST-5")
    plain = Prompt(Template.parse(task.template), Verbalizer.for_task(task))
    assert with_demonstration_lengths(plain, task, 128) is plain
    with_demos = with_demonstration_lengths(replace(plain, demonstrations=lambda *_: []), task, 128)
    assert (with_demos.max_length, with_demos.sentence_limits) == (256, SentenceLimits(110, 20))


# ---------------------------------------------------------------------------------------------
# inference: averaging over demonstration sets


class RecordingDemos:
    """Wraps a sampler as a `Prompt.demonstrations` provider and records every draw."""

    def __init__(self, sampler: DemonstrationSampler, task):
        self.sampler, self.task, self.calls = sampler, task, []

    def __call__(self, example, index, rng):
        demos = self.sampler.draw(example, rng, exclude_index=index)
        self.calls.append((example, index, demos))
        return [(demo, class_index(self.task, demo)) for demo in demos]


def sentiment_prompt(sampler_train, samples: int, mode: str = "random"):
    task = get_task("SST-2")
    recorder = RecordingDemos(DemonstrationSampler(sampler_train, task, mode), task)
    prompt = Prompt(Template.parse(task.template), Verbalizer.for_task(task), demonstrations=recorder,
                    inference_samples=samples)
    return task, prompt, recorder


@pytest.mark.parametrize("kind", ["mlm", "causal"])
def test_inference_average_is_the_mean_log_softmax_over_the_drawn_sets(kind, request):
    backbone = backbone_for(kind, request)
    train, queries = toy_sentiment_examples(12, seed=3), toy_sentiment_examples(6, seed=4)
    task, prompt, recorder = sentiment_prompt(train, samples=3)
    result = evaluate(backbone, task, prompt, queries, batch_size=4, seed=7)
    assert len(recorder.calls) == 3 * len(queries) and all(index is None for _, index, _ in recorder.calls)
    distinct_sets = []
    for position, query in enumerate(queries):
        sets = [demos for example, _, demos in recorder.calls if example is query]
        assert len(sets) == 3
        distinct_sets.append(len({tuple(map(id, s)) for s in sets}))
        with torch.no_grad():
            per_set = [torch.log_softmax(backbone.class_scores(backbone.collate([backbone.encode(
                query, prompt.template, prompt.verbalizer, [(d, class_index(task, d)) for d in demos])]),
                prompt.verbalizer).float(), -1)[0].numpy() for demos in sets]
        np.testing.assert_allclose(result.scores[position], np.mean(per_set, axis=0), atol=1e-5)
    assert max(distinct_sets) > 1  # the sets of a query differ, so the average is not over copies


@pytest.mark.parametrize("kind", ["mlm", "causal"])
def test_inference_does_not_depend_on_query_order_or_batches(kind, request):
    backbone = backbone_for(kind, request)
    train, queries = toy_sentiment_examples(12, seed=3), toy_sentiment_examples(10, seed=5)
    task, prompt, recorder = sentiment_prompt(train, samples=4)
    reference = evaluate(backbone, task, prompt, queries, batch_size=32, seed=11)
    drawn = [tuple(map(id, demos)) for _, _, demos in recorder.calls]
    again = evaluate(backbone, task, prompt, queries, batch_size=32, seed=11)
    np.testing.assert_array_equal(reference.scores, again.scores)
    order = list(range(len(queries)))
    random.Random(0).shuffle(order)
    shuffled = evaluate(backbone, task, prompt, [queries[i] for i in order], batch_size=3, seed=11)
    np.testing.assert_allclose(shuffled.scores, reference.scores[order], atol=1e-5)
    alone = evaluate(backbone, task, prompt, queries[4:5], batch_size=1, seed=11)
    np.testing.assert_allclose(alone.scores[0], reference.scores[4], atol=1e-5)
    recorder.calls.clear()
    other_seed = evaluate(backbone, task, prompt, queries, batch_size=32, seed=12)
    # The seed chooses the draws. How far other draws move a tiny random model's scores varies between
    # test sessions (a session saw at most 5e-5), so the scores are only required to differ.
    assert [tuple(map(id, demos)) for _, _, demos in recorder.calls] != drawn
    assert not np.array_equal(other_seed.scores, reference.scores)


# ---------------------------------------------------------------------------------------------
# training: the real fine_tune path


@pytest.mark.parametrize("kind", ["mlm", "causal"])
def test_fine_tune_never_shows_a_query_itself_and_draws_fresh_demonstrations(kind, request):
    backbone = request.getfixturevalue("fresh_tiny_mlm" if kind == "mlm" else "fresh_tiny_causal")
    train = toy_sentiment_examples(4, seed=8)  # two per class: the query's class has one other example
    dev = toy_sentiment_examples(4, seed=9)
    task, prompt, recorder = sentiment_prompt(train, samples=2)
    config = TrainConfig(steps=6, batch_size=4, eval_every=3, seed=5, max_length=64)
    fine_tune(backbone, task, prompt, train, dev, config, progress=False)
    training_calls = [call for call in recorder.calls if call[1] is not None]
    assert len(training_calls) == 6 * 4
    for example, index, demos in training_calls:
        assert train[index] is example
        assert all(demo is not example for demo in demos)
        same_class = demos[class_index(task, example)]
        assert same_class is next(e for i, e in enumerate(train) if e.label == example.label and i != index)
    other_class_demos = {}
    for example, index, demos in training_calls:
        other_class_demos.setdefault(index, set()).add(id(demos[1 - class_index(task, example)]))
    assert any(len(seen) > 1 for seen in other_class_demos.values())  # drawn afresh, not fixed per query
    evaluation_calls = [call for call in recorder.calls if call[1] is None]
    assert len(evaluation_calls) == 3 * 2 * len(dev)  # dev at steps 0, 3 and 6 (the best is reused), 2 sets each
    assert all(any(example is d for d in dev) for example, _, _ in evaluation_calls)


def test_fine_tune_applies_the_prompts_sentence_limits(fresh_tiny_mlm, monkeypatch):
    train, dev = toy_sentiment_examples(8, seed=1), toy_sentiment_examples(4, seed=2)
    task, prompt, _ = sentiment_prompt(train, samples=2)
    prompt = replace(prompt, sentence_limits=SentenceLimits(first=3, other=2), max_length=40)
    seen = []
    original = fresh_tiny_mlm.encode

    def spy(example, template, verbalizer, demonstrations=(), max_length=None):
        seen.append((example, list(demonstrations), max_length))
        return original(example, template, verbalizer, demonstrations, max_length=max_length)

    monkeypatch.setattr(fresh_tiny_mlm, "encode", spy)
    fine_tune(fresh_tiny_mlm, task, prompt, train, dev, TrainConfig(steps=2, batch_size=4, eval_every=2, seed=0),
              progress=False)
    count = lambda text: len(fresh_tiny_mlm.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    assert len(seen) >= 8 and all(max_length == 40 for _, _, max_length in seen)
    assert any(count(e.texts[0]) < count(o.texts[0]) for (e, _, _), o in zip(seen, train + dev))
    for example, demos, _ in seen:
        assert count(example.texts[0]) <= 3
        assert all(count(demo.texts[0]) <= 2 for demo, _ in demos)


# ---------------------------------------------------------------------------------------------
# the in-context baseline


@pytest.mark.parametrize("kind", ["mlm", "causal"])
def test_in_context_baseline_fills_the_prompt_in_the_backbones_order(kind, request):
    backbone = backbone_for(kind, request)
    task = get_task("SST-2")
    template, verbalizer = Template.parse(task.template), Verbalizer.for_task(task)
    train, queries = toy_sentiment_examples(10, seed=3), toy_sentiment_examples(5, seed=6)
    roomy = in_context_prompt(backbone, task, template, verbalizer, train, max_demos=32, max_length=400, seed=1)
    tight = in_context_prompt(backbone, task, template, verbalizer, train, max_demos=32, max_length=60, seed=1)
    capped = in_context_prompt(backbone, task, template, verbalizer, train, max_demos=3, max_length=400, seed=1)
    for query in queries:
        demos = roomy.demonstrations(query, None, random.Random(0))
        assert len(demos) == len(train)  # everything fits in 400 tokens
        encoded = backbone.encode(query, template, verbalizer, demos, max_length=400)
        query_at = encoded.text.index(query.texts[0])
        demo_at = [encoded.text.index(demo.texts[0]) for demo, _ in demos]
        assert all(at < query_at for at in demo_at) if kind == "causal" else all(at > query_at for at in demo_at)
        few = tight.demonstrations(query, None, random.Random(0))
        assert 0 < len(few) < len(train)
        assert prompt_token_count(backbone.encode(query, template, verbalizer, few, max_length=10_000)) <= 60
        one_more = in_context_demonstrations(query, train, len(few) + 1, fits=None, seed=1, task=task)
        assert prompt_token_count(backbone.encode(query, template, verbalizer,
                                                  [(d, class_index(task, d)) for d in one_more],
                                                  max_length=10_000)) > 60  # the most that fit
        assert len(capped.demonstrations(query, None, random.Random(0))) == 3
    assert tight.demonstrations.counts[query_key(queries[0])] == len(tight.demonstrations(queries[0], None, None))


@pytest.mark.parametrize("kind", ["mlm", "causal"])
def test_evaluate_in_context_scores_one_prompt_per_query(kind, request):
    backbone = backbone_for(kind, request)
    task = get_task("SST-2")
    template, verbalizer = Template.parse(task.template), Verbalizer.for_task(task)
    train, queries = toy_sentiment_examples(10, seed=3), toy_sentiment_examples(6, seed=6)
    result = evaluate_in_context(backbone, task, template, verbalizer, train, queries, max_demos=4, seed=2,
                                 max_length=200, batch_size=4)
    assert result.scores.shape == (len(queries), task.num_classes)
    assert set(result.metrics) >= {"acc", "main"} and len(result.predictions) == len(queries)
    again = evaluate_in_context(backbone, task, template, verbalizer, train, queries[::-1], max_demos=4, seed=2,
                                max_length=200, batch_size=1)
    np.testing.assert_allclose(again.scores[::-1], result.scores, atol=1e-5)
    for position, query in enumerate(queries):
        demos = in_context_demonstrations(query, train, 4, fits=None, seed=2, task=task)
        pairs = [(d, class_index(task, d)) for d in demos]
        with torch.no_grad():
            expected = backbone.class_scores(backbone.collate([backbone.encode(query, template, verbalizer, pairs,
                                                                               max_length=200)]), verbalizer)
        np.testing.assert_allclose(result.scores[position], expected[0].float().numpy(), atol=1e-5)
    no_demos = evaluate_in_context(backbone, task, template, verbalizer, train, queries, max_demos=0, seed=2)
    assert not np.allclose(no_demos.scores, result.scores, atol=1e-4)
    with pytest.raises(UserError, match="max_demos"):
        evaluate_in_context(backbone, task, template, verbalizer, train, queries, max_demos=-1)
