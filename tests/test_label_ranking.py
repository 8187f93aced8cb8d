"""Label words that discriminate: PMI ranking of candidates and whole-word scores equal to the classifier's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from autoprompt_search.auto_label import (
    LabelSearchResult,
    brute_force_top_assignments,
    candidate_words,
    class_pmi,
    search_label_words,
    top_assignments,
    whole_word_scores,
    zero_shot_label_logprobs,
)
from autoprompt_search.errors import UserError
from autoprompt_search.prompts import Template
from autoprompt_search.search import SearchOptions
from autoprompt_search.tasks import get_task
from autoprompt_search.training import PromptClassifier


def as_tuples(assignments):
    return [(a.word_ids, round(a.score, 12), a.ranks) for a in assignments]


def planted_matrix(seed: int = 0, per_class: int = 10, vocab: int = 40):
    """Column 0 is likely for every example (a function word); column 1 is likelier for class 0's
    examples than elsewhere, column 2 for class 1's; the rest is noise well below them."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], per_class)
    matrix = rng.normal(-12.0, 0.5, size=(2 * per_class, vocab))
    matrix[:, 0] = rng.normal(-1.0, 0.1, size=2 * per_class)
    matrix[:, 1] = np.where(labels == 0, -3.0, -8.0) + rng.normal(0, 0.1, size=2 * per_class)
    matrix[:, 2] = np.where(labels == 1, -3.0, -8.0) + rng.normal(0, 0.1, size=2 * per_class)
    return matrix, labels


def test_pmi_prefers_the_class_specific_word_over_the_frequent_one():
    matrix, labels = planted_matrix()
    by_logprob = candidate_words(matrix, labels, 2, 1)
    by_pmi = candidate_words(matrix, labels, 2, 1, ranking="pmi")
    assert by_logprob == [[0], [0]]  # the frequent word wins both classes under raw log-probability
    assert by_pmi == [[1], [2]]
    assert candidate_words(matrix, labels, 2, 1, ranking="logprob") == by_logprob  # the default is unchanged


def test_class_pmi_is_the_class_mean_minus_the_overall_mean():
    matrix, labels = planted_matrix(seed=3)
    pmi = class_pmi(matrix, labels, 2)
    for c in range(2):
        np.testing.assert_allclose(pmi[c], matrix[labels == c].mean(0) - matrix.mean(0))
    matrix[:, 5] = -np.inf  # never possible: no information, never a candidate
    assert np.isneginf(class_pmi(matrix, labels, 2)[:, 5]).all()


def test_the_pmi_pool_keeps_rare_tokens_out():
    matrix, labels = planted_matrix(seed=1)
    matrix[:, 7] = np.where(labels == 0, -20.0, -40.0)  # enormous PMI, negligible probability
    assert candidate_words(matrix, labels, 2, 1, ranking="pmi")[0] == [7]
    assert candidate_words(matrix, labels, 2, 1, ranking="pmi", pool=3)[0] == [1]
    with pytest.raises(UserError, match="pool"):
        candidate_words(matrix, labels, 2, 4, ranking="pmi", pool=3)
    with pytest.raises(UserError, match="ranking"):
        candidate_words(matrix, labels, 2, 1, ranking="frequency")


@pytest.mark.parametrize("seed", range(6))
def test_exact_search_equals_brute_force_on_pmi_candidates(seed):
    rng = np.random.default_rng(seed)
    num_classes = 2 + seed % 3
    labels = np.arange(12 * num_classes) % num_classes
    matrix = rng.normal(-6.0, 2.0, size=(len(labels), 30))
    matrix[:, :4] += 4.0  # a few words likely everywhere, which the PMI ranking must pass over
    candidates = candidate_words(matrix, labels, num_classes, 5, ranking="pmi", pool=15)
    assert candidates != candidate_words(matrix, labels, num_classes, 5)
    assert as_tuples(top_assignments(matrix, labels, candidates, 6)) == \
        as_tuples(brute_force_top_assignments(matrix, labels, candidates, 6))


# ---------------------------------------------------------------------------------------------
# With the tiny models from conftest


def multi_token_word(tokenizer) -> str:
    for word in ("wonderfulness", "superbly", "dullest", "brilliantly"):
        if len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) > 1:
            return word
    raise AssertionError("no multi-token word in the tiny vocabulary")


def test_whole_word_scores_equal_the_classifier_class_scores(tiny_causal, toy_sentiment):
    task = get_task("SST-2")
    train, _ = toy_sentiment
    word = multi_token_word(tiny_causal.tokenizer)
    template = Template.parse(task.template)
    scores = whole_word_scores(tiny_causal, task, template, train, [word, "great", "terrible"], batch_size=5,
                               words_per_pass=2)
    classifier = PromptClassifier.build(tiny_causal, task, template, {"0": word, "1": "great"})
    expected = classifier.scores(train, batch_size=7)
    np.testing.assert_allclose(scores[:, :2].numpy(), expected, rtol=0, atol=1e-5)
    other = PromptClassifier.build(tiny_causal, task, template, {"0": "terrible", "1": word}).scores(train)
    np.testing.assert_allclose(scores[:, [2, 0]].numpy(), other, rtol=0, atol=1e-5)
    # More than the first token: the first-token log-probability alone differs from the whole word's score.
    first = tiny_causal.tokenizer(" " + word, add_special_tokens=False)["input_ids"][0]
    logprobs = zero_shot_label_logprobs(tiny_causal, task, template, train, progress=False)
    assert not np.allclose(logprobs[:, first].double().numpy(), scores[:, 0].numpy(), atol=1e-3)


def test_whole_word_scores_refuse_a_masked_lm(tiny_mlm, toy_sentiment):
    with pytest.raises(UserError, match="causal"):
        whole_word_scores(tiny_mlm, get_task("SST-2"), get_task("SST-2").template, toy_sentiment[0], ["great"])


def test_whole_word_search_assigns_on_the_classifier_scores(tiny_causal, toy_sentiment):
    task = get_task("SST-2")
    train, _ = toy_sentiment
    word = multi_token_word(tiny_causal.tokenizer)
    template = Template.parse(task.template)
    result = search_label_words(tiny_causal, task, template, train, k=5, n=4, batch_size=8, progress=False,
                                ranking="pmi", whole_words=True, extra_words={"0": [word]})
    assert result.scoring == "whole_word" and result.ranking == "pmi"
    assert word in result.words.values() and result.words[-1] == word
    columns = sorted({t for words in result.candidates for t in words})
    words = [result.words[t] for t in columns]
    scores = whole_word_scores(tiny_causal, task, template, train, words).numpy()
    labels = np.array([task.label_index(e.label) for e in train])
    position = {t: i for i, t in enumerate(columns)}
    candidates = [[position[t] for t in cls] for cls in result.candidates]
    expected = brute_force_top_assignments(scores, labels, candidates, 4)
    assert [a.score for a in result.assignments] == [a.score for a in expected]
    assert [tuple(columns[i] for i in a.word_ids) for a in expected] == [a.word_ids for a in result.assignments]
    for assignment in result.assignments:  # the search's training accuracy is the classifier's
        mapping = result.label_words(assignment)
        if len(set(mapping.values())) == 2:
            accuracy = PromptClassifier.build(tiny_causal, task, template, mapping).evaluate(train).metrics["acc"]
            assert assignment.score == pytest.approx(accuracy)
    assert LabelSearchResult.from_json(result.to_json()) == result


def test_pmi_search_with_a_backbone_ranks_by_pmi(tiny_causal, toy_sentiment):
    task = get_task("SST-2")
    train, _ = toy_sentiment
    template = Template.parse(task.template)
    result = search_label_words(tiny_causal, task, template, train, k=4, n=3, progress=False, ranking="pmi")
    logprobs = zero_shot_label_logprobs(tiny_causal, task, template, train, progress=False)
    labels = torch.tensor([task.label_index(e.label) for e in train])
    expected = candidate_words(logprobs, labels, 2, 4, tiny_causal.word_token_mask(), ranking="pmi", pool=40)
    assert result.candidates == expected and result.scoring == "first_token"
    assert as_tuples(result.assignments) == as_tuples(brute_force_top_assignments(logprobs, labels, expected, 3))
    assert result.to_json()["ranking"] == "pmi"
    default = search_label_words(tiny_causal, task, template, train, k=4, n=3, progress=False)
    assert "ranking" not in default.to_json() and "scoring" not in default.to_json()


def test_extra_words_need_whole_word_scoring(tiny_mlm, toy_sentiment):
    with pytest.raises(UserError, match="whole_words"):
        search_label_words(tiny_mlm, get_task("SST-2"), get_task("SST-2").template, toy_sentiment[0], k=3, n=2,
                           progress=False, whole_words=True, extra_words={"0": ["dull"]})


def test_label_ranking_option_is_validated():
    assert SearchOptions(task="SST-2").label_ranking == "logprob"
    assert SearchOptions.from_dict({"task": "SST-2", "label_ranking": "pmi"}).label_ranking == "pmi"
    with pytest.raises(UserError, match="label_ranking"):
        SearchOptions.from_dict({"task": "SST-2", "label_ranking": "frequency"})


def test_search_mappings_passes_the_ranking(monkeypatch, tmp_path):
    import autoprompt_search.auto_label as auto_label
    from autoprompt_search.search.sources import search_mappings

    seen = {}

    def fake(backbone, task, template, train, **kwargs):
        seen.update(kwargs)
        return LabelSearchResult("SST-2", ("0", "1"), "acc", 1, [[5], [6]], [], {5: "dull", 6: "fine"})

    monkeypatch.setattr(auto_label, "search_label_words", fake)
    options = SearchOptions(task="SST-2", out=str(tmp_path), label_ranking="pmi", label_whole_words=True)
    assert search_mappings(options, get_task("SST-2"), [], None) == []
    assert seen["ranking"] == "pmi" and seen["whole_words"] is True


def test_label_neighbours_option_is_validated():
    assert SearchOptions(task="SST-2").label_neighbours is None
    assert SearchOptions.from_dict({"task": "SST-2", "label_neighbours": 50}).label_neighbours == 50
    with pytest.raises(UserError, match="label_neighbours"):
        SearchOptions.from_dict({"task": "SST-2", "label_k": 20, "label_neighbours": 10})


def test_search_mappings_seeds_neighbours_with_the_task_words(monkeypatch, tmp_path):
    import dataclasses

    import autoprompt_search.auto_label as auto_label
    from autoprompt_search.search.sources import search_mappings

    seen = []

    def fake(backbone, task, template, train, **kwargs):
        seen.append(kwargs)
        return LabelSearchResult("SST-2", ("0", "1"), "acc", 1, [[5], [6]], [], {5: "dull", 6: "fine"})

    monkeypatch.setattr(auto_label, "search_label_words", fake)
    task = get_task("SST-2")
    search_mappings(SearchOptions(task="SST-2", out=str(tmp_path), label_neighbours=40), task, [], None)
    search_mappings(SearchOptions(task="SST-2", out=str(tmp_path)), task, [], None)
    placeholders = dataclasses.replace(task, label_words_source="search")
    search_mappings(SearchOptions(task="SST-2", out=str(tmp_path), label_neighbours=40), placeholders, [], None)
    assert seen[0]["neighbours"] == 40 and seen[0]["seed_words"].to_mapping() == task.label_words
    assert seen[1]["neighbours"] is None and seen[1]["seed_words"] is None
    assert seen[2]["neighbours"] is None and seen[2]["seed_words"] is None


def test_a_causal_seed_word_of_several_tokens_is_seeded_by_its_first(tiny_causal, toy_sentiment):
    from autoprompt_search.auto_label import nearest_neighbour_filter

    task = get_task("SST-2")
    train, _ = toy_sentiment
    words = {"0": "terriblezzq", "1": "great"}
    first = [tiny_causal.tokenizer(" " + w, add_special_tokens=False)["input_ids"] for w in words.values()]
    assert len(first[0]) > 1
    result = search_label_words(tiny_causal, task, task.template, train, k=3, n=2, progress=False,
                                seed_words=words, neighbours=6)
    nearest = nearest_neighbour_filter(tiny_causal.model.get_output_embeddings().weight, [ids[0] for ids in first], 6,
                                       tiny_causal.word_token_mask())
    for found, allowed in zip(result.candidates, nearest):
        assert set(found) <= set(allowed)
