"""benchmarks/bench_memory_phases.py saves after every measured process and, run again with the same settings,
measures only the processes it has not saved yet."""
from __future__ import annotations

import json
import sys

import pytest

from benchmark_scripts import load_benchmark


@pytest.fixture
def bench(tmp_path, monkeypatch):
    module = load_benchmark("bench_memory_phases")
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    common = sys.modules["common"]
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "environment", lambda: {"test": True})
    return module


def fake_child(calls, fail_on=None):
    def child_result(command, env=None):
        variant = command[command.index("--child-variant") + 1]
        if variant == fail_on:
            raise RuntimeError("killed")
        calls.append(variant)
        return {"freed_memory_kept": variant != "no-keep", "page_faults": 10, "kernel_s": 1.0, "user_s": 2.0,
                "variant": variant, "tuning": "full", "micro_batch_tokens": None, "pristine": "WeightsOnDisk",
                "loaded_mb": 100.0,
                "evaluations": [{"template": "t", "train_peak_mb": 1.0, "test_peak_mb": 1.0, "end_mb": 1.0,
                                 "train_s": 1.0, "test_s": 1.0, "dev": 0.5, "test": 0.5, "best_step": 0}]}
    return child_result


def run(bench, monkeypatch, *extra):
    monkeypatch.setattr(sys, "argv", ["bench_memory_phases.py", "--name", "m", *extra])
    bench.main()


def test_a_stopped_run_keeps_what_it_measured_and_resumes(bench, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(bench, "child_result", fake_child(calls, fail_on="no-keep"))
    with pytest.raises(RuntimeError):
        run(bench, monkeypatch, "--variants", "keep", "no-keep")
    saved = json.loads((tmp_path / "m.json").read_text())
    assert [r["variant"] for r in saved["runs"]] == ["keep"]
    assert "Partial: not measured yet: full no-keep" in (tmp_path / "m.md").read_text()
    calls.clear()
    monkeypatch.setattr(bench, "child_result", fake_child(calls))
    run(bench, monkeypatch, "--variants", "keep", "no-keep")
    assert calls == ["no-keep"]
    text = (tmp_path / "m.md").read_text()
    assert "Partial" not in text and "| full | no-keep | no bound | False | not recorded | not recorded | 10 |" in text


def test_other_settings_are_refused_rather_than_mixed(bench, monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "child_result", fake_child([]))
    run(bench, monkeypatch, "--variants", "keep")
    with pytest.raises(SystemExit, match="steps"):
        run(bench, monkeypatch, "--variants", "keep", "--steps", "8")


def test_resuming_by_tasks_shares_the_settings_check(tmp_path, monkeypatch):
    """`previous_reports` (bench_template_quality's --resume) and this benchmark use one check: arguments that only
    say what to run now may differ, any other refuses the file."""
    import argparse

    common = load_benchmark("common")
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    (tmp_path / "q.json").write_text(json.dumps({"args": {"tasks": ["sst2"], "threads": 1, "steps": 8},
                                                 "command": "c", "tasks": [{"task": "sst2"}]}))
    same = argparse.Namespace(tasks=["cr"], threads=2, steps=8)
    assert common.previous_reports("q", same) == ([{"task": "sst2"}], ["c"])
    with pytest.raises(SystemExit, match=r"settings differ in \['steps'\]"):
        common.previous_reports("q", argparse.Namespace(tasks=["cr"], threads=2, steps=16))
