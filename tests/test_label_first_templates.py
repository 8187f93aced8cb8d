"""Label search for a task whose template puts the label before the input (TREC's `*cls**mask*:*+sent_0**sep+*`):
a causal backbone sees no input at that label, so its words are searched on the generic template instead."""
from __future__ import annotations

import json

import pytest

from autoprompt_search.auto_label import search_label_words
from autoprompt_search.errors import UserError
from autoprompt_search.prompts import Template
from autoprompt_search.search import SearchOptions
from autoprompt_search.search.sources import _searched_mappings, label_search_template
from autoprompt_search.tasks import Example, generic_template, get_task

TREC = get_task("TREC")
QUESTIONS = ["What is a film?", "Who wrote the plot?", "Where was the cast?", "When was it dull?",
             "How many people saw it?", "Why was it boring?"]


@pytest.mark.parametrize("text, expected", [
    ("*cls**mask*:*+sent_0**sep+*", True),
    ("*cls*_It_was*mask*.*+sent_0**sep+*", True),
    ("*cls**sent_0*_It_was*mask*.*sep+*", False),
    ("*cls**sent-_0*?*mask*,*+sentl_1**sep+*", False),  # the first sentence precedes the label
])
def test_mask_precedes_input(text, expected):
    assert Template.parse(text).mask_precedes_input is expected


def _train():
    return [Example((q,), str(i % 6)) for i, q in enumerate(QUESTIONS * 2)]


def test_a_label_first_task_searches_its_words_on_the_generic_template(tiny_causal, tiny_causal_folder, tmp_path):
    train = _train()
    with pytest.raises(UserError, match="same log-probabilities for every training example"):
        search_label_words(tiny_causal, TREC, TREC.template, train, k=3, n=2, progress=False)

    assert label_search_template(TREC, tiny_causal).to_lmbff() == generic_template(1)
    said = []
    options = SearchOptions(task="trec", model=str(tiny_causal_folder), n_mappings=2, label_k=3, progress=False,
                            max_length=48, out=str(tmp_path))
    mappings = _searched_mappings(options, TREC, train, tiny_causal, said.append)
    assert len(mappings) == 2 and all(set(m["label_words"]) == set(TREC.labels) for m in mappings)
    assert any(generic_template(1) in line for line in said)
    cached = json.loads((tmp_path / "label_words.json").read_text())
    assert cached["key"]["label_template"] == generic_template(1)


def test_a_masked_lm_keeps_the_task_template(tiny_mlm):
    assert label_search_template(TREC, tiny_mlm).to_lmbff() == TREC.template
    sst2 = get_task("SST-2")
    assert label_search_template(sst2, tiny_mlm).to_lmbff() == sst2.template
