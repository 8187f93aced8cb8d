"""Freed tensor memory stays in the process for the next step, and the heap is trimmed between
evaluations only once the resident set has grown."""
import json
import subprocess
import sys

import pytest

from autoprompt_search.training import memory
from autoprompt_search.training.memory import KEEP_FREED_VARIABLE, KEPT_BLOCK_VARIABLE, FreedMemoryPolicy

glibc_only = pytest.mark.skipif(memory._libc() is None, reason="mallopt and malloc_trim are glibc's")

# Page faults of a 256 MB block malloc'ed, written and freed, twice: the second count is what a
# training step pays when the previous step's memory was handed back to the system.
_FAULTS = """
import ctypes, ctypes.util, json, resource
from autoprompt_search.training.memory import keep_freed_memory
kept = keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 256 * 2**20
counts = []
for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"kept": kept, "faults": counts}))
"""


def _faults(env_value: str | None, kept_block_mb: str | None = None) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if k not in (KEEP_FREED_VARIABLE, KEPT_BLOCK_VARIABLE)}
    if env_value is not None:
        env[KEEP_FREED_VARIABLE] = env_value
    if kept_block_mb is not None:
        env[KEPT_BLOCK_VARIABLE] = kept_block_mb
    done = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc_only
def test_kept_memory_is_reused_without_faulting_it_in_again():
    kept, default = _faults(None), _faults("0")
    pages = 256 * 2**20 // 4096
    assert kept["kept"] is True and default["kept"] is False
    # glibc's default unmaps the freed block, so the second allocation faults every page in again.
    assert default["faults"][1] > pages // 2
    assert kept["faults"][0] > pages // 2
    assert kept["faults"][1] < pages // 20


@glibc_only
def test_blocks_above_the_kept_bound_are_handed_back():
    pages = 256 * 2**20 // 4096
    above, below = _faults(None, kept_block_mb="64"), _faults(None, kept_block_mb="512")
    assert above["kept"] is True and below["kept"] is True
    assert above["faults"][1] > pages // 2  # the 256 MB block was mapped afresh
    assert below["faults"][1] < pages // 20


@pytest.mark.parametrize("value", ["0", "2048", "64MB", "-5"])
def test_a_kept_bound_outside_its_range_is_refused(monkeypatch, value):
    monkeypatch.setenv(KEPT_BLOCK_VARIABLE, value)
    with pytest.raises(ValueError, match=KEPT_BLOCK_VARIABLE):
        memory.kept_block_bytes()


def test_the_kept_bound_defaults_to_every_block_of_a_step(monkeypatch):
    monkeypatch.delenv(KEPT_BLOCK_VARIABLE, raising=False)
    assert memory.kept_block_bytes() == 1 << 30
    monkeypatch.setenv(KEPT_BLOCK_VARIABLE, "64")
    assert memory.kept_block_bytes() == 64 << 20


_STOPPED = _FAULTS.replace("kept = keep_freed_memory()", """kept = keep_freed_memory()
from autoprompt_search.training.memory import stop_keeping_freed_memory
stop_keeping_freed_memory()
kept = [kept, keep_freed_memory()]""")


@glibc_only
def test_stopping_hands_freed_memory_back_for_the_rest_of_the_process():
    done = subprocess.run([sys.executable, "-c", _STOPPED], capture_output=True, text=True, check=True,
                          env={k: v for k, v in __import__("os").environ.items() if k != KEEP_FREED_VARIABLE})
    stopped = json.loads(done.stdout.strip().splitlines()[-1])
    assert stopped["kept"] == [True, False]
    # As under glibc's defaults: the freed block is unmapped, so the second allocation faults its pages in again.
    assert stopped["faults"][1] > 256 * 2**20 // 4096 // 2


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(KEEP_FREED_VARIABLE, "0")
    memory._keep_once.cache_clear()
    try:
        assert memory.keep_freed_memory() is False
    finally:
        memory._keep_once.cache_clear()


class _Fake:
    def __init__(self):
        self.resident, self.released = 0.0, 0

    def read(self):
        return self.resident

    def release(self):
        self.released += 1
        return True


def _policy(monkeypatch, kept: bool = True):
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: kept)
    fake = _Fake()
    return FreedMemoryPolicy(growth=1.2, read_resident=fake.read, release=fake.release,
                             stop_if_short=lambda: False), fake


def test_the_heap_is_kept_until_it_grows_past_the_first_trained_evaluation(monkeypatch):
    policy, fake = _policy(monkeypatch)
    fake.resident = 1500.0
    assert policy.before_evaluation() is False  # zero-shot rungs: no size to compare with yet
    fake.resident = 4000.0
    policy.after_training()
    assert policy.baseline == 4000.0
    fake.resident = 4700.0
    assert policy.before_evaluation() is False
    policy.after_training()
    assert policy.baseline == 4000.0  # the first trained evaluation sets it, later ones do not move it
    fake.resident = 4900.0
    assert policy.before_evaluation() is True
    assert fake.released == 1 and policy.trims == 1


def test_without_kept_memory_every_evaluation_trims(monkeypatch):
    policy, fake = _policy(monkeypatch, kept=False)
    fake.resident = 10.0
    policy.after_training()
    assert [policy.before_evaluation() for _ in range(3)] == [True, True, True]
    assert fake.released == 3


def test_an_unreadable_resident_set_trims_every_time(monkeypatch):
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: True)
    released = []
    policy = FreedMemoryPolicy(read_resident=lambda: None, release=lambda: released.append(1) or True,
                              stop_if_short=lambda: False)
    policy.after_training()
    assert policy.before_evaluation() and policy.before_evaluation()
    assert len(released) == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")
def test_peak_resident_set_is_measured_from_the_last_reset():
    from autoprompt_search.training import peak_resident_mb, reset_peak_resident, resident_mb

    import mmap

    assert reset_peak_resident()
    start = resident_mb()
    size = 64 * 2**20
    block = mmap.mmap(-1, size)  # its own mapping, handed back to the system on close whatever malloc keeps
    for offset in range(0, size, 4096):
        block[offset] = 1
    block.close()
    peak = peak_resident_mb()
    assert peak >= start + 60
    assert reset_peak_resident()
    assert peak_resident_mb() < peak - 30  # the earlier peak is forgotten


def test_an_evaluation_records_the_resident_set(tiny_causal_folder, tmp_path):
    from autoprompt_search.search import PromptEvaluator
    from autoprompt_search.search.records import RESIDENT_MB
    from autoprompt_search.tasks import get_task

    from test_search import search_options, write_toy_lmbff

    data = write_toy_lmbff(tmp_path / "data", seeds=(13,))
    evaluator = PromptEvaluator(search_options(tiny_causal_folder, data, tmp_path / "out", seeds=(13,)).settings())
    state = evaluator.load_state()
    sst2 = get_task("sst2")
    candidate = {"template": sst2.template, "label_words": dict(sst2.label_words), "demonstrations": "off"}
    memory = evaluator.evaluate_with(state, candidate, 13, 2).extra[RESIDENT_MB]
    assert memory["end"] > 0
    if sys.platform.startswith("linux"):
        assert memory["peak"] >= memory["end"]


def test_the_reserve_is_a_tenth_of_the_machine_and_at_least_two_gib():
    assert memory.memory_reserve(total=8 << 30) == 2 << 30
    assert memory.memory_reserve(total=64 << 30) == (64 << 30) // 10
    assert memory.memory_reserve(total=0) == 2 << 30  # unknown total: the floor


_SHORT = """
import json
from autoprompt_search.training import memory
kept = memory.keep_freed_memory()
plenty = memory.stop_keeping_if_memory_short(read_available=lambda: 8 << 30, reserve=lambda: 2 << 30)
after_plenty = memory.keep_freed_memory()
short = memory.stop_keeping_if_memory_short(read_available=lambda: 1 << 30, reserve=lambda: 2 << 30)
after_short = memory.keep_freed_memory()
again = memory.stop_keeping_if_memory_short(read_available=lambda: 1 << 30, reserve=lambda: 2 << 30)
print(json.dumps([kept, plenty, after_plenty, short, after_short, again]))
"""


@glibc_only
def test_freed_memory_stops_being_kept_once_the_system_is_short_of_memory():
    done = subprocess.run([sys.executable, "-c", _SHORT], capture_output=True, text=True, check=True,
                          env={k: v for k, v in __import__("os").environ.items() if k != KEEP_FREED_VARIABLE})
    kept, plenty, after_plenty, short, after_short, again = json.loads(done.stdout.strip().splitlines()[-1])
    assert kept and not plenty and after_plenty  # room left: keeping goes on
    assert short and not after_short  # below the reserve: handed back for the rest of the process
    assert not again  # stopping happens once


def test_a_policy_short_of_memory_counts_the_stop_as_its_trim(monkeypatch):
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: True)
    fake, short = _Fake(), [True]
    policy = FreedMemoryPolicy(read_resident=fake.read, release=fake.release, stop_if_short=lambda: short[0])
    fake.resident = 4000.0
    policy.after_training()
    assert policy.before_evaluation() is True and policy.trims == 1
    assert fake.released == 0  # stopping hands the memory back itself
    short[0] = False
    assert policy.before_evaluation() is False  # within its growth bound, kept memory stays


def test_fine_tuning_checks_the_memory_left_after_every_step(monkeypatch, fresh_tiny_causal, toy_sentiment):
    from autoprompt_search.tasks import get_task
    from autoprompt_search.training import PromptClassifier, TrainConfig, trainer

    checks = []
    monkeypatch.setattr(trainer, "stop_keeping_if_memory_short", lambda: checks.append(1) or False)
    sst2 = get_task("SST-2")
    train, dev = toy_sentiment
    classifier = PromptClassifier.build(fresh_tiny_causal, sst2, sst2.template, sst2.label_words, max_length=48)
    classifier.fit(train, dev, TrainConfig(steps=3, lr=1e-2, max_length=48, seed=5, eval_every=3), progress=False)
    assert len(checks) == 3
