"""bench_prompts_from_labels: which search settings each side of the comparison runs with."""
from __future__ import annotations

import argparse
import dataclasses

from benchmark_scripts import load_benchmark

from autoprompt_search.search import SearchOptions

bench = load_benchmark("bench_prompts_from_labels")


def _args(**overrides) -> argparse.Namespace:
    base = dict(default_search=False, start_only=False, finalist_demonstrations=[], label_neighbours=None,
                n_templates=3, beam_width=8,
                n_mappings=2, label_k=10, screening_split="dev", min_steps=8, max_steps=16)
    return argparse.Namespace(**{**base, **overrides})


def _options(args, searched: bool) -> SearchOptions:
    return SearchOptions(**bench.search_settings(args, searched), task="t.json")


def test_default_search_leaves_every_search_setting_at_its_default():
    found = _options(_args(default_search=True), searched=True)
    default = SearchOptions(task="t.json")
    assert dataclasses.asdict(found) == dataclasses.asdict(default)


def test_default_search_trains_the_manual_prompt_alone_at_the_default_budget():
    manual = _options(_args(default_search=True), searched=False)
    default = SearchOptions(task="t.json")
    assert (manual.n_templates, manual.n_mappings, manual.generator, manual.strategy) == (0, 0, "none", "exhaustive")
    assert manual.max_steps == default.max_steps != 16


def test_small_settings_apply_to_both_sides_and_finalist_demonstrations_only_to_the_search():
    args = _args(finalist_demonstrations=["random"])
    found, manual = _options(args, searched=True), _options(args, searched=False)
    assert (found.n_templates, found.beam_width, found.label_k, found.max_steps) == (3, 8, 10, 16)
    assert found.finalist_demonstrations == ("random",) and manual.finalist_demonstrations == ()
    assert manual.max_steps == 16 and manual.n_templates == 0


def test_label_neighbours_reach_only_the_search():
    for default_search in (False, True):
        args = _args(default_search=default_search, label_neighbours=50)
        assert _options(args, searched=True).label_neighbours == 50
        assert _options(args, searched=False).label_neighbours is None


def _report(manual: float, found: float) -> dict:
    side = {"template": "*cls**sent_0**mask*.*sep+*", "template_source": ["generic"], "label_words": {"0": "a"},
            "label_words_source": "label names"}
    return {"manual": {**side, "test_mean_std": [manual, 0.0]},
            "from_labels": {**side, "test_mean_std": [found, 0.0]}, "ratio": found / manual}


def test_per_seed_table_gives_the_ratio_of_means_and_marks_missing_splits():
    args = _args(default_search=True, tasks=["sst2"], data_seeds=[13, 21, 42], model="m", k=16, test_limit=1000)
    text = bench.per_seed_markdown({"SST-2": {13: _report(0.8, 0.6), 21: _report(0.8, 0.8)}}, args)
    summary = next(line for line in text.splitlines() if line.startswith("| SST-2 | 2 |"))
    assert "70.0 ± 14.1" in summary and "87.5%" in summary and "| 1 / 2 |" in summary
    assert "Partial: not finished: SST-2 split 42." in text
    complete = bench.per_seed_markdown({"SST-2": {13: _report(0.8, 0.6)}}, _args(
        default_search=True, tasks=["sst2"], data_seeds=[13], model="m", k=16, test_limit=1000))
    assert "Partial" not in complete
