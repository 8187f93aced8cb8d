"""benchmarks/bench_compare.py's table: prompt minus standard over the seeds both finished, and a task with
units missing marked partial."""
from __future__ import annotations

import json

import pytest

from benchmark_scripts import load_benchmark
from test_comparison import task_file  # noqa: F401  (a fixture)

from autoprompt_search.comparison import ComparisonSummary, MethodSummary


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_compare")


def summary(task, prompt, standard, missing=()):
    return ComparisonSummary(task, "acc", [MethodSummary("zero-shot", {13: 0.6}), MethodSummary("prompt", prompt),
                                           MethodSummary("standard", standard)], list(missing), {})


def test_the_difference_is_over_the_seeds_both_methods_finished(bench):
    text, partial = bench.table({"SST-2": summary("SST-2", {13: 0.80, 21: 0.90}, {13: 0.70})})
    row = next(line for line in text.splitlines() if line.startswith("| SST-2"))
    assert "| +10.0 | 1/1 |" in row and "85.0 ± 5.0" in row and "70.0 |" in row
    assert partial == []


def test_a_task_with_missing_units_is_partial(bench):
    _, partial = bench.table({"CR": summary("CR", {13: 0.8}, {}, missing=["standard/13"])})
    assert partial == ["CR (standard/13)"]


def test_units_kept_in_the_results_file_are_put_back_and_reused_where_the_folder_is_gone(
        bench, task_file, tiny_mlm_folder, tmp_path, monkeypatch):
    from test_comparison import options_for

    from autoprompt_search.comparison import run_comparison
    from autoprompt_search.comparison import runner as comparison_runner
    from autoprompt_search.search import clear_process_state

    clear_process_state()
    seen = []
    first = run_comparison(options_for(task_file, tiny_mlm_folder, tmp_path / "gone"), say=lambda _: None,
                           after_unit=lambda store: seen.append(len(store.units)))
    assert seen == [1, 2, 3, 4, 5]  # the results file can be written after every unit
    kept = bench.kept_store(tmp_path / "gone" / "comparison.json")
    assert all(not any(key.endswith(("_scores", "_labels")) for key in unit) for unit in kept["units"].values())
    assert bench.restore_store(tmp_path / "new", kept)
    assert not bench.restore_store(tmp_path / "new", kept)  # a folder's own store is never replaced
    monkeypatch.setattr(comparison_runner, "prompt_unit", lambda *a: pytest.fail("a unit ran again"))
    monkeypatch.setattr(comparison_runner, "standard_unit", lambda *a: pytest.fail("a unit ran again"))
    again = run_comparison(options_for(task_file, tiny_mlm_folder, tmp_path / "new"), say=lambda _: None)
    assert not again.missing
    assert {m.method: m.tests for m in again.methods} == {m.method: m.tests for m in first.methods}


def results_file(path, tasks, **args):
    settings = {"model": "m", "methods": ["zero-shot", "prompt", "standard"], "seeds": [13, 21], "steps": 32,
                "lr": 5e-05, "standard_steps": None, "standard_lr": None, "test_limit": None, "tasks": list(tasks),
                "root": "runs/x", "name": None, "collect": False, "data_dir": None}
    settings.update(args)
    path.write_text(json.dumps({"args": settings, "tasks": tasks}), encoding="utf-8")
    return str(path)


def test_merging_results_files_tables_each_task_from_the_latest_file_that_has_it(bench, tmp_path):
    old = results_file(tmp_path / "old.json", {
        "SST-2": {"zero-shot": {"test": {"13": 0.6}}, "prompt": {"test": {"13": 0.8, "21": 0.9}},
                  "standard": {"test": {"13": 0.7, "21": 0.6}}},
        "MRPC": {"prompt": {"test": {"13": 0.7}}}})
    new = results_file(tmp_path / "new.json", {
        "MRPC": {"zero-shot": {"test": {"13": 0.5}}, "prompt": {"test": {"13": 0.75, "21": 0.65}},
                 "standard": {"test": {"13": 0.6, "21": 0.7}}}}, collect=True, root="elsewhere")
    summaries, _ = bench.merged_summaries([old, new])
    assert list(summaries) == ["SST-2", "MRPC"]
    assert summaries["MRPC"].method("prompt").tests == {13: 0.75, 21: 0.65} and not summaries["MRPC"].missing
    assert summaries["MRPC"].metric == "f1"
    text, partial = bench.table(summaries)
    assert partial == [] and "| +5.0 | 1/2 |" in next(line for line in text.splitlines() if "| MRPC" in line)
    summaries, _ = bench.merged_summaries([new, old])  # the old file's partial MRPC now wins
    assert summaries["MRPC"].missing == ["zero-shot/13", "prompt/21", "standard/13", "standard/21"]
    with pytest.raises(SystemExit, match="steps"):
        bench.merged_summaries([old, results_file(tmp_path / "other.json", {}, steps=16)])
