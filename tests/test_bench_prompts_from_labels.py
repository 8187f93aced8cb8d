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
