"""`PromptClassifier`, the object a user holds: it scores like the functions it wraps, fits in place,
and survives save_pretrained / from_pretrained with the same scores, demonstrations included."""
from __future__ import annotations

import numpy as np
import pytest

from autoprompt_search.demonstrations import DemonstrationConfig, DemonstrationSampler
from autoprompt_search.errors import UserError
from autoprompt_search.models import load_backbone
from autoprompt_search.prompts import Prompt, Template, Verbalizer
from autoprompt_search.tasks import Example, get_task
from autoprompt_search.training import PromptClassifier, TrainConfig, evaluate

from conftest import TEST_DEVICE

SST2 = get_task("SST-2")


def _classifier(backbone, **kwargs) -> PromptClassifier:
    return PromptClassifier.build(backbone, SST2, SST2.template, SST2.label_words, max_length=48, **kwargs)


def test_scores_are_those_of_evaluate_with_the_same_prompt(tiny_causal, toy_sentiment):
    _, dev = toy_sentiment
    classifier = _classifier(tiny_causal, seed=3)
    prompt = Prompt(Template.parse(SST2.template), Verbalizer.for_task(SST2))
    expected = evaluate(tiny_causal, SST2, prompt, dev, max_length=48, seed=3)
    np.testing.assert_allclose(classifier.scores(dev), expected.scores, atol=1e-6)
    assert classifier.evaluate(dev).main == expected.main


def test_predict_takes_texts_and_returns_labels_with_probabilities(tiny_causal):
    classifier = _classifier(tiny_causal)
    out = classifier.predict(["a good film", Example(("a bad film",))])
    assert len(out) == 2
    for label, probabilities in out:
        assert label in SST2.labels and set(probabilities) == set(SST2.labels)
        assert abs(sum(probabilities.values()) - 1) < 1e-5
        assert label == max(probabilities, key=probabilities.get)
    with pytest.raises(UserError, match="1 sentence"):
        classifier.predict([("one", "two")])


def test_fit_changes_the_scores_and_save_pretrained_keeps_them(fresh_tiny_causal, toy_sentiment, tmp_path):
    train, dev = toy_sentiment
    classifier = _classifier(fresh_tiny_causal, seed=5)
    before = classifier.scores(dev)
    result = classifier.fit(train, dev, TrainConfig(steps=6, lr=1e-2, max_length=48, seed=5, eval_every=3,
                                                    eval_at_start=False),
                            progress=False)
    assert result.steps == 6
    after = classifier.scores(dev)
    assert not np.allclose(before, after)
    folder = classifier.save_pretrained(tmp_path / "saved", backbone_name="tiny")
    reloaded = PromptClassifier.from_pretrained(folder, device=TEST_DEVICE)
    np.testing.assert_allclose(reloaded.scores(dev), after, atol=1e-5)
    assert reloaded.max_length == 48 and reloaded.prompt.template == classifier.prompt.template


def test_demonstrations_survive_the_round_trip(tiny_causal, toy_sentiment, tmp_path):
    train, dev = toy_sentiment
    sampler = DemonstrationSampler.from_config(train, SST2, DemonstrationConfig(mode="random"))
    classifier = _classifier(tiny_causal, sampler=sampler, inference_samples=2, seed=13)
    assert classifier.prompt.inference_samples == 2 and classifier.prompt.max_length is not None
    expected = classifier.scores(dev[:6])
    folder = classifier.save_pretrained(tmp_path / "with-demos", backbone_name="tiny")
    reloaded = PromptClassifier.from_pretrained(folder / "prompt.json", device=TEST_DEVICE)
    assert reloaded.sampler is not None and reloaded.sampler.mode == "random"
    assert list(reloaded.sampler.train) == list(train)
    np.testing.assert_allclose(reloaded.scores(dev[:6]), expected, atol=1e-5)


def test_from_pretrained_reuses_a_loaded_backbone(tiny_causal_folder, tmp_path):
    backbone = load_backbone(str(tiny_causal_folder), device=TEST_DEVICE)
    classifier = _classifier(backbone)
    folder = classifier.save_pretrained(tmp_path / "saved", backbone_name=str(tiny_causal_folder))
    again = PromptClassifier.from_pretrained(folder, backbone=backbone)
    assert again.backbone is backbone
