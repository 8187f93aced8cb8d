"""The summary of benchmarks/bench_lr_steps.py on hand-made units: best cells, regret, partial reports."""
from __future__ import annotations


import pytest

from benchmark_scripts import load_benchmark

@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_lr_steps")


LRS, STEPS, SEEDS = [1e-5, 5e-5], [16, 32], [13, 21]
# test accuracy per (task, lr, steps); seed 21 is 2 points above seed 13 everywhere
TEST = {"A": {(1e-5, 16): 0.70, (1e-5, 32): 0.80, (5e-5, 16): 0.75, (5e-5, 32): 0.60},
        "B": {(1e-5, 16): 0.50, (1e-5, 32): 0.54, (5e-5, 16): 0.56, (5e-5, 32): 0.55}}


def make_units(bench, skip=()):
    units = {}
    for task, cells in TEST.items():
        for (lr, steps), test in cells.items():
            for seed in SEEDS:
                key = bench.unit_key(task, seed, lr, steps)
                if key in skip:
                    continue
                value = test + (0.02 if seed == 21 else 0.0)
                units[key] = {"task": task, "seed": seed, "lr": lr, "steps": steps, "dev": value, "test": value,
                              "best_step": steps, "history": [[0, 0.5], [steps, value]], "seconds": 10.0,
                              "seconds_per_step": 0.5}
    return units


def test_best_cells_and_regret(bench):
    summary = bench.summarize(make_units(bench), ["A", "B"], SEEDS, bench.grid_cells(LRS, STEPS))
    assert summary["tasks"]["A"]["best"] == (1e-5, 32)
    assert summary["tasks"]["B"]["best"] == (5e-5, 16)
    assert summary["tasks"]["A"]["cells"][(1e-5, 32)]["test"] == pytest.approx(0.81)
    regret = {cell: r["mean"] for cell, r in summary["regret"].items()}
    assert regret == pytest.approx({(1e-5, 16): (0.10 + 0.06) / 2, (1e-5, 32): (0.0 + 0.02) / 2,
                                    (5e-5, 16): (0.05 + 0.0) / 2, (5e-5, 32): (0.20 + 0.01) / 2})
    assert summary["best"] == (1e-5, 32)


def test_incomplete_seed_is_left_out_of_the_comparison(bench):
    # seed 21 misses one cell of task A: A's cells are compared on seed 13 alone
    units = make_units(bench, skip={bench.unit_key("A", 21, 5e-5, 32)})
    task = bench.task_summary(units, "A", SEEDS, bench.grid_cells(LRS, STEPS))
    assert task["seeds"] == [13] and task["comparable"]
    assert task["cells"][(1e-5, 32)]["test"] == pytest.approx(0.80)


def test_markdown_says_partial_and_names_missing_units(bench):
    grid = {"tasks": ["A", "B"], "seeds": SEEDS, "lrs": LRS, "steps": STEPS}
    settings = {"model": "tiny", "k": 16, "batch_size": 8, "eval_every": 8, "test_limit": 500}
    missing = bench.unit_key("B", 21, 1e-5, 16)
    text = bench.markdown(make_units(bench, skip={missing}), grid, settings)
    assert "(partial)" in text and f"not run yet: {missing}." in text
    assert "beats the current default (lr 5e-05, 32 steps" in text
    complete = bench.markdown(make_units(bench), grid, settings)
    assert "partial" not in complete.lower()
    assert "Best overall by mean regret: lr 1e-05, 32 steps (1.0 points" in complete
    assert "by 9.5 points" in complete
