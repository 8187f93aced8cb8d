"""The ceiling column of benchmarks/bench_selection.py: the best final-rung test metric and how many candidates
beat the task prompt, on hand-made rankings."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from benchmark_scripts import load_benchmark

from autoprompt_search.search.candidates import make_candidate

@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_selection")


def entry(words: tuple[str, str], dev: float, test: float | None):
    candidate = make_candidate("*cls**sent_0*_It_was*mask*.*sep+*", {"0": words[0], "1": words[1]})
    return SimpleNamespace(candidate=candidate, mean_dev=dev, mean_test=test)


def test_the_ceiling_is_the_best_test_metric_whatever_dev_says(bench):
    ranking = [entry(("bad", "good"), 0.9, 0.70), entry(("awful", "fine"), 0.8, 0.85), entry(("no", "yes"), 0.7, 0.60)]
    ceiling = bench.oracle(ranking, task_prompt_test=0.65)
    assert ceiling["test"] == 0.85 and "awful" in ceiling["candidate"]
    assert ceiling["final_rung"] == 3 and ceiling["above_task_prompt"] == 2


def test_candidates_without_a_test_metric_are_left_out_and_ties_with_the_task_prompt_are_not_above(bench):
    ranking = [entry(("bad", "good"), 0.9, None), entry(("awful", "fine"), 0.8, 0.65)]
    ceiling = bench.oracle(ranking, task_prompt_test=0.65)
    assert ceiling["final_rung"] == 1 and ceiling["above_task_prompt"] == 0
    assert bench.oracle([entry(("bad", "good"), 0.9, None)], task_prompt_test=0.65) is None
    assert bench.oracle(ranking, task_prompt_test=None)["above_task_prompt"] is None


def test_race_only_recognises_variants_with_demonstrations_and_ensembles_holding_one(bench):
    plain = make_candidate("*cls**sent_0*_It_was*mask*.*sep+*", {"0": "bad", "1": "good"})
    variant = {**plain, "demonstrations": "random"}
    assert not bench._with_demonstrations(plain) and bench._with_demonstrations(variant)
    assert bench._with_demonstrations({"ensemble": [plain, variant]})
    assert not bench._with_demonstrations({"ensemble": [plain, plain]})


def test_a_from_label_names_task_defends_its_starting_prompt_unless_told_not_to(bench):
    import dataclasses

    from autoprompt_search.prompts import Verbalizer
    from autoprompt_search.search.records import candidate_id
    from autoprompt_search.tasks import generic_template, get_task

    sst2 = get_task("SST-2")
    manual = candidate_id(make_candidate(sst2.template, Verbalizer.for_task(sst2)))
    assert bench.defended_prompt_id(sst2) == bench.defended_prompt_id(sst2, defend_start=True) == manual
    named = dataclasses.replace(sst2, template=generic_template(1), template_source="generic",
                                label_words={"0": "negative", "1": "positive"}, label_words_source="label_names")
    start = candidate_id(make_candidate(generic_template(1), {"0": "negative", "1": "positive"}))
    assert bench.defended_prompt_id(named, defend_start=False) is None
    assert bench.defended_prompt_id(named) == start != manual
    placeholders = dataclasses.replace(named, label_words_source="search")
    assert bench.defended_prompt_id(placeholders, defend_start=True) is None


def test_a_replay_defends_the_candidate_the_search_marked_as_the_task_prompt(bench, tmp_path):
    import json

    from autoprompt_search.prompts import Verbalizer
    from autoprompt_search.search.records import candidate_id
    from autoprompt_search.tasks import get_task

    sst2 = get_task("SST-2")
    manual = make_candidate(sst2.template, Verbalizer.for_task(sst2))
    synonyms = make_candidate(sst2.template, {"0": ["terrible", "awful"], "1": "great"})
    listed = [{**manual, "label_words_source": "manual"}, {**synonyms, "label_words_source": "label synonyms"}]
    (tmp_path / "candidates.json").write_text(json.dumps(listed), encoding="utf-8")
    # Unmarked (searches written before the mark): the task's own words.
    assert bench.defended_prompt_id(sst2, folder=tmp_path) == candidate_id(manual)
    listed[1]["task_prompt"] = True
    (tmp_path / "candidates.json").write_text(json.dumps(listed), encoding="utf-8")
    assert bench.defended_prompt_id(sst2, folder=tmp_path) == candidate_id(synonyms)
    assert bench.defended_prompt_id(sst2) == candidate_id(manual)
