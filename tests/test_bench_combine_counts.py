"""bench_combine_counts: both combines are scored only where the classes' lists differ in length, each row
through the real classifier with the combine it names; a finished task and seed is not rerun."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from autoprompt_search.auto_label import SynonymChoice
from autoprompt_search.prompts import Verbalizer
from autoprompt_search.tasks import get_task
from autoprompt_search.training import PromptClassifier

from benchmark_scripts import load_benchmark

bench = load_benchmark("bench_combine_counts")
SST2 = get_task("SST-2")


@pytest.mark.parametrize("lists, variants", [
    ([["terrible", "awful", "dull"], ["great"]], ["manual", "logsumexp", "logmeanexp"]),
    ([["terrible", "awful"], ["great", "lovely"]], ["manual", "logsumexp"]),
    ([["terrible"], ["great"]], ["manual"]),
])
def test_a_unit_scores_each_combine_through_the_classifier(tiny_causal, tmp_path, monkeypatch, lists, variants):
    from test_search import write_toy_lmbff

    data = write_toy_lmbff(tmp_path / "lmbff", seeds=(13,))
    monkeypatch.setattr(bench, "search_synonyms", lambda *args, **kwargs: SynonymChoice(lists))
    args = bench.parse_args(["--data-dir", str(data), "--test-limit", "5", "--max-length", "48"])
    unit = bench.run_unit(tiny_causal, SimpleNamespace(encode=None), SST2, 13, args)
    assert [row["variant"] for row in unit["rows"]] == variants
    assert unit["unequal"] == (len({len(words) for words in lists}) > 1)
    for row in unit["rows"][1:]:
        verbalizer = Verbalizer.from_word_lists(SST2.labels, lists, row["variant"])
        assert row["label_words"] == verbalizer.to_mapping()
        test = bench.limit_examples(bench.load_split(SST2, "test", data_dir=str(data), k=16, seed=13), 5)
        direct = PromptClassifier.build(tiny_causal, SST2, SST2.template, verbalizer, max_length=48).evaluate(test)
        assert row["test"] == direct.metrics[SST2.metric]
        assert sum(row["test_shares"]) == pytest.approx(1.0) and len(row["test_shares"]) == 2


def test_a_word_list_already_scored_on_the_test_sample_is_not_scored_again(tiny_causal, tmp_path, monkeypatch):
    from test_search import write_toy_lmbff

    data = write_toy_lmbff(tmp_path / "lmbff", seeds=(13, 21))
    monkeypatch.setattr(bench, "search_synonyms", lambda *args, **kwargs: SynonymChoice([["terrible"], ["great"]]))
    scored = []
    real_evaluate = bench._evaluate

    def counting_evaluate(backbone, task, template, verbalizer, examples, max_length):
        scored.append(len(examples))
        return real_evaluate(backbone, task, template, verbalizer, examples, max_length)

    monkeypatch.setattr(bench, "_evaluate", counting_evaluate)
    args = bench.parse_args(["--data-dir", str(data), "--test-limit", "5", "--max-length", "48"])
    known = {}
    first = bench.run_unit(tiny_causal, SimpleNamespace(encode=None), SST2, 13, args, known)
    second = bench.run_unit(tiny_causal, SimpleNamespace(encode=None), SST2, 21, args, known)
    dev_sizes = [len(bench.load_split(SST2, "dev", data_dir=str(data), k=16, seed=s)) for s in (13, 21)]
    assert scored == [dev_sizes[0], 5, dev_sizes[1]]
    assert second["rows"][0]["test"] == first["rows"][0]["test"]
    assert second["rows"][0]["test_shares"] == first["rows"][0]["test_shares"]
    saved = json.loads(json.dumps({"SST-2/13": first}))
    scored.clear()
    bench.run_unit(tiny_causal, SimpleNamespace(encode=None), SST2, 21, args, bench.known_test_results(saved))
    assert scored == [dev_sizes[1]]


def test_finished_units_are_not_rerun_and_the_table_counts_only_unequal_lists(tmp_path, monkeypatch):
    ran, known_on_resume = [], []

    def fake_unit(backbone, encoder, task, seed, args, known_test):
        unequal = seed == 13
        rows = [{"variant": "manual", "label_words": {"0": "a", "1": "c"}, "dev": 0.5, "test": 0.5,
                 "test_shares": [0.5, 0.5]},
                {"variant": "logsumexp", "label_words": {"0": ["a", "b"], "1": "c"}, "dev": 0.5, "test": 0.6,
                 "test_shares": [0.9, 0.1]}]
        if unequal:
            rows.append({"variant": "logmeanexp", "label_words": {"0": ["a", "b"], "1": "c", "_combine": "logmeanexp"},
                         "dev": 0.5, "test": 0.7, "test_shares": [0.5, 0.5]})
        ran.append(seed)
        known_on_resume.append(dict(known_test))
        return {"task": task.name, "seed": seed, "word_lists": [["a", "b"], ["c"]] if unequal else [["a"], ["c"]],
                "unequal": unequal, "gold_shares": [0.5, 0.5], "rows": rows}

    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    monkeypatch.setattr(bench, "resolve_data_dir", lambda data_dir: None)
    monkeypatch.setattr(bench, "load_benchmark_backbone", lambda *args, **kwargs: (None, None))
    monkeypatch.setattr(bench, "SentenceEncoder", lambda *args, **kwargs: None)
    monkeypatch.setattr(bench, "run_unit", fake_unit)
    bench.main(["--tasks", "sst2", "--seeds", "13", "21"])
    bench.main(["--tasks", "sst2", "--seeds", "13", "21", "42"])
    assert ran == [13, 21, 42]
    assert known_on_resume[-1][json.dumps(["SST-2", {"0": "a", "1": "c"}], sort_keys=True)] == (0.5, [0.5, 0.5])
    state = json.loads((tmp_path / "combine_counts.json").read_text(encoding="utf-8"))
    assert sorted(state["units"]) == ["SST-2/13", "SST-2/21", "SST-2/42"]
    table = (tmp_path / "combine_counts.md").read_text(encoding="utf-8")
    assert "(1 task-seeds): log-mean-exp - log-sum-exp test +10.00" in table
    assert "| SST-2 | 21 | 0:a 1:c | 50.0 / 50.0 | 50.0 / 60.0 | - |" in table
