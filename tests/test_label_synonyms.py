"""`--label-synonyms N`: each class's word plus up to N words a sentence encoder puts nearest it (and nearer
it than any other class's word) that the backbone finds likelier for that class's training examples; the words
of the task's own prompt in the search, cached beside the leaderboard."""
from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from autoprompt_search.auto_label import choose_synonyms, search_synonyms
from autoprompt_search.errors import UserError
from autoprompt_search.prompts import Template, Verbalizer
from autoprompt_search.search import SearchOptions
from autoprompt_search.tasks import Example, get_task

SST2 = get_task("SST-2")

# Token id -> word; vectors in a 3-d "meaning" space: axis 0 negative, axis 1 positive, axis 2 unrelated.
WORDS = ["bad", "good", "awful", "horrible", "nice", "decent", "fine", "Awful", "Good", "the", "lovely", "rare"]
VECTORS = {"bad": [1, 0, 0], "good": [0, 1, 0], "awful": [0.95, 0.05, 0.1], "horrible": [0.9, 0.0, 0.2],
           "nice": [0.1, 0.9, 0.1], "decent": [0.7, 0.6, 0.0], "fine": [0.3, 0.4, 0.9], "awful ": [0, 0, 1],
           "lovely": [0.05, 0.85, 0.2], "rare": [0.0, 0.95, 0.05], "the": [0.4, 0.4, 0.6]}


def fake_encode(texts):
    rows = np.array([VECTORS.get(text, VECTORS.get(text.lower(), [0.0, 0.0, 1.0])) for text in texts], dtype=float)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def planted(pmi_for_horrible: float = -1.0):
    """Log-probabilities of 4 examples (classes 0, 0, 1, 1) over the 12 tokens: every word is likelier for
    the class its meaning says, except `horrible` (likelier for class 1 unless told otherwise); `rare` is
    the least likely word overall."""
    base = np.full((4, len(WORDS)), -5.0)
    classes = np.array([0, 0, 1, 1])
    for token, word in enumerate(WORDS):
        lean = {"awful": 0, "Awful": 0, "horrible": 0 if pmi_for_horrible > 0 else 1, "decent": 1, "bad": 0,
                "nice": 1, "good": 1, "Good": 1, "lovely": 1, "rare": 1, "fine": 1, "the": 0}[word]
        base[:, token] += np.where(classes == lean, 0.5, -0.5)
    base[:, WORDS.index("rare")] -= 10.0
    allowed = np.array([word != "the" for word in WORDS])
    return base, classes, allowed


def choose(per_class=3, **kwargs):
    logprobs, classes, allowed = planted(kwargs.pop("pmi_for_horrible", -1.0))
    return choose_synonyms(["bad", "good"], logprobs, classes, allowed, WORDS.__getitem__, fake_encode, per_class,
                           **kwargs)


def test_each_class_gets_the_nearest_words_that_pass_every_check():
    choice = choose()
    # bad: awful (near, likelier for class 0); horrible is near but the backbone finds it likelier for the
    # other class; decent leans to bad in meaning but is likelier for class 1; "Awful" repeats awful.
    # good: rare (nearest) and nice, lovely; fine is below the similarity floor.
    assert choice.words == [["bad", "awful"], ["good", "rare", "nice", "lovely"]]
    assert [e["word"] for e in choice.evidence[1]] == ["rare", "nice", "lovely"]
    assert all(e["pmi"] > 0 and e["similarity"] >= 0.6 for row in choice.evidence for e in row)


def test_the_backbone_decides_with_pmi():
    assert choose(pmi_for_horrible=1.0).words[0] == ["bad", "awful", "horrible"]


def test_antonym_guard_keeps_a_word_from_the_class_whose_word_it_is_less_near():
    # decent is nearer bad (0.75) than good (0.65) in meaning and likelier for class 1: it joins neither class.
    choice = choose(per_class=5, min_similarity=0.0)
    assert "decent" not in choice.words[0] + choice.words[1]
    assert "fine" in choice.words[1]  # with no floor, the faraway word joins the class it is nearer


def test_per_class_pool_and_floor_limit_the_words():
    assert choose(per_class=1).words == [["bad", "awful"], ["good", "rare"]]
    # The pool holds only the most likely words overall: rare (least likely) drops out.
    assert choose(pool=10).words[1] == ["good", "nice", "lovely"]
    assert choose(min_similarity=0.999).words == [["bad"], ["good"]]


@pytest.mark.parametrize("kwargs, message", [({"per_class": 0}, "expected an integer >= 1"),
                                             ({"pool": 0}, "pool must hold at least 1")])
def test_bad_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        choose(**kwargs)


def test_search_synonyms_on_a_real_tiny_backbone(tiny_causal):
    train = [Example(("A wonderful film.",), "1"), Example(("Dull and tedious.",), "0"),
             Example(("Lovely music.",), "1"), Example(("Boring.",), "0")]

    def encode(texts):  # any word is as near "terrible" as "great": only the model's PMI and ties decide
        return fake_encode(["good" if text == "great" else "bad" if text == "terrible" else "awful"
                            for text in texts])

    choice = search_synonyms(tiny_causal, SST2, Template.parse(SST2.template), train, 2, encode, progress=False,
                             min_similarity=0.0)
    assert [words[0] for words in choice.words] == ["terrible", "great"]
    vocabulary = {tiny_causal.token_to_word(i) for i in range(len(tiny_causal.tokenizer))}
    for words, evidence in zip(choice.words, choice.evidence):
        assert len(words) <= 3 and set(words[1:]) <= vocabulary
        assert [e["word"] for e in evidence] == words[1:] and all(e["pmi"] > 0 for e in evidence)
    # "awful" is nearer bad than good in the fake encoder, so only class 0 can take words.
    assert choice.words[1] == ["great"]


def test_the_option_is_validated():
    with pytest.raises(UserError, match="label_synonyms.*expected an integer >= 0"):
        SearchOptions.from_dict({"task": "sst2", "label_synonyms": -1})


class AngleEncoder:
    """A stand-in sentence encoder: "terrible" and "great" are two orthogonal axes and every other word a
    unit vector at an angle between them fixed by its text, so each word is at least 0.7 near one of them."""

    made = 0

    def __init__(self, name, show_progress=True):
        AngleEncoder.made += 1

    def encode(self, texts):
        fixed = {"terrible": 0.0, "great": np.pi / 2}
        angles = [fixed.get(text, (zlib.crc32(text.encode()) % 1000) / 1000 * np.pi / 2) for text in texts]
        return np.array([[np.cos(a), np.sin(a)] for a in angles])


def test_the_synonyms_become_the_task_prompt_the_search_keeps_and_defends(tiny_causal_folder, tmp_path,
                                                                            monkeypatch, capsys):
    from test_search import search_options, write_toy_lmbff
    from autoprompt_search import demonstrations
    from autoprompt_search.search import candidate_id, make_candidate, pipeline, run_pipeline

    monkeypatch.setattr(demonstrations, "SentenceEncoder", AngleEncoder)
    seen = {}

    def recording(name, function):
        def wrapped(*args, **kwargs):
            seen[name] = kwargs
            return function(*args, **kwargs)
        monkeypatch.setattr(pipeline, name, wrapped)

    recording("make_strategy", pipeline.make_strategy)
    recording("select_final", pipeline.select_final)
    data = write_toy_lmbff(tmp_path / "lmbff", seeds=(13,))
    other = tmp_path / "templates.txt"
    other.write_text("*cls**sent_0*_All_in_all*mask*.*sep+*\n", encoding="utf-8")
    options = search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13,), label_synonyms=2,
                             min_steps=1, max_steps=2, template_files=(str(other),))
    result = run_pipeline(options, say=lambda *_: None)
    saved = json.loads((tmp_path / "out" / "label_synonyms.json").read_text(encoding="utf-8"))["value"]
    words = saved["label_words"]
    assert [words[label][0] for label in SST2.labels] == ["terrible", "great"]
    assert all(len(words[label]) == 3 for label in SST2.labels)
    candidates = json.loads((tmp_path / "out" / "candidates.json").read_text(encoding="utf-8"))
    # Classes may end with different numbers of synonyms: their scores are the mean of their words' probabilities.
    expected = Verbalizer.from_mapping(SST2, {**words, "_combine": "logmeanexp"}).to_mapping()
    # The synonyms go with the task's template only; the other template keeps the task's words.
    assert [(c["template"], c["label_words"]) for c in candidates] == [
        (SST2.template, SST2.label_words), ("*cls**sent_0*_All_in_all*mask*.*sep+*", SST2.label_words),
        (SST2.template, expected)]
    assert result.n_failed == 0 and result.plan[0].n_candidates == 3
    own = candidate_id(make_candidate(SST2.template, expected))
    assert seen["make_strategy"]["protected"] == (own,) and seen["select_final"]["incumbent_id"] == own
    final_rung = [entry.candidate_id for entry in result.ranking if entry.budget == 2]
    assert own in final_rung
    # candidates.json marks it, so that a replay of the export rule defends the same prompt.
    assert [c.get("task_prompt", False) for c in candidates] == [False, False, True]
    # A resumed search reads the words it found instead of searching again.
    run_pipeline(options, say=lambda *_: None)
    assert AngleEncoder.made == 1
    # `labels --synonyms` shows the words the search gave the task's prompt, with their evidence.
    from autoprompt_search.cli.main import main
    from conftest import TEST_DEVICE

    shown = tmp_path / "synonyms.json"
    assert main(["labels", "--task", "sst2", "--model", str(tiny_causal_folder), "--data-dir", str(data), "--device",
                 TEST_DEVICE, "--max-length", "48", "--synonyms", "2", "--output", str(shown)]) == 0
    listed = json.loads(shown.read_text(encoding="utf-8"))
    assert listed["label_words"] == expected and listed["evidence"] == saved["evidence"]
    printed = capsys.readouterr().out
    first = saved["evidence"]["0"][0]
    assert f"0: terrible + {first['word']} (similarity {first['similarity']:.2f}, PMI {first['pmi']:+.2f})" in printed
