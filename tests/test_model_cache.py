"""The model snapshot cache, through the same code path a GGUF model takes: a fake GGUF source whose
conversion is a save_pretrained of the tiny causal model, counting conversions."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import threading
from pathlib import Path

import pytest
import torch

import autoprompt_search.models.snapshots as snapshots_module
from autoprompt_search.models import (
    CACHE_ENV,
    ModelSource,
    cache_root,
    file_sha256,
    is_valid_snapshot,
    load_backbone,
    load_encoder,
    load_through_snapshot,
    load_tokenizer_only,
    resolve_model,
    snapshot,
)
from autoprompt_search.prompts import Template, Verbalizer
from autoprompt_search.tasks import Example, get_task

from conftest import TEST_DEVICE

SST2 = get_task("SST-2")
EXAMPLES = [Example(("A wonderful film.",), "1"), Example(("The plot was dull and tedious.",), "0")]


class CountingConverter:
    """Stands in for GGUF dequantisation: writes the tiny model's files, and counts each call."""

    def __init__(self, tiny_folder: Path):
        self.tiny_folder = tiny_folder
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, source: ModelSource, folder: Path, part: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with self.lock:
            self.calls.append(part)
        folder.mkdir(parents=True, exist_ok=True)
        AutoTokenizer.from_pretrained(self.tiny_folder).save_pretrained(folder)
        if part == "model":
            AutoModelForCausalLM.from_pretrained(self.tiny_folder).save_pretrained(folder)


@pytest.fixture
def fake_gguf(tmp_path) -> Path:
    folder = tmp_path / "fake-model"
    folder.mkdir()
    (folder / "fake.Q4.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 8)
    return folder


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "model-cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root


@pytest.fixture
def converter(tiny_causal_folder, monkeypatch) -> CountingConverter:
    counting = CountingConverter(tiny_causal_folder)
    monkeypatch.setattr(snapshots_module, "convert_gguf", counting)
    return counting


def _snapshots(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scores(backbone) -> torch.Tensor:
    template, verbalizer = Template.parse(SST2.template), Verbalizer.for_task(SST2)
    batch = backbone.collate([backbone.encode(e, template, verbalizer) for e in EXAMPLES])
    with torch.no_grad():
        return backbone.class_scores(batch, verbalizer).cpu()


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "here"))
    assert cache_root() == tmp_path / "here"
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cache_root() is None
    monkeypatch.delenv(CACHE_ENV)
    assert cache_root() == Path.home() / ".cache" / "autoprompt_search" / "models"


def test_second_load_reads_the_snapshot_without_converting(fake_gguf, cache, converter, tiny_causal):
    source = resolve_model(str(fake_gguf))
    assert source.gguf_file == "fake.Q4.gguf"
    first = load_backbone(str(fake_gguf), device=TEST_DEVICE)
    assert converter.calls == ["model"]
    second = load_backbone(str(fake_gguf), device=TEST_DEVICE)
    assert converter.calls == ["model"]
    [folder] = _snapshots(cache)
    digest = hashlib.sha256((fake_gguf / "fake.Q4.gguf").read_bytes()).hexdigest()
    assert folder.name == f"fake.Q4-{digest[:16]}"
    assert is_valid_snapshot(folder) and json.loads((folder / "snapshot.json").read_text())["sha256"] == digest
    torch.testing.assert_close(_scores(first), _scores(tiny_causal))
    torch.testing.assert_close(_scores(second), _scores(tiny_causal))


def test_a_changed_gguf_file_gets_a_new_snapshot(fake_gguf, cache, converter):
    source = resolve_model(str(fake_gguf))
    first = snapshot(source)
    (fake_gguf / "fake.Q4.gguf").write_bytes(b"GGUF another version")
    second = snapshot(source)
    assert first != second and converter.calls == ["model", "model"]
    assert is_valid_snapshot(first) and is_valid_snapshot(second)


class CopyingConverter:
    """A conversion that only copies files (no torch), so it can run in forked processes."""

    def __init__(self, tiny_folder: Path, barrier):
        self.tiny_folder, self.barrier = tiny_folder, barrier

    def __call__(self, source: ModelSource, folder: Path, part: str) -> None:
        folder.mkdir(parents=True)
        files = sorted(p for p in self.tiny_folder.iterdir() if p.is_file())
        half = len(files) // 2
        for path in files[:half]:
            shutil.copy(path, folder / path.name)
        self.barrier.wait()  # every writer is half-way before any finishes: a real race on the rename
        for path in files[half:]:
            shutil.copy(path, folder / path.name)


def _race(source, converter, queue):
    try:
        queue.put(("ok", str(snapshot(source, convert=converter))))
    except BaseException as error:  # reported by the parent
        queue.put(("error", repr(error)))


def test_concurrent_processes_leave_one_valid_snapshot(fake_gguf, cache, tiny_causal_folder):
    context = multiprocessing.get_context("fork")
    writers = 3
    converter = CopyingConverter(tiny_causal_folder, context.Barrier(writers, timeout=120))
    queue = context.Queue()
    source = resolve_model(str(fake_gguf))
    processes = [context.Process(target=_race, args=(source, converter, queue)) for _ in range(writers)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=300) for _ in processes]
    for process in processes:
        process.join()
    assert [status for status, _ in results] == ["ok"] * writers, results
    assert len({folder for _, folder in results}) == 1
    [folder] = _snapshots(cache)
    assert str(folder) == results[0][1] and is_valid_snapshot(folder)
    assert not [p for p in cache.iterdir() if p.name.startswith((".tmp-", ".stale-"))]


@pytest.mark.parametrize("damage", ["truncated weights", "no marker", "marker lists other files", "extra file"])
def test_a_damaged_snapshot_is_ignored_and_rebuilt(fake_gguf, cache, converter, tiny_causal, damage):
    source = resolve_model(str(fake_gguf))
    folder = snapshot(source)
    weights = folder / "model.safetensors"
    if damage == "truncated weights":  # e.g. a copy cut short
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "no marker":  # a folder written by something that stopped half-way
        (folder / "snapshot.json").unlink()
    elif damage == "marker lists other files":
        marker = json.loads((folder / "snapshot.json").read_text())
        marker["files"]["missing.bin"] = 3
        (folder / "snapshot.json").write_text(json.dumps(marker))
    else:
        (folder / "partial.tmp").write_bytes(b"x")
    assert not is_valid_snapshot(folder)
    assert snapshot(source) == folder and converter.calls == ["model", "model"]
    assert is_valid_snapshot(folder)
    torch.testing.assert_close(_scores(load_backbone(str(fake_gguf), device=TEST_DEVICE)), _scores(tiny_causal))
    assert converter.calls == ["model", "model"]


def test_a_snapshot_that_does_not_load_is_converted_again(fake_gguf, cache, converter, tiny_causal):
    source = resolve_model(str(fake_gguf))
    folder = snapshot(source)
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\0" * weights.stat().st_size)  # same size, so the marker still matches
    assert is_valid_snapshot(folder)
    backbone = load_backbone(str(fake_gguf), device=TEST_DEVICE)
    assert converter.calls == ["model", "model"]
    torch.testing.assert_close(_scores(backbone), _scores(tiny_causal))


def test_a_leftover_temporary_folder_is_not_a_snapshot(fake_gguf, cache, converter):
    source = resolve_model(str(fake_gguf))
    folder = snapshot(source)
    leftover = folder.with_name(f".tmp-{folder.name}-123-abc")
    leftover.mkdir()
    (leftover / "config.json").write_text("{}")
    assert snapshot(source) == folder and converter.calls == ["model"]


def test_the_cache_can_be_turned_off(fake_gguf, monkeypatch, converter):
    monkeypatch.setenv(CACHE_ENV, "off")
    source = resolve_model(str(fake_gguf))
    assert snapshot(source) is None
    assert load_through_snapshot(source, "model", lambda s: s) is source
    assert converter.calls == []


def test_sources_without_a_gguf_file_are_loaded_directly(tiny_causal_folder, cache, converter):
    source = resolve_model(str(tiny_causal_folder))
    assert snapshot(source) is None
    assert load_through_snapshot(source, "model", lambda s: s) is source
    assert converter.calls == [] and not cache.exists()


def test_tokenizer_only_loads_convert_no_model(fake_gguf, cache, converter, tiny_causal):
    text = "A wonderful film, it was great."
    tokenizer = load_tokenizer_only(str(fake_gguf))
    assert converter.calls == ["tokenizer"]
    assert tokenizer(text)["input_ids"] == tiny_causal.tokenizer(text)["input_ids"]
    load_tokenizer_only(str(fake_gguf))
    assert converter.calls == ["tokenizer"]
    load_backbone(str(fake_gguf), device=TEST_DEVICE)
    assert converter.calls == ["tokenizer", "model"]
    [model_folder] = [p for p in _snapshots(cache) if not p.name.endswith("-tokenizer")]
    assert snapshot(resolve_model(str(fake_gguf)), "tokenizer") == model_folder  # the full snapshot serves it
    assert converter.calls == ["tokenizer", "model"]


def test_load_encoder_encodes_like_the_backbone_without_weights(fake_gguf, cache, converter, tiny_causal):
    encoder = load_encoder(str(fake_gguf))
    assert encoder.model is None and converter.calls == ["tokenizer"]
    template, verbalizer = Template.parse(SST2.template), Verbalizer.for_task(SST2)
    for example in EXAMPLES:
        mine, theirs = encoder.encode(example, template, verbalizer), tiny_causal.encode(example, template, verbalizer)
        assert (mine.input_ids, mine.continuations, mine.text) == (theirs.input_ids, theirs.continuations, theirs.text)


def test_file_hashes_are_remembered_per_file_version(tmp_path, monkeypatch):
    model_file = tmp_path / "model.gguf"
    model_file.write_bytes(b"first version")
    memo = tmp_path / "memo"
    hashed = []
    real = snapshots_module.file_sha256.__globals__["sha256_file"]
    monkeypatch.setitem(snapshots_module.file_sha256.__globals__, "sha256_file",
                        lambda path: hashed.append(path) or real(path))
    expected = hashlib.sha256(b"first version").hexdigest()
    assert file_sha256(model_file, memo) == expected and file_sha256(model_file, memo) == expected
    assert len(hashed) == 1
    model_file.write_bytes(b"second, longer version")
    assert file_sha256(model_file, memo) == hashlib.sha256(b"second, longer version").hexdigest()
    assert len(hashed) == 2
