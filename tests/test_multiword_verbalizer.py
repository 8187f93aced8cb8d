"""Several label words per class: a class's score combines its words' scores (log-sum-exp or mean) on
causal and masked backbones, through fitting, export and predict; one-word lists are the old
verbalizers exactly; malformed lists fail in one line naming the label and where it was written."""
from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from autoprompt_search.auto_label import Assignment, LabelSearchResult, class_word_lists
from autoprompt_search.errors import UserError
from autoprompt_search.prompts import (Template, Verbalizer, build_document, mapping_entries, read_document,
                                       write_document)
from autoprompt_search.search import SearchOptions, candidate_id, make_candidate
from autoprompt_search.tasks import Example, get_task
from autoprompt_search.training import PromptClassifier, TrainConfig

from conftest import TEST_DEVICE

SST2 = get_task("SST-2")
SST5 = get_task("SST-5")
TEXTS = ["A wonderful film with a charming cast.", "The plot was dull and tedious.", "Boring.",
         "The music was lovely but the ending was clumsy."]
EXAMPLES = [Example((text,)) for text in TEXTS]


def _scores(backbone, template: str, verbalizer: Verbalizer, demonstrations=()) -> torch.Tensor:
    encoded = [backbone.encode(e, Template.parse(template), verbalizer, demonstrations) for e in EXAMPLES]
    with torch.no_grad():
        return backbone.class_scores(backbone.collate(encoded), verbalizer).double().cpu()


@pytest.fixture(params=["llama", "gpt2", "bert"])
def backbone(request, tiny_causal, tiny_gpt2, tiny_mlm):
    return {"llama": tiny_causal, "gpt2": tiny_gpt2, "bert": tiny_mlm}[request.param]


# ---------------------------------------------------------------------------------------------
# Verbalizer


def test_a_one_word_list_is_the_string_verbalizer_with_the_same_candidate_id():
    listed = Verbalizer.from_mapping(SST2, {"0": ["terrible"], "1": "great", "_combine": "mean"})
    plain = Verbalizer.for_task(SST2)
    assert listed == plain and not listed.is_multiword
    assert listed.to_mapping() == {"0": "terrible", "1": "great"} == plain.to_mapping()
    assert candidate_id(make_candidate(SST2.template, listed)) == candidate_id(make_candidate(SST2.template, plain))


def test_word_lists_round_trip_through_the_mapping():
    verbalizer = Verbalizer.from_mapping(SST2, {"0": ["terrible", "awful"], "1": "great", "_combine": "mean"})
    assert verbalizer.words == ("terrible", "great") and verbalizer.all_words == ("terrible", "awful", "great")
    mapping = verbalizer.to_mapping()
    assert mapping == {"0": ["terrible", "awful"], "1": "great", "_combine": "mean"}
    assert Verbalizer.from_mapping(SST2, json.dumps(mapping)) == verbalizer
    default = Verbalizer.from_mapping(SST2, {"0": ["terrible", "awful"], "1": "great"})
    assert default.combine == "logsumexp" and default.to_mapping()["_combine"] == "logsumexp"
    assert candidate_id(make_candidate(SST2.template, default)) != candidate_id(make_candidate(SST2.template, verbalizer))


@pytest.mark.parametrize("mapping, message", [
    ({"0": [], "1": "great"}, "label '0' has an empty list of words"),
    ({"0": ["terrible", 3], "1": "great"}, "label '0': each word in its list must be a non-empty string, got 3"),
    ({"0": ["terrible", " "], "1": "great"}, "label '0': each word in its list must be a non-empty string"),
    ({"0": ["terrible", "great"], "1": ["good", "great"]}, "labels '0' and '1' both use 'great'"),
    ({"0": ["bad", "bad"], "1": "great"}, "label '0' lists the word 'bad' twice"),
    ({"0": {"w": "bad"}, "1": "great"}, "the word for label '0' must be a non-empty string"),
    ({"0": "bad", "1": "great", "_combine": "max"}, "'_combine': expected 'logsumexp', 'logmeanexp' or 'mean'"),
])
def test_malformed_word_lists_fail_in_one_line_naming_the_label_and_the_place(mapping, message):
    with pytest.raises(UserError, match="^words.json, line 3: .*" + _escaped(message)) as error:
        Verbalizer.from_mapping(SST2, mapping, source="words.json, line 3")
    assert "\n" not in str(error.value)


def _escaped(text: str) -> str:
    return re.escape(text)


def test_mapping_files_may_hold_lists_and_name_the_line_of_a_bad_one(tmp_path):
    path = tmp_path / "mappings.txt"
    path.write_text('{"0": "terrible", "1": "great"}\n{"0": ["terrible", "awful"], "1": ["great", "lovely"]}\n'
                    '{"0": [], "1": "great"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=f"^{_escaped(str(path))}, line 3: label '0' has an empty list"):
        mapping_entries(path, SST2)
    path.write_text(path.read_text(encoding="utf-8").splitlines(keepends=True)[1], encoding="utf-8")
    (where, verbalizer), = mapping_entries(path, SST2)
    assert where.endswith("line 1") and verbalizer.word_lists == (("terrible", "awful"), ("great", "lovely"))


# ---------------------------------------------------------------------------------------------
# Scores


@pytest.mark.parametrize("template", [SST2.template, "*cls**sent_0*_It_was*mask*"])
def test_a_one_word_list_scores_exactly_like_the_string(backbone, template):
    plain = Verbalizer.for_task(SST2)
    listed = Verbalizer.from_mapping(SST2, {"0": ["terrible"], "1": ["great"]})
    torch.testing.assert_close(_scores(backbone, template, listed), _scores(backbone, template, plain), atol=0, rtol=0)


def _combined(columns: torch.Tensor, combine: str) -> torch.Tensor:
    if combine == "logsumexp":
        return columns.logsumexp(1)
    if combine == "logmeanexp":
        return columns.logsumexp(1) - np.log(columns.shape[1])
    return columns.mean(1)


@pytest.mark.parametrize("combine", ["logsumexp", "logmeanexp", "mean"])
def test_a_class_with_two_words_combines_the_single_word_scores(backbone, combine):
    """Class 0 ("terrible", "awful") scores logsumexp / logmeanexp / mean of the two one-word verbalizers'
    class-0 scores; class 1 (one word) scores as alone; SST-5's middle class takes three words."""
    first = _scores(backbone, SST2.template, Verbalizer.from_mapping(SST2, {"0": "terrible", "1": "great"}))
    second = _scores(backbone, SST2.template, Verbalizer.from_mapping(SST2, {"0": "awful", "1": "great"}))
    both = Verbalizer.from_mapping(SST2, {"0": ["terrible", "awful"], "1": "great", "_combine": combine})
    combined = _scores(backbone, SST2.template, both)
    pair = torch.stack([first[:, 0], second[:, 0]], 1)
    expected = _combined(pair, combine)
    assert combined.shape == (len(EXAMPLES), 2)
    torch.testing.assert_close(combined[:, 0], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(combined[:, 1], first[:, 1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(first[:, 0], second[:, 0])  # the two words do score differently

    words = dict(SST5.label_words)
    singles = [_scores(backbone, SST5.template, Verbalizer.from_mapping(SST5, {**words, "2": w}))[:, 2]
               for w in ("okay", "quite", "sort")]
    three = Verbalizer.from_mapping(SST5, {**words, "2": ["okay", "quite", "sort"], "_combine": combine})
    stacked = torch.stack(singles, 1)
    expected = _combined(stacked, combine)
    torch.testing.assert_close(_scores(backbone, SST5.template, three)[:, 2], expected, atol=1e-5, rtol=1e-5)


def test_log_mean_exp_gives_no_class_an_advantage_from_its_number_of_words():
    """Every word equally likely: log-sum-exp puts the three-word class log 3 above the one-word class,
    log-mean-exp and mean score the two classes alike."""
    from autoprompt_search.models.combine import combine_word_scores

    words = {"0": ["terrible", "awful", "dull"], "1": "great"}
    flat = torch.full((4, 4), -3.0)
    summed = combine_word_scores(flat, Verbalizer.from_mapping(SST2, {**words, "_combine": "logsumexp"}))
    torch.testing.assert_close(summed[:, 0] - summed[:, 1], torch.full((4,), float(np.log(3))))
    for combine in ("logmeanexp", "mean"):
        scores = combine_word_scores(flat, Verbalizer.from_mapping(SST2, {**words, "_combine": combine}))
        torch.testing.assert_close(scores, torch.full((4, 2), -3.0))


def test_with_as_many_words_per_class_log_mean_exp_gives_the_class_probabilities_of_log_sum_exp(backbone):
    words = {"0": ["terrible", "awful"], "1": ["great", "lovely"]}
    summed = _scores(backbone, SST2.template, Verbalizer.from_mapping(SST2, {**words, "_combine": "logsumexp"}))
    meaned = _scores(backbone, SST2.template, Verbalizer.from_mapping(SST2, {**words, "_combine": "logmeanexp"}))
    torch.testing.assert_close(summed.softmax(-1), meaned.softmax(-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(summed - meaned, torch.full_like(summed, float(np.log(2))), atol=1e-5, rtol=1e-5)


def test_demonstrations_show_each_class_first_word(tiny_causal):
    verbalizer = Verbalizer.from_mapping(SST2, {"0": ["terrible", "awful"], "1": ["great", "lovely"]})
    demos = [(Example(("Dull.",), "0"), 0), (Example(("Superb.",), "1"), 1)]
    encoded = tiny_causal.encode(EXAMPLES[0], Template.parse(SST2.template), verbalizer, demos)
    assert "Dull. It was terrible." in encoded.text and "Superb. It was great." in encoded.text
    assert "awful" not in encoded.text and "lovely" not in encoded.text
    assert len(encoded.continuations) == 4  # one per label word, combined per class by class_scores


def test_a_masked_lm_rejects_a_listed_word_it_cannot_read_as_one_token(tiny_mlm):
    verbalizer = Verbalizer.from_mapping(SST2, {"0": ["terrible", "terriblewonderful"], "1": "great"})
    with pytest.raises(UserError, match="label word 'terriblewonderful' \\(label '0'\\)"):
        tiny_mlm.encode(EXAMPLES[0], Template.parse(SST2.template), verbalizer)


# ---------------------------------------------------------------------------------------------
# Fit, export, predict

LISTS = {"0": ["terrible", "awful", "dull"], "1": ["great", "wonderful"]}


@pytest.mark.parametrize("combine", ["logsumexp", "logmeanexp"])
@pytest.mark.parametrize("kind", ["causal", "mlm"])
def test_fit_export_and_predict_with_word_lists(kind, combine, fresh_tiny_causal, fresh_tiny_mlm, toy_sentiment,
                                                tmp_path):
    backbone = fresh_tiny_causal if kind == "causal" else fresh_tiny_mlm
    train, dev = toy_sentiment
    mapping = {**LISTS, "_combine": combine}
    classifier = PromptClassifier.build(backbone, SST2, SST2.template, mapping, max_length=48, seed=5)
    assert classifier.prompt.verbalizer.word_lists == (("terrible", "awful", "dull"), ("great", "wonderful"))
    before = classifier.scores(dev)
    result = classifier.fit(train, dev, TrainConfig(steps=4, lr=1e-2, max_length=48, seed=5, eval_every=2,
                                                    eval_at_start=False),
                            progress=False)
    assert result.steps == 4 and np.isfinite(classifier.scores(dev)).all()
    assert not np.allclose(before, classifier.scores(dev))
    texts = [e.texts[0] for e in dev[:5]]
    expected = classifier.predict(texts)

    folder = classifier.save_pretrained(tmp_path / "saved", backbone_name="tiny")
    document = json.loads((folder / "prompt.json").read_text(encoding="utf-8"))
    assert document["label_words"] == mapping
    reloaded = PromptClassifier.from_pretrained(folder, device=TEST_DEVICE)
    assert reloaded.prompt.verbalizer == classifier.prompt.verbalizer
    _assert_same_predictions(reloaded.predict(texts), expected)

    # best.json as `export` writes it (the candidate's mapping), read back onto the same backbone.
    best = tmp_path / "best.json"
    write_document(build_document(SST2, "tiny", classifier.candidate(), dev={5: 0.5}), best)
    loaded = PromptClassifier.from_pretrained(best, backbone=backbone)
    _assert_same_predictions(loaded.predict(texts), expected)


def _assert_same_predictions(got, expected):
    assert [label for label, _ in got] == [label for label, _ in expected]
    for (_, probabilities), (_, want) in zip(got, expected):
        assert probabilities == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("words, message", [
    ({"0": [], "1": "great"}, "label '0' has an empty list of words"),
    ({"0": ["terrible", None], "1": "great"}, "label '0': each word in its list must be a non-empty string"),
    ({"0": ["terrible", "great"], "1": "great"}, "both use 'great'"),
])
def test_a_prompt_file_with_malformed_lists_fails_before_a_model_loads(tmp_path, words, message):
    path = tmp_path / "best.json"
    document = build_document(SST2, "tiny", make_candidate(SST2.template, Verbalizer.for_task(SST2)), dev={})
    write_document({**document, "label_words": words}, path)
    with pytest.raises(UserError, match=f"^{_escaped(str(path))}: field 'label_words': .*{_escaped(message)}") as error:
        read_document(path)
    assert "\n" not in str(error.value)


def test_a_custom_task_read_from_a_prompt_file_keeps_one_word_per_class(tmp_path):
    custom = replace(SST2, name="my-sentiment")
    candidate = make_candidate(SST2.template, Verbalizer.from_mapping(SST2, LISTS))
    path = write_document(build_document(custom, "tiny", candidate, dev={}), tmp_path / "best.json")
    loaded = read_document(path)
    assert loaded.task().label_words == {"0": "terrible", "1": "great"}
    assert loaded.verbalizer().word_lists == (("terrible", "awful", "dull"), ("great", "wonderful"))


# ---------------------------------------------------------------------------------------------
# Search


def _result(candidates, assignments, words) -> LabelSearchResult:
    return LabelSearchResult(task="toy", labels=("0", "1"), metric="acc", k=len(candidates[0]),
                             candidates=candidates, assignments=[Assignment(a, 0.5, (0, 0)) for a in assignments],
                             words=words)


def test_class_word_lists_start_with_the_best_assignment_and_keep_each_word_with_one_class():
    words = {1: "bad", 2: "awful", 3: "the", 4: "dull", 5: "good", 6: "great", 7: "fine", 8: "a"}
    # Class 0 ranks: bad, the, awful, a, dull; class 1 ranks: the, good, great, a, fine.
    result = _result([[1, 3, 2, 8, 4], [3, 5, 6, 8, 7]], [(1, 5), (2, 6)], words)
    # Orders: class 0 = bad, awful, the, a, dull (assignments first); class 1 = good, great, the, a, fine.
    # "the" and "a" sit at the same place in both: they tell no class apart and are dropped.
    assert class_word_lists(result, 3) == [["bad", "awful", "dull"], ["good", "great", "fine"]]
    assert class_word_lists(result, 1) == [["bad"], ["good"]]
    assert class_word_lists(result, 10) == [["bad", "awful", "dull"], ["good", "great", "fine"]]
    # A word ranked earlier by one class stays with that class only.
    earlier = _result([[1, 3, 2], [5, 6, 8, 3]], [(1, 5)], words)
    assert class_word_lists(earlier, 3) == [["bad", "the", "awful"], ["good", "great", "a"]]
    with pytest.raises(UserError, match="expected an integer >= 1"):
        class_word_lists(result, 0)


def test_label_words_per_class_adds_one_multiword_candidate(tiny_causal, tiny_causal_folder, tmp_path):
    from autoprompt_search.search import search_mappings

    train = [Example((text,), label) for text, label in zip(TEXTS * 2, ["1", "0", "0", "1"] * 2)]
    options = SearchOptions(task="sst2", model=str(tiny_causal_folder), n_mappings=2, label_k=5,
                            label_words_per_class=3, progress=False, max_length=48, out=str(tmp_path))
    mappings = search_mappings(options, SST2, train, tiny_causal)
    single = search_mappings(replace(options, label_words_per_class=1), SST2, train, tiny_causal)
    assert mappings[:-1] == single and len(single) == 2
    multi = Verbalizer.from_mapping(SST2, mappings[-1]["label_words"])
    assert multi.is_multiword and all(1 <= len(words) <= 3 for words in multi.word_lists)
    assert multi.words == Verbalizer.from_mapping(SST2, single[0]["label_words"]).words


def test_label_words_per_class_is_validated():
    with pytest.raises(UserError, match="label_words_per_class.*expected an integer >= 1"):
        SearchOptions.from_dict({"task": "sst2", "label_words_per_class": 0})
    with pytest.raises(UserError, match="label_words_per_class.*n_mappings is 0"):
        SearchOptions.from_dict({"task": "sst2", "label_words_per_class": 2, "n_mappings": 0})


def test_a_search_evaluates_the_multiword_candidate_and_exports_lists(tiny_causal_folder, tmp_path):
    """Manual mappings with lists and --label-words-per-class both reach the leaderboard as candidates
    that evaluate without failing; best.json then holds lists when the best candidate has them."""
    from test_search import search_options, write_mapping_file, write_toy_lmbff
    from autoprompt_search.search import Leaderboard, run_pipeline

    data = write_toy_lmbff(tmp_path / "lmbff", seeds=(13,))
    mappings = write_mapping_file(tmp_path / "mappings.txt", [LISTS])
    options = search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13,), n_mappings=1, label_k=6,
                             label_words_per_class=2, label_ranking="pmi", mapping_files=(str(mappings),),
                             strategy="exhaustive", min_steps=1, max_steps=1, selection="dev")
    result = run_pipeline(options, say=lambda *_: None)
    candidates = json.loads((tmp_path / "out" / "candidates.json").read_text(encoding="utf-8"))
    multi = [{key: c[key] for key in ("template", "label_words", "demonstrations")} for c in candidates
             if any(isinstance(words, list) for words in c["label_words"].values())]
    assert len(multi) == 2 and {**LISTS, "_combine": "logsumexp"} in [c["label_words"] for c in multi]
    searched = [c["label_words"] for c in multi if c["label_words"] != {**LISTS, "_combine": "logsumexp"}]
    assert [words["_combine"] for words in searched] == ["logmeanexp"]  # its lists may differ in length
    assert result.n_failed == 0 and len(result.ranking) == len(candidates)
    board = Leaderboard(tmp_path / "out" / "leaderboard.sqlite")
    evaluated = {r.candidate_id for r in board.rows(board.latest_config_hash()) if not r.failed}
    assert {candidate_id(c) for c in multi} <= evaluated
    best = read_document(tmp_path / "out" / "best.json").document
    assert best["label_words"] == result.best.candidate["label_words"]
