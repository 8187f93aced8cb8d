"""bench_search_quality: a variant's settings and run folders keep earlier results resumable and apart."""
from __future__ import annotations

import sys
from pathlib import Path

from benchmark_scripts import load_benchmark

bench = load_benchmark("bench_search_quality")


def _args(monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["bench_search_quality.py", *argv])
    return bench.parse_args()


def test_label_neighbours_runs_get_their_own_folders_and_settings(monkeypatch):
    plain = _args(monkeypatch, "--tasks", "SST-2", "--seeds", "13")
    near = _args(monkeypatch, "--tasks", "SST-2", "--seeds", "13", "--label-neighbours", "50")
    assert "label_neighbours" not in bench.settings_of(plain)  # files written before the option still resume
    assert bench.settings_of(near)["label_neighbours"] == 50
    default, variant = bench.search_options(plain, "SST-2", 13), bench.search_options(near, "SST-2", 13)
    assert default.label_neighbours is None and variant.label_neighbours == 50
    assert Path(default.out).parent.name == "sst-2"
    assert Path(variant.out).parent.name == "sst-2-label-neighbours-50"


def test_an_embeddings_variant_gets_its_own_folders_and_settings(monkeypatch):
    plain = _args(monkeypatch, "--tasks", "SST-2", "--seeds", "13")
    frozen = _args(monkeypatch, "--tasks", "SST-2", "--seeds", "13", "--embeddings", "freeze")
    assert "embeddings" not in bench.settings_of(plain)  # files written before the option still resume
    assert bench.settings_of(frozen)["embeddings"] == "freeze"
    default, variant = bench.search_options(plain, "SST-2", 13), bench.search_options(frozen, "SST-2", 13)
    assert variant.embeddings == "freeze" and default.embeddings == type(default)(task="x").embeddings
    assert Path(default.out).parent.name == "sst-2"
    assert Path(variant.out).parent.name == "sst-2-embeddings-freeze"


def test_a_label_synonyms_variant_gets_its_own_folders_and_settings(monkeypatch):
    plain = _args(monkeypatch, "--tasks", "MR", "--seeds", "21")
    synonyms = _args(monkeypatch, "--tasks", "MR", "--seeds", "21", "--label-synonyms", "2")
    assert "label_synonyms" not in bench.settings_of(plain)  # files written before the option still resume
    assert bench.settings_of(synonyms)["label_synonyms"] == 2
    default, variant = bench.search_options(plain, "MR", 21), bench.search_options(synonyms, "MR", 21)
    assert default.label_synonyms == 0 and variant.label_synonyms == 2
    assert Path(default.out).parent.name == "mr"
    assert Path(variant.out).parent.name == "mr-label-synonyms-2"
