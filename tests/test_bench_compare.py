"""benchmarks/bench_compare.py's table: prompt minus standard over the seeds both finished, and a task with
units missing marked partial."""
from __future__ import annotations

import pytest

from benchmark_scripts import load_benchmark

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
