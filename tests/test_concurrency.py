"""Several searches on one output folder: failed evaluations as rows, claims that share the work, kill -9
while holding a claim, and the side files (stored configuration, caches) under concurrent writers.

Processes are forked from the test process (which has already imported everything), so each costs
milliseconds; the evaluations are `SyntheticEvaluator`'s, so the module runs in seconds.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from autoprompt_search.errors import UserError
from autoprompt_search.search import (
    CONFIG_MIRROR,
    ClaimSettings,
    Claims,
    Exhaustive,
    Job,
    Leaderboard,
    SuccessiveHalving,
    cached_json,
    candidate_id,
    remember_config,
    run_search,
    stored_config,
)
from synthetic import SyntheticEvaluator, write_version_1_database

FORK = multiprocessing.get_context("fork")
SEEDS = (1, 2, 3)
FAST = ClaimSettings(lease_s=1.0, heartbeat_s=0.1, poll_s=0.02)


def pool(n: int = 12) -> list[dict]:
    return [{"template": f"*cls**sent_0*_t{i}*mask*.*sep+*", "label_words": {"0": "no", "1": "yes"}}
            for i in range(n)]


def strategy() -> SuccessiveHalving:
    return SuccessiveHalving(min_steps=2, max_steps=6, seeds=SEEDS, eta=3)


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def calls(path: Path, event: str = "call") -> list[tuple]:
    return [(e["candidate_id"], e["seed"], e["steps"]) for e in read_log(path) if e["event"] == event]


def summary(board: Leaderboard, cfg: str) -> list[tuple]:
    return sorted((r.candidate_id, r.seed, r.budget, r.rung, r.dev_metric, r.test_metric, r.state)
                  for r in board.rows(cfg, include_failed=True))


def serial_rows(tmp_path: Path, **evaluator) -> list[tuple]:
    board = Leaderboard(tmp_path / "serial.sqlite")
    run_search(pool(), strategy(), SyntheticEvaluator(**evaluator), board, "cfg", progress=False)
    return summary(board, "cfg")


def join_all(processes) -> list[int]:
    for process in processes:
        process.join(timeout=300)
    return [process.exitcode for process in processes]


# ---------------------------------------------------------------------------------------------
# Failed evaluations are rows


def test_a_raising_candidate_becomes_a_fail_row_and_the_others_finish(tmp_path):
    log = tmp_path / "calls.jsonl"
    board = Leaderboard(tmp_path / "lb.sqlite")
    bad = pool()[4]
    evaluator = SyntheticEvaluator(call_log=str(log), fail_templates=("_t4*",))
    result = run_search(pool(), strategy(), evaluator, board, "cfg", progress=False)

    failures = board.failures("cfg")
    assert {f.candidate_id for f in failures} == {candidate_id(bad)}
    assert all(f.state == "FAIL" and "synthetic failure" in f.error and f.error.startswith("ValueError")
               for f in failures)
    assert [f.budget for f in failures] == [0] and result.n_failed == 1
    assert "traceback" in failures[0].extra
    # It left the race at rung 0; the rest ran the whole plan, as a search without it would.
    assert result.rungs[0].failed == {candidate_id(bad): failures[0].error}
    assert candidate_id(bad) not in result.rungs[0].scores
    assert all(candidate_id(bad) not in r.survivors for r in result.rungs)
    without = run_search([c for c in pool() if c != bad], strategy(), SyntheticEvaluator(),
                         Leaderboard(tmp_path / "without.sqlite"), "cfg", progress=False)
    assert [r.candidate_id for r in result.ranking] == [r.candidate_id for r in without.ranking]
    assert candidate_id(bad) not in {r.candidate_id for r in board.ranking(config_hash="cfg")}
    # The leaderboard shows it.
    table = board.to_table(config_hash="cfg")
    fail_lines = [line for line in table.splitlines() if line.startswith("FAIL")]
    assert len(fail_lines) == 1 and "_t4*" in fail_lines[0] and "synthetic failure" in fail_lines[0]

    # A rerun does not try it again ...
    again = run_search(pool(), strategy(), evaluator, board, "cfg", progress=False)
    assert again.n_evaluated == 0 and again.n_failed == 1 and len(calls(log, "fail")) == 1
    # ... unless asked: once fixed, the retried evaluation replaces the FAIL row and the race re-runs.
    fixed = run_search(pool(), strategy(), SyntheticEvaluator(call_log=str(log)), board, "cfg",
                       progress=False, retry_failed=True)
    assert fixed.n_failed == 0 and not board.failures("cfg")
    assert (candidate_id(bad), SEEDS[0], 0) in calls(log)
    assert summary(board, "cfg") == serial_rows(tmp_path)


def test_retry_failed_tries_a_still_failing_candidate_once(tmp_path):
    log = tmp_path / "calls.jsonl"
    board = Leaderboard(tmp_path / "lb.sqlite")
    evaluator = SyntheticEvaluator(call_log=str(log), fail_templates=("_t0*",))
    run_search(pool(3), Exhaustive(2, (1, 2)), evaluator, board, "cfg", progress=False)
    assert len(calls(log, "fail")) == 2
    result = run_search(pool(3), Exhaustive(2, (1, 2)), evaluator, board, "cfg", progress=False, retry_failed=True)
    assert len(calls(log, "fail")) == 4 and result.n_failed == 2 and result.n_evaluated == 2
    assert len(board.failures("cfg")) == 2 and len(board) == 6


def test_a_user_error_inside_an_evaluation_is_a_fail_row(tmp_path):
    board = Leaderboard(tmp_path / "lb.sqlite")
    evaluator = SyntheticEvaluator(fail_templates=("_t1*",), fail_with="UserError")
    result = run_search(pool(3), Exhaustive(0, (1,)), evaluator, board, "cfg", progress=False)
    assert [f.error.split(":")[0] for f in board.failures("cfg")] == ["UserError"]
    assert len(result.ranking) == 2


def test_a_search_whose_candidates_all_fail_ends_without_a_ranking(tmp_path):
    board = Leaderboard(tmp_path / "lb.sqlite")
    result = run_search(pool(4), strategy(), SyntheticEvaluator(fail_templates=("*cls*",)), board, "cfg",
                        progress=False)
    assert result.ranking == [] and result.best is None and result.n_failed == 4
    assert len(result.rungs) == 1 and "FAIL" in board.to_table(config_hash="cfg")


# ---------------------------------------------------------------------------------------------
# N processes on one folder share the work


def _search_worker(board_path: str, log: str, barrier, sleep_s: float) -> None:
    barrier.wait()
    run_search(pool(), strategy(), SyntheticEvaluator(sleep_s=sleep_s, call_log=log), Leaderboard(board_path),
               "cfg", progress=False, claim_settings=FAST)


def test_four_processes_compute_each_evaluation_once_and_match_the_serial_leaderboard(tmp_path):
    board_path, log = tmp_path / "lb.sqlite", tmp_path / "calls.jsonl"
    Leaderboard(board_path)
    barrier = FORK.Barrier(4)
    processes = [FORK.Process(target=_search_worker, args=(str(board_path), str(log), barrier, 0.02))
                 for _ in range(4)]
    for process in processes:
        process.start()
    assert join_all(processes) == [0] * 4

    done = calls(log)
    n_planned = sum(r.evaluations for r in strategy().plan(len(pool())))
    assert len(done) == len(set(done)) == n_planned, Counter(done).most_common(3)
    assert len({e["pid"] for e in read_log(log) if e["event"] == "call"}) >= 2, "the work was not shared"
    board = Leaderboard(board_path)
    assert summary(board, "cfg") == serial_rows(tmp_path)
    assert board._execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


# ---------------------------------------------------------------------------------------------
# kill -9 while holding a claim


def _hold_a_claim(board_path: str, log: str, lease_s: float) -> None:
    settings = ClaimSettings(lease_s=lease_s, heartbeat_s=0.1, poll_s=0.02)
    run_search(pool(), strategy(), SyntheticEvaluator(sleep_s=600, call_log=log), Leaderboard(board_path),
               "cfg", progress=False, claim_settings=settings)


@pytest.mark.parametrize("lease_s, check_local_pids", [(1.0, False), (600.0, True)],
                         ids=["after-the-lease", "dead-local-pid-at-once"])
def test_a_killed_process_holding_a_claim_does_not_block_the_next_run(tmp_path, lease_s, check_local_pids):
    """Its claim is taken over once its lease ends (no renewals from a dead process), or at once when the
    owner ran on this host and its process is gone (the 600 s lease would otherwise hold the test)."""
    board_path, log = tmp_path / "lb.sqlite", tmp_path / "calls.jsonl"
    board = Leaderboard(board_path)
    holder = FORK.Process(target=_hold_a_claim, args=(str(board_path), str(log), lease_s))
    holder.start()
    claimed = []
    while not claimed:  # the holder is inside its first (600 s) evaluation once its claim is stored
        assert holder.is_alive()
        claimed = board._execute("SELECT candidate_id, seed, budget, owner FROM claims").fetchall()
        time.sleep(0.02)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    assert holder.exitcode == -signal.SIGKILL and str(holder.pid) in claimed[0]["owner"]

    next_log = tmp_path / "next.jsonl"
    settings = ClaimSettings(lease_s=1.0, heartbeat_s=0.1, poll_s=0.02, check_local_pids=check_local_pids)
    result = run_search(pool(), strategy(), SyntheticEvaluator(call_log=str(next_log)), board, "cfg",
                        progress=False, claim_settings=settings)
    taken_over = (claimed[0]["candidate_id"], claimed[0]["seed"], claimed[0]["budget"])
    assert taken_over in calls(next_log)
    assert result.n_evaluated == sum(r.evaluations for r in strategy().plan(len(pool())))
    assert summary(board, "cfg") == serial_rows(tmp_path)


def test_a_live_claim_is_renewed_and_not_taken_over(tmp_path):
    board = Leaderboard(tmp_path / "lb.sqlite")
    job = Job(candidate_id(pool()[0]), pool()[0], 1, 0, 0)
    with Claims(board, "cfg", ClaimSettings(lease_s=0.5, heartbeat_s=0.05, poll_s=0.01)) as holder:
        assert holder.try_claim(job) == "claimed"
        first = board._execute("SELECT expires_at FROM claims").fetchone()[0]
        while board._execute("SELECT expires_at FROM claims").fetchone()[0] == first:
            time.sleep(0.01)
        other = Claims(board, "cfg", ClaimSettings(lease_s=0.5, heartbeat_s=0.05, poll_s=0.01))
        assert other.try_claim(job) == "busy"
    assert holder.held() == 0  # released on exit
    assert other.try_claim(job) == "claimed"


# ---------------------------------------------------------------------------------------------
# The stored configuration and the caches under concurrent writers


def _side_file_worker(folder: str, worker: int, n: int) -> None:
    folder = Path(folder)
    board = Leaderboard(folder / "leaderboard.sqlite")
    for i in range(n):
        remember_config(board, f"h{worker}-{i}", {"worker": worker, "i": i, "pad": "x" * 2000})
        cached_json(folder / "label_words.json", {"worker": worker, "i": i},
                    lambda: [{"label_words": {"0": "a" * 500}}] * 20)


def test_many_processes_updating_the_configuration_and_caches_leave_them_valid(tmp_path):
    """Before: a shared temporary name (search_config.tmp) gave FileNotFoundError on the rename and left
    invalid JSON, after which every search into the folder died with a JSONDecodeError."""
    Leaderboard(tmp_path / "leaderboard.sqlite")
    n_workers, n = 4, 25
    processes = [FORK.Process(target=_side_file_worker, args=(str(tmp_path), w, n)) for w in range(n_workers)]
    for process in processes:
        process.start()
    assert join_all(processes) == [0] * n_workers
    expected = {f"h{w}-{i}" for w in range(n_workers) for i in range(n)}
    mirror = json.loads((tmp_path / CONFIG_MIRROR).read_text(encoding="utf-8"))
    assert set(mirror) == expected
    board = Leaderboard(tmp_path / "leaderboard.sqlite")
    assert set(board.configs()) == expected and stored_config(board, "h2-7")["i"] == 7
    cache = json.loads((tmp_path / "label_words.json").read_text(encoding="utf-8"))
    assert set(cache) == {"key", "value"} and len(cache["value"]) == 20
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("content", [b'{"key": {"a": 1}, "value": [1, 2', b"", b"\xff\xfe garbage", b"[1, 2]"])
def test_an_unreadable_cache_file_is_recomputed_with_a_warning(tmp_path, content):
    path = tmp_path / "generated_templates.json"
    path.write_bytes(content)
    warnings: list[str] = []
    assert cached_json(path, {"a": 1}, lambda: ["fresh"], warn=warnings.append) == ["fresh"]
    assert len(warnings) == 1 and str(path) in warnings[0] and "again" in warnings[0]
    assert json.loads(path.read_text()) == {"key": {"a": 1}, "value": ["fresh"]}
    assert cached_json(path, {"a": 1}, lambda: pytest.fail("recomputed a valid cache"), warn=warnings.append) == ["fresh"]
    assert len(warnings) == 1


def test_a_corrupt_config_mirror_is_rewritten_from_the_database(tmp_path):
    board = Leaderboard(tmp_path / "leaderboard.sqlite")
    remember_config(board, "a", {"settings": {"task": "sst2"}})
    (tmp_path / CONFIG_MIRROR).write_text('{"a": {"settings": {"task": "sst2"}}}{"b"', encoding="utf-8")
    assert stored_config(board, "a") == {"settings": {"task": "sst2"}}  # read from the database
    remember_config(board, "b", {"settings": {"task": "mr"}})
    assert json.loads((tmp_path / CONFIG_MIRROR).read_text()) == {"a": {"settings": {"task": "sst2"}},
                                                                  "b": {"settings": {"task": "mr"}}}


def test_processes_opening_a_version_1_database_at_once_migrate_it_once(tmp_path):
    path = tmp_path / "lb.sqlite"
    write_version_1_database(path, pool(3))
    processes = [FORK.Process(target=Leaderboard, args=(str(path),)) for _ in range(4)]
    for process in processes:
        process.start()
    assert join_all(processes) == [0] * 4
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3
    assert [r.state for r in Leaderboard(path).rows()] == ["COMPLETE"] * 3


def test_newer_schema_version_is_a_one_line_error(tmp_path):
    path = tmp_path / "lb.sqlite"
    Leaderboard(path).close()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 7")
    connection.close()
    with pytest.raises(UserError) as caught:
        Leaderboard(path)
    message = str(caught.value)
    assert "\n" not in message and "lb.sqlite" in message and "7" in message and "newer" in message
