import math
import multiprocessing
import pickle
import sqlite3
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoprompt_search.errors import UserError
from autoprompt_search.search import DEFAULT_FILENAME, SCHEMA_VERSION, Leaderboard, candidate_id, config_hash
from autoprompt_search.search import plot_leaderboard, rung_curves
from synthetic import write_version_1_database


def make_candidate(i: int) -> dict:
    return {"template": f"*cls**sent_0*_It_was{i}*mask*.*sep+*", "label_words": {"0": "bad", "1": "good"},
            "demonstrations": "none"}


def record(board: Leaderboard, i: int, seed: int, dev: float, *, budget: int = 10, rung: int = 0,
           test: float | None = None, cfg: str = "cfg") -> bool:
    return board.record(config_hash=cfg, candidate=make_candidate(i), seed=seed, budget=budget,
                        rung=rung, dev_metric=dev, test_metric=test)


def test_record_then_get_round_trips_every_field(tmp_path):
    board = Leaderboard(tmp_path)
    assert board.path == tmp_path / DEFAULT_FILENAME
    candidate = make_candidate(1)
    cid = candidate_id(candidate)
    assert not board.has(cid, 13, 10, "cfg")
    stored = board.record(config_hash="cfg", candidate=candidate, seed=13, budget=10, rung=2,
                          dev_metric=0.75, test_metric=0.5, dev_metrics={"acc": 0.75, "f1": 0.7},
                          test_metrics={"acc": 0.5}, extra={"note": "x"}, steps=8, wall_time_s=1.5)
    assert stored
    got = board.get(cid, 13, 10, "cfg")
    assert got is not None and board.has(cid, 13, 10, "cfg")
    assert (got.candidate, got.seed, got.budget, got.rung, got.steps) == (candidate, 13, 10, 2, 8)
    assert (got.dev_metric, got.test_metric, got.wall_time_s) == (0.75, 0.5, 1.5)
    assert got.dev_metrics == {"acc": 0.75, "f1": 0.7} and got.test_metrics == {"acc": 0.5}
    assert got.extra == {"note": "x"}
    assert "python" in got.versions and got.created_at
    # Other seed, budget or configuration: not the same evaluation.
    assert board.get(cid, 21, 10, "cfg") is None
    assert board.get(cid, 13, 30, "cfg") is None
    assert board.get(cid, 13, 10, "other") is None


def test_missing_test_metric_and_nan_dev_metric_survive_storage(tmp_path):
    board = Leaderboard(tmp_path / "lb.sqlite")
    record(board, 1, 13, math.nan)
    got = board.get(candidate_id(make_candidate(1)), 13, 10, "cfg")
    assert math.isnan(got.dev_metric) and got.test_metric is None


def test_repeat_of_same_key_is_stored_once_and_keeps_first_value(tmp_path):
    board = Leaderboard(tmp_path)
    assert record(board, 1, 13, 0.6)
    assert not record(board, 1, 13, 0.9)
    assert len(board) == 1
    assert board.rows()[0].dev_metric == 0.6


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.integers() | st.text(max_size=5),
                       min_size=1, max_size=6))
@settings(max_examples=50, deadline=None)
def test_candidate_id_ignores_key_order(candidate):
    reordered = dict(reversed(list(candidate.items())))
    assert candidate_id(reordered) == candidate_id(candidate)
    assert config_hash(candidate) == candidate_id(candidate)


def test_candidate_id_changes_with_content():
    assert candidate_id(make_candidate(1)) != candidate_id(make_candidate(2))


def test_non_json_candidate_is_a_user_error(tmp_path):
    board = Leaderboard(tmp_path)
    with pytest.raises(UserError, match="JSON"):
        board.record(config_hash="c", candidate={"template": object()}, seed=1, budget=0, rung=0,
                     dev_metric=0.5)


def test_ranking_aggregates_seeds_and_sorts_best_first(tmp_path):
    board = Leaderboard(tmp_path)
    devs = {1: [0.6, 0.8], 2: [0.9, 0.9], 3: [0.5, 0.7]}
    for i, values in devs.items():
        for seed, dev in zip((13, 21), values):
            record(board, i, seed, dev, test=dev - 0.1)
    ranking = board.ranking()
    assert [r.candidate for r in ranking] == [make_candidate(2), make_candidate(1), make_candidate(3)]
    first, second = ranking[0], ranking[1]
    assert second.mean_dev == pytest.approx(0.7)
    assert second.std_dev == pytest.approx(statistics.pstdev([0.6, 0.8]))
    assert second.n_seeds == 2 and second.mean_test == pytest.approx(0.6)
    assert first.std_dev == 0.0
    candidate, mean_dev, std_dev, n_seeds, mean_test = second
    assert (candidate, n_seeds) == (make_candidate(1), 2)


def test_ranking_ties_are_broken_by_candidate_id(tmp_path):
    board = Leaderboard(tmp_path)
    for i in range(6):
        record(board, i, 13, 0.5)
    ids = [r.candidate_id for r in board.ranking()]
    assert ids == sorted(ids)


def test_ranking_puts_nan_last(tmp_path):
    board = Leaderboard(tmp_path)
    record(board, 1, 13, math.nan)
    record(board, 2, 13, 0.1)
    assert [r.candidate for r in board.ranking()] == [make_candidate(2), make_candidate(1)]


def test_ranking_by_budget_and_survivors_first(tmp_path):
    board = Leaderboard(tmp_path)
    # Candidate 1 was eliminated at budget 0 with a high zero-shot score; candidate 2 survived.
    record(board, 1, 13, 0.95, budget=0)
    record(board, 2, 13, 0.60, budget=0)
    record(board, 2, 13, 0.70, budget=30, rung=1)
    record(board, 2, 21, 0.80, budget=30, rung=1)
    assert [r.candidate for r in board.ranking()] == [make_candidate(2), make_candidate(1)]
    assert board.ranking()[0].budget == 30 and board.ranking()[0].n_seeds == 2
    at_zero = board.ranking(budget=0)
    assert [r.candidate for r in at_zero] == [make_candidate(1), make_candidate(2)]
    assert [r.candidate for r in board.ranking(budget=30)] == [make_candidate(2)]


def test_ranking_defaults_to_latest_configuration_and_never_mixes_them(tmp_path):
    board = Leaderboard(tmp_path)
    record(board, 1, 13, 0.2, cfg="old")
    record(board, 1, 21, 0.4, cfg="new")
    assert board.config_hashes() == ["old", "new"]
    assert board.ranking()[0].mean_dev == pytest.approx(0.4) and board.ranking()[0].n_seeds == 1
    assert board.ranking(config_hash="old")[0].mean_dev == pytest.approx(0.2)
    assert len(board.rows("old")) == 1 and len(board.rows()) == 2


def test_to_table_lists_candidates_in_rank_order(tmp_path):
    board = Leaderboard(tmp_path)
    assert "no evaluations" in board.to_table()
    record(board, 1, 13, 0.3)
    record(board, 2, 13, 0.9)
    table = board.to_table()
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["rank", "dev"]
    assert "It_was2" in lines[2] and "It_was1" in lines[3]
    assert "0.9000" in lines[2] and "0:bad 1:good" in lines[2]


def test_leaderboard_pickles_to_a_working_copy(tmp_path):
    board = Leaderboard(tmp_path)
    record(board, 1, 13, 0.5)
    clone = pickle.loads(pickle.dumps(board))
    record(clone, 2, 13, 0.5)
    assert len(board) == 2


def _write_many(path: str, worker: int, n_rows: int, n_shared: int) -> None:
    board = Leaderboard(path)
    for i in range(n_rows):
        record(board, 1000 * worker + i, seed=worker, dev=i / n_rows)
    # Every worker also writes the same shared rows: each must be stored exactly once.
    for i in range(n_shared):
        record(board, i, seed=-1, dev=float(worker))


def test_concurrent_processes_lose_nothing(tmp_path):
    path = str(tmp_path / DEFAULT_FILENAME)
    Leaderboard(path)
    n_workers, n_rows, n_shared = 4, 60, 15
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_write_many, args=(path, w, n_rows, n_shared))
                 for w in range(n_workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * n_workers
    rows = Leaderboard(path).rows()
    assert len(rows) == n_workers * n_rows + n_shared
    keys = {(r.candidate_id, r.seed) for r in rows}
    assert len(keys) == len(rows)
    for worker in range(n_workers):
        assert sum(r.seed == worker for r in rows) == n_rows


def test_non_sqlite_file_is_a_user_error_naming_the_file(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(UserError, match="results.sqlite.*SQLite"):
        Leaderboard(path)


def test_damaged_leaderboard_is_a_user_error(tmp_path):
    path = tmp_path / "lb.sqlite"
    board = Leaderboard(path)
    for i in range(200):
        record(board, i, 13, 0.5)
    board.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 8192
    data[4096:8192] = b"\xff" * 4096  # overwrite a b-tree page
    path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"lb.sqlite{suffix}").unlink(missing_ok=True)
    with pytest.raises(UserError, match="lb.sqlite"):
        board = Leaderboard(path)
        board.rows()


def test_foreign_sqlite_database_is_a_user_error(tmp_path):
    path = tmp_path / "other.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE people (name TEXT)")
    connection.commit()
    connection.close()
    with pytest.raises(UserError, match="other.db.*people"):
        Leaderboard(path)


def test_plot_writes_a_png_with_one_curve_per_candidate(tmp_path):
    board = Leaderboard(tmp_path)
    for i in range(4):
        record(board, i, 13, 0.1 * i, budget=0, rung=0)
    for i in (2, 3):
        record(board, i, 13, 0.5 + 0.1 * i, budget=10, rung=1)
    curves, steps = rung_curves(board.rows())
    assert steps == {0: 0, 1: 10}
    assert sorted(len(c.points) for c in curves) == [1, 1, 2, 2]
    output = plot_leaderboard(board, tmp_path / "plots" / "search.png")
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_empty_leaderboard_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no evaluations"):
        plot_leaderboard(Leaderboard(tmp_path), tmp_path / "x.png")


# ---------------------------------------------------------------------------------------------
# Failed rows, configurations, schema versions


def test_a_fail_row_is_replaced_by_a_success_but_never_replaces_one(tmp_path):
    board = Leaderboard(tmp_path)
    cid = candidate_id(make_candidate(1))
    assert board.record(config_hash="cfg", candidate=make_candidate(1), seed=13, budget=10, rung=0,
                        dev_metric=math.nan, state="FAIL", error="ValueError: boom")
    assert board.get(cid, 13, 10, "cfg") is None and not board.has(cid, 13, 10, "cfg")
    failed = board.get(cid, 13, 10, "cfg", include_failed=True)
    assert failed.failed and failed.error == "ValueError: boom" and math.isnan(failed.dev_metric)
    assert board.rows() == [] and [f.error for f in board.failures()] == ["ValueError: boom"]
    assert record(board, 1, 13, 0.7)
    assert board.get(cid, 13, 10, "cfg").dev_metric == 0.7 and board.failures() == [] and len(board) == 1
    assert not board.record(config_hash="cfg", candidate=make_candidate(1), seed=13, budget=10, rung=0,
                            dev_metric=math.nan, state="FAIL", error="late failure")
    assert board.get(cid, 13, 10, "cfg").state == "COMPLETE"


def test_ranking_leaves_out_a_budget_where_the_candidate_failed(tmp_path):
    board = Leaderboard(tmp_path)
    record(board, 1, 13, 0.6, budget=0)
    record(board, 1, 13, 0.9, budget=10, rung=1)
    board.record(config_hash="cfg", candidate=make_candidate(1), seed=21, budget=10, rung=1,
                 dev_metric=math.nan, state="FAIL", error="RuntimeError: bad")
    record(board, 2, 13, 0.5, budget=0)
    ranking = board.ranking()
    assert [(r.candidate, r.budget) for r in ranking] == [(make_candidate(1), 0), (make_candidate(2), 0)]
    table = board.to_table().splitlines()
    assert table[0].split()[:2] == ["rank", "dev"]
    assert table[-1].startswith("FAIL") and "seed 21" in table[-1] and "RuntimeError: bad" in table[-1]
    assert not any(line.startswith("FAIL") for line in board.to_table(budget=0).splitlines())


def test_configurations_and_fingerprints_are_stored_once(tmp_path):
    board = Leaderboard(tmp_path)
    assert board.config("h") is None
    assert board.save_config("h", {"k": 16}) is None
    assert board.save_config("h", {"k": 32}, {"sha256": "x"}) is None  # first fingerprint is stored
    assert board.save_config("h", {"k": 64}, {"sha256": "y"}) == {"sha256": "x"}
    assert board.config("h") == {"k": 16} and board.fingerprint("h") == {"sha256": "x"}
    assert board.configs() == {"h": {"k": 16}}


def test_a_version_1_database_is_migrated_and_its_rows_reused(tmp_path):
    path = tmp_path / "old.sqlite"
    ids = write_version_1_database(path, [make_candidate(i) for i in range(3)])
    board = Leaderboard(path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert [(r.candidate_id, r.state, r.error) for r in board.rows()] == [(i, "COMPLETE", None) for i in ids]
    assert board.ranking()[0].candidate_id == ids[-1]
    assert not record(board, 0, 13, 0.99)  # already stored: resume reuses it
    assert record(board, 7, 13, 0.5) and board.save_config("cfg", {"k": 16}) is None


def test_older_and_foreign_schema_versions_are_one_line_errors(tmp_path):
    path = tmp_path / "lb.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = -1")
    connection.close()
    with pytest.raises(UserError, match="older") as caught:
        Leaderboard(path)
    assert "\n" not in str(caught.value)
    broken = tmp_path / "broken.sqlite"
    connection = sqlite3.connect(broken)
    connection.executescript("CREATE TABLE evaluations (id INTEGER PRIMARY KEY); PRAGMA user_version = 1;")
    connection.close()
    with pytest.raises(UserError, match="lacks columns"):
        Leaderboard(broken)
