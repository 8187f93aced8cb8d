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
