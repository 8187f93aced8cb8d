"""bench_search_quality: a variant's settings and run folders keep earlier results resumable and apart."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmark_scripts import load_benchmark

bench = load_benchmark("bench_search_quality")


def _args(monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["bench_search_quality.py", *argv])
    return bench.parse_args()


@pytest.mark.parametrize("flag, value, field, default, folder", [
    ("--label-neighbours", 50, "label_neighbours", None, "sst-2-label-neighbours-50"),
    ("--label-synonyms", 2, "label_synonyms", 0, "sst-2-label-synonyms-2"),
])
def test_a_label_word_variant_gets_its_own_folders_and_settings(monkeypatch, flag, value, field, default, folder):
    plain = _args(monkeypatch, "--tasks", "SST-2", "--seeds", "13")
    variant_args = _args(monkeypatch, "--tasks", "SST-2", "--seeds", "13", flag, str(value))
    assert field not in bench.settings_of(plain)  # files written before the option still resume
    assert bench.settings_of(variant_args)[field] == value
    default_options, variant = bench.search_options(plain, "SST-2", 13), bench.search_options(variant_args, "SST-2", 13)
    assert getattr(default_options, field) == default and getattr(variant, field) == value
    assert Path(default_options.out).parent.name == "sst-2"
    assert Path(variant.out).parent.name == folder


def test_an_embeddings_variant_gets_its_own_folders_and_settings(monkeypatch):
    plain = _args(monkeypatch, "--tasks", "SST-2", "--seeds", "13")
    frozen = _args(monkeypatch, "--tasks", "SST-2", "--seeds", "13", "--embeddings", "freeze")
    assert "embeddings" not in bench.settings_of(plain)  # files written before the option still resume
    assert bench.settings_of(frozen)["embeddings"] == "freeze"
    default, variant = bench.search_options(plain, "SST-2", 13), bench.search_options(frozen, "SST-2", 13)
    assert variant.embeddings == "freeze" and default.embeddings == type(default)(task="x").embeddings
    assert Path(default.out).parent.name == "sst-2"
    assert Path(variant.out).parent.name == "sst-2-embeddings-freeze"


def test_a_variant_starts_from_a_copy_of_the_finished_default_search(monkeypatch, tmp_path):
    args = _args(monkeypatch, "--tasks", "SST-2", "--seeds", "13", "--label-synonyms", "2", "--reuse-default",
                 "--out-root", str(tmp_path))
    assert "reuse_default" not in bench.settings_of(args)  # how a run starts is no setting of its results
    default = tmp_path / "smollm2-135m" / "sst-2" / "seed13"
    variant = tmp_path / "smollm2-135m" / "sst-2-label-synonyms-2" / "seed13"
    default.mkdir(parents=True)
    for name in ("leaderboard.sqlite", "generated_templates.json", "label_words.json"):
        (default / name).write_text(name, encoding="utf-8")
    assert bench.start_from_default(args, "SST-2", 13) is None  # the default search has not finished
    (default / "best.json").write_text("{}", encoding="utf-8")
    assert bench.start_from_default(args, "SST-2", 13) == default
    assert sorted(p.name for p in variant.iterdir()) == ["generated_templates.json", "label_words.json",
                                                         "leaderboard.sqlite", "started_from.json"]
    (variant / "leaderboard.sqlite").write_text("the variant's own rows", encoding="utf-8")
    assert bench.start_from_default(args, "SST-2", 13) is None  # a started variant is never overwritten
    assert (variant / "leaderboard.sqlite").read_text(encoding="utf-8") == "the variant's own rows"
    # a variant stopped and resumed in a later run still reports the folder it was copied from
    assert bench.copied_from(args, "SST-2", 13) == str(default)
    plain = _args(monkeypatch, "--tasks", "SST-2", "--seeds", "13", "--reuse-default", "--out-root", str(tmp_path))
    assert bench.start_from_default(plain, "SST-2", 13) is None  # the default search copies from nothing


def test_a_variant_that_began_without_a_copy_reports_none(monkeypatch, tmp_path):
    args = _args(monkeypatch, "--tasks", "SST-2", "--seeds", "13", "--label-synonyms", "2", "--reuse-default",
                 "--out-root", str(tmp_path))
    variant = tmp_path / "smollm2-135m" / "sst-2-label-synonyms-2" / "seed13"
    variant.mkdir(parents=True)
    (variant / "leaderboard.sqlite").write_text("rows of its own search", encoding="utf-8")
    assert bench.start_from_default(args, "SST-2", 13) is None
    assert bench.copied_from(args, "SST-2", 13) is None


def _search(tests: dict, ensemble: dict | None) -> dict:
    search = {"pick": {"test_per_seed": tests, "template": "*cls**sent_0**mask*.*sep+*", "label_words": {}},
              "evaluations": 3, "train_steps": 24, "wall_seconds": 10.0, "selection": {"reason": "kept"}}
    if ensemble is not None:
        search["ensemble"] = {"test_per_seed": ensemble}
    return search


def _state() -> dict:
    finished = {"manual": {"13": {"test": 0.75}, "21": {"test": 0.80}},
                "searches": {"13": _search({"13": 0.80}, {"13": 0.70}), "21": _search({"21": 0.70}, {"21": 0.85})}}
    no_ensemble = {"manual": {"13": {"test": 0.5}, "21": {"test": 0.6}},
                   "searches": {"13": _search({"13": 0.5}, None), "21": _search({"21": 0.9}, None)}}
    unfinished = {"manual": {"13": {"test": 0.4}}, "searches": {"13": _search({"13": 0.45}, {"13": 0.5})}}
    return {"settings": {}, "commands": ["bench"], "tasks": {"SST-2": finished, "MR": no_ensemble, "CR": unfinished}}


def test_the_plot_shows_each_seeds_difference_from_manual_on_finished_tasks_only(monkeypatch):
    args = _args(monkeypatch, "--tasks", "SST-2", "MR", "CR", "--seeds", "13", "21")
    rows = {task: (pick, ensemble) for task, pick, ensemble in bench.differences_from_manual(_state(), args)}
    assert sorted(rows) == ["MR", "SST-2"]
    assert rows["SST-2"][0] == pytest.approx([5.0, -10.0])
    assert rows["SST-2"][1] == pytest.approx([-5.0, 5.0])
    assert rows["MR"] == (pytest.approx([0.0, 30.0]), [])


def test_saving_writes_the_plot_beside_the_table_once_a_task_is_finished(monkeypatch, tmp_path):
    args = _args(monkeypatch, "--tasks", "SST-2", "MR", "CR", "--seeds", "13", "21")
    state = _state()
    bench.save_state(tmp_path / "quality.json", state, args)
    assert (tmp_path / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Plot: `quality.png`" in (tmp_path / "quality.md").read_text(encoding="utf-8")
    del state["tasks"]["SST-2"], state["tasks"]["MR"]
    bench.save_state(tmp_path / "none.json", state, args)
    assert not (tmp_path / "none.png").exists()
    assert "Plot:" not in (tmp_path / "none.md").read_text(encoding="utf-8")
