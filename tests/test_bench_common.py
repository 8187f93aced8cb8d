"""benchmarks/common.py: two processes saving units of one benchmark into one results file."""
from __future__ import annotations

import json

import pytest

from benchmark_scripts import load_benchmark

@pytest.fixture(scope="module")
def common():
    return load_benchmark("common")


def fresh(settings):
    return {"settings": settings, "tasks": {}, "commands": []}


def test_two_processes_fill_one_file(common, tmp_path):
    path = tmp_path / "bench.json"
    first, second = fresh({"seeds": [13]}), fresh({"seeds": [13]})  # both read before either saved
    first["commands"].append("run --tasks A")
    first["tasks"]["A"] = {"manual": {"13": 0.8}}
    common.save_merged(path, first)
    second["commands"].append("run --tasks B")
    second["tasks"]["B"] = {"manual": {"13": 0.6}}
    common.save_merged(path, second)
    first["tasks"]["A"]["manual"]["21"] = 0.7  # the first process goes on, unaware of B
    common.save_merged(path, first)

    saved = json.loads(path.read_text())
    assert saved["tasks"] == {"A": {"manual": {"13": 0.8, "21": 0.7}}, "B": {"manual": {"13": 0.6}}}
    assert saved["commands"] == ["run --tasks A", "run --tasks B"]
    assert second["tasks"]["A"] == {"manual": {"13": 0.8}}  # the in-memory state took in the other's units


def test_own_values_win_and_other_settings_are_not_merged(common, tmp_path):
    path = tmp_path / "bench.json"
    stale = {"manual": {"13": 0.5}, "prompts": [[13, "old pick"]]}
    common.save_merged(path, {**fresh({"seeds": [13]}), "tasks": {"A": stale}})
    mine = {**fresh({"seeds": [13]}), "tasks": {"A": {"manual": {"13": 0.9}, "prompts": [[13, "new pick"]]}}}
    common.save_merged(path, mine)
    saved = json.loads(path.read_text())["tasks"]["A"]
    assert saved == {"manual": {"13": 0.9}, "prompts": [[13, "new pick"]]}  # a unit's lists are not mixed

    other = fresh({"seeds": [42]})
    common.save_merged(path, other)
    assert json.loads(path.read_text())["tasks"] == {}


def test_scoring_cpu_is_counted_and_results_pass_through(common):
    import time
    from types import SimpleNamespace

    def evaluate(value, *, spin):
        end = time.process_time() + spin
        while time.process_time() < end:
            pass
        return value * 2

    module = SimpleNamespace(evaluate=evaluate)
    seconds = common.count_scoring_cpu(module)
    assert seconds == [0.0]
    assert module.evaluate(21, spin=0.05) == 42 and module.evaluate(1, spin=0.05) == 2
    assert 0.1 <= seconds[0] < 5
    with pytest.raises(TypeError):
        module.evaluate()  # an error still propagates, and its time still counts
    assert seconds[0] >= 0.1
