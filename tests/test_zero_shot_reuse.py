"""Zero-shot results are computed once per candidate and seed: template screening goes through the
search's evaluator and its zero-shot rung reuses them; a zero-shot evaluation does not reload weights."""
from __future__ import annotations

import json
from collections import Counter

from autoprompt_search.prompts import Template
from autoprompt_search.search import Leaderboard, PromptEvaluator, run_pipeline
from autoprompt_search.tasks import get_task
from autoprompt_search.training import PromptClassifier

from test_search import search_options, write_toy_lmbff

SST2 = get_task("sst2")
CANDIDATE = {"template": SST2.template, "label_words": {"0": "awful", "1": "wonderful"}, "demonstrations": "off"}


def _count_classifier_evaluations(monkeypatch) -> Counter:
    """(template, words, dev size) -> how many times a classifier scored it."""
    seen: Counter = Counter()
    original = PromptClassifier.evaluate

    def counted(self, examples, **kwargs):
        seen[(self.prompt.template.to_lmbff(), json.dumps(self.prompt.verbalizer.to_mapping(), sort_keys=True),
              self.seed, len(examples))] += 1
        return original(self, examples, **kwargs)

    monkeypatch.setattr(PromptClassifier, "evaluate", counted)
    return seen


def test_a_repeated_zero_shot_evaluation_is_reused_and_equal(tiny_causal_folder, tmp_path, monkeypatch):
    data = write_toy_lmbff(tmp_path / "data", seeds=(13, 21))
    evaluator = PromptEvaluator(search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13, 21)).settings())
    state = evaluator.load_state()
    seen = _count_classifier_evaluations(monkeypatch)
    first = evaluator.evaluate_with(state, CANDIDATE, 13, 0)
    again = evaluator.evaluate_with(state, CANDIDATE, 13, 0)
    other_seed = evaluator.evaluate_with(state, CANDIDATE, 21, 0)
    assert sum(seen.values()) == 2  # seeds 13 and 21, once each
    assert (again.dev_metric, again.extra) == (first.dev_metric, first.extra)
    assert other_seed.extra["dev_metrics"] is not None


def test_zero_shot_after_fine_tuning_scores_the_pretrained_weights(tiny_causal_folder, tmp_path, monkeypatch):
    """Skipping the weight reload between zero-shot evaluations must never skip it after training."""
    data = write_toy_lmbff(tmp_path / "data", seeds=(13, 21))
    settings = search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13, 21)).settings()
    cold = PromptEvaluator(settings)
    expected = cold.evaluate_with(cold.load_state(), CANDIDATE, 21, 0)

    evaluator = PromptEvaluator(settings)
    state = evaluator.load_state()
    restores = []
    original = PromptEvaluator.restore
    monkeypatch.setattr(PromptEvaluator, "restore", lambda self, s: restores.append(1) or original(self, s))
    evaluator.evaluate_with(state, CANDIDATE, 13, 0)
    evaluator.evaluate_with(state, {**CANDIDATE, "label_words": {"0": "bad", "1": "good"}}, 13, 0)
    assert len(restores) == 1  # the first evaluation of a fresh state; zero-shot ones change nothing
    trained = evaluator.evaluate_with(state, CANDIDATE, 13, 4)
    assert trained.extra["steps"] == 4
    after = evaluator.evaluate_with(state, CANDIDATE, 21, 0)
    assert len(restores) == 2
    assert (after.dev_metric, after.extra["dev_metrics"]) == (expected.dev_metric, expected.extra["dev_metrics"])


def test_the_zero_shot_rung_reuses_template_screening(tiny_causal_folder, tmp_path, monkeypatch):
    data = write_toy_lmbff(tmp_path / "data", seeds=(13,))
    options = search_options(tiny_causal_folder, data, tmp_path / "out", generator="causal", n_templates=3,
                             beam_width=4, generator_steps=4, seeds=(13,), screening_split="dev")
    seen = _count_classifier_evaluations(monkeypatch)
    run_pipeline(options, say=lambda *_: None)
    screened = json.loads((tmp_path / "out" / "generated_templates.json").read_text())["value"]
    assert len(screened) == 3
    # Classifiers score only zero-shot dev here (training scores through fine_tune): each (template,
    # words, seed) once, screening included, although the zero-shot rung evaluated the screened ones again.
    assert seen and max(seen.values()) == 1
    words = json.dumps(dict(SST2.label_words), sort_keys=True)
    scored_templates = {key[0] for key in seen if key[1] == words}
    assert len(scored_templates) > 3  # the generator found more than it kept: all were screened
    for item in screened:
        assert Template.parse(item["template"]).to_lmbff() in scored_templates
    # The leaderboard's zero-shot rows of the screened templates hold the screening's metrics.
    board = Leaderboard(tmp_path / "out" / "leaderboard.sqlite")
    zero_shot = {(r.candidate["template"], json.dumps(r.candidate["label_words"], sort_keys=True)): r.dev_metric
                 for r in board.rows(board.latest_config_hash()) if r.budget == 0}
    for item in screened:
        key = (Template.parse(item["template"]).to_lmbff(), words)
        assert zero_shot[key] == item["zero_shot_dev"]
