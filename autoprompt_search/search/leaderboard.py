"""SQLite store of candidate evaluations: one row per (configuration, candidate, seed, budget).

The database lives in the search's output folder. It runs in WAL mode with a busy timeout, and every write is its
own short transaction, so several processes (joblib/Dask workers, or two searches sharing an output folder) can
record at once without losing rows. The unique key (config_hash, candidate_id, seed, budget) makes a repeated
evaluation a no-op, which is what lets an interrupted search resume without redoing finished work. A failed
evaluation is a row too (state FAIL, with its error); a later success replaces it, nothing replaces a success. The
same file holds each search configuration with its data fingerprint (`configs`) and the claims of running searches
(`claims`, see `claims.py`); `schema.py` owns the tables and their migration.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import UserError
from .schema import COMPLETE, EVALUATION_COLUMNS, FAIL, SCHEMA_VERSION, check_schema, check_version, create_or_migrate
from .records import (
    Evaluation,
    RankedCandidate,
    aggregate,
    canonical_json,
    candidate_id,
    package_versions,
    rank_key,
)
from .table import format_table

DEFAULT_FILENAME = "leaderboard.sqlite"
BUSY_TIMEOUT_MS = 60_000
_LOCK_RETRIES = 20
_COLUMNS = EVALUATION_COLUMNS


# ---------------------------------------------------------------------------------------------
# Rows


def _nullable_float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _loads(text: str) -> Any:
    return json.loads(text)


def _dumps(value: Any) -> str:
    # Metric dicts may legitimately hold NaN (undefined MCC/Pearson); Python's json round-trips it.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _row_to_evaluation(row: sqlite3.Row) -> Evaluation:
    dev = row["dev_metric"]
    return Evaluation(
        config_hash=row["config_hash"],
        candidate_id=row["candidate_id"],
        candidate=_loads(row["candidate_json"]),
        seed=row["seed"],
        budget=row["budget"],
        rung=row["rung"],
        dev_metric=math.nan if dev is None else dev,
        test_metric=row["test_metric"],
        dev_metrics=_loads(row["dev_metrics_json"]),
        test_metrics=_loads(row["test_metrics_json"]),
        extra=_loads(row["extra_json"]),
        steps=row["steps"],
        wall_time_s=row["wall_time_s"],
        versions=_loads(row["versions_json"]),
        created_at=row["created_at"],
        state=row["state"],
        error=row["error"],
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------------------
# The store


class Leaderboard:
    """Evaluations of one or more searches, stored in an SQLite file.

    `path` is the database file, or an existing folder (the output folder) in which `leaderboard.sqlite` is
    used. The object is cheap and picklable: each process (and thread) opens its own connection on first use."""

    def __init__(self, path: str | os.PathLike[str]):
        path = Path(path)
        self.path = path / DEFAULT_FILENAME if path.is_dir() else path
        self._local = threading.local()
        self._connection()  # fail early on a corrupt or foreign file

    # -- pickling: ship the path only; connections never cross process boundaries
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Leaderboard({str(self.path)!r})"

    # -- connection management
    def _connection(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.connection = self._open()
            local.pid = os.getpid()
        return local.connection

    def close_thread_connection(self) -> None:
        """Close the connection of the calling thread only (a helper thread that is ending)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and getattr(self._local, "pid", None) == os.getpid():
            connection.close()
            del self._local.connection, self._local.pid

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file, not waiting for other processes, so that a copy
        of the .sqlite file alone holds every row written so far."""
        self._execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self.close_thread_connection()
        self._local = threading.local()

    def _corrupt(self, error: Exception) -> UserError:
        return UserError(
            f"{self.path}: cannot be used as a leaderboard ({error}); expected an SQLite database "
            f"written by autoprompt_search, or a path where a new one can be created"
        )

    def _open(self) -> sqlite3.Connection:
        if self.path.exists() and self.path.is_dir():
            raise UserError(f"{self.path}: is a folder; expected an SQLite leaderboard file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                         isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise self._corrupt(error) from error
        connection.row_factory = sqlite3.Row
        try:
            self._with_lock_retries(lambda: self._prepare(connection))
        except sqlite3.DatabaseError as error:
            connection.close()
            raise self._corrupt(error) from error
        except UserError:
            connection.close()
            raise
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Reading the schema first makes a non-SQLite file (or a newer one) fail here with a clear error.
        version = check_version(connection, self.path)
        check = connection.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")
        if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        if version != SCHEMA_VERSION:
            create_or_migrate(connection, self.path)
        check_schema(connection, self.path)

    @staticmethod
    def _with_lock_retries(action):
        """Run action, retrying if another process holds a lock longer than the busy timeout
        (or in the few places, like switching to WAL, where SQLite skips the busy handler)."""
        for attempt in range(_LOCK_RETRIES):
            try:
                return action()
            except sqlite3.OperationalError as error:
                message = str(error).lower()
                if ("locked" not in message and "busy" not in message) or attempt == _LOCK_RETRIES - 1:
                    raise
                time.sleep(min(0.05 * 2 ** attempt, 2.0))
        raise AssertionError("unreachable")

    def _execute(self, sql: str, parameters: tuple | dict = ()) -> sqlite3.Cursor:
        connection = self._connection()
        try:
            return self._with_lock_retries(lambda: connection.execute(sql, parameters))
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as error:
            raise self._corrupt(error) from error

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the write lock is taken at once, so what is read
        inside it cannot change before the commit). Other processes wait up to the busy timeout."""
        connection = self._connection()
        self._with_lock_retries(lambda: connection.execute("BEGIN IMMEDIATE"))
        try:
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    # -- writing
    def record(
        self,
        *,
        config_hash: str,
        candidate: Mapping[str, Any],
        seed: int,
        budget: int,
        rung: int,
        dev_metric: float,
        test_metric: float | None = None,
        dev_metrics: Mapping[str, Any] | None = None,
        test_metrics: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        steps: int | None = None,
        wall_time_s: float = 0.0,
        versions: Mapping[str, str] | None = None,
        state: str = COMPLETE,
        error: str | None = None,
    ) -> bool:
        """Store one evaluation in its own transaction. Returns False (and stores nothing) if this
        (config, candidate, seed, budget) is already stored as COMPLETE; a stored FAIL is replaced."""
        if state not in (COMPLETE, FAIL):
            raise ValueError(f"state: expected {COMPLETE!r} or {FAIL!r}, got {state!r}")
        candidate_json = canonical_json(dict(candidate))
        values = (
            config_hash,
            candidate_id(candidate),
            candidate_json,
            int(seed),
            int(budget),
            int(rung),
            _nullable_float(dev_metric),
            _nullable_float(test_metric),
            _dumps(dict(dev_metrics or {})),
            _dumps(dict(test_metrics or {})),
            _dumps(dict(extra or {})),
            int(budget if steps is None else steps),
            float(wall_time_s),
            _dumps(dict(versions if versions is not None else package_versions())),
            _now(),
            state,
            None if error is None else str(error),
        )
        placeholders = ", ".join("?" for _ in _COLUMNS)
        updates = ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS[3:])
        cursor = self._execute(
            f"INSERT INTO evaluations ({', '.join(_COLUMNS)}) VALUES ({placeholders}) "
            f"ON CONFLICT (config_hash, candidate_id, seed, budget) DO UPDATE SET {updates} "
            f"WHERE evaluations.state = '{FAIL}'",
            values,
        )
        return cursor.rowcount == 1

    def record_evaluation(self, evaluation: Evaluation) -> bool:
        return self.record(
            config_hash=evaluation.config_hash, candidate=evaluation.candidate,
            seed=evaluation.seed, budget=evaluation.budget, rung=evaluation.rung,
            dev_metric=evaluation.dev_metric, test_metric=evaluation.test_metric,
            dev_metrics=evaluation.dev_metrics, test_metrics=evaluation.test_metrics,
            extra=evaluation.extra, steps=evaluation.steps, wall_time_s=evaluation.wall_time_s,
            versions=evaluation.versions, state=evaluation.state, error=evaluation.error,
        )

    # -- reading
    def get(self, candidate_id: str, seed: int, budget: int, config_hash: str, *,
            include_failed: bool = False) -> Evaluation | None:
        """The stored evaluation; a FAIL row only with `include_failed`."""
        row = self._execute("SELECT * FROM evaluations WHERE config_hash = ? AND candidate_id = ? AND seed = ? "
                            "AND budget = ?", (config_hash, candidate_id, int(seed), int(budget))).fetchone()
        if row is None or (row["state"] != COMPLETE and not include_failed):
            return None
        return _row_to_evaluation(row)

    def has(self, candidate_id: str, seed: int, budget: int, config_hash: str) -> bool:
        return self.get(candidate_id, seed, budget, config_hash) is not None

    def rows(self, config_hash: str | None = None, *, include_failed: bool = False) -> list[Evaluation]:
        """Finished evaluations (of one configuration if given; FAIL rows too with `include_failed`),
        in the order they were recorded."""
        where, parameters = [], []
        if config_hash is not None:
            where.append("config_hash = ?")
            parameters.append(config_hash)
        if not include_failed:
            where.append(f"state = '{COMPLETE}'")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        cursor = self._execute(f"SELECT * FROM evaluations{clause} ORDER BY id", tuple(parameters))
        return [_row_to_evaluation(row) for row in cursor.fetchall()]

    def failures(self, config_hash: str | None = None) -> list[Evaluation]:
        """The FAIL rows (of one configuration if given), in the order they were recorded."""
        return [row for row in self.rows(config_hash, include_failed=True) if row.failed]

    def __len__(self) -> int:
        return self._execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]

    def config_hashes(self) -> list[str]:
        """Configurations stored, most recently written last."""
        cursor = self._execute(
            "SELECT config_hash FROM evaluations GROUP BY config_hash ORDER BY MAX(id)")
        return [row[0] for row in cursor.fetchall()]

    def latest_config_hash(self) -> str | None:
        hashes = self.config_hashes()
        return hashes[-1] if hashes else None

    def ranking(self, budget: int | None = None, config_hash: str | None = None) -> list[RankedCandidate]:
        """Candidates best first by mean dev metric over seeds, ties broken by the mean continuous dev score
        (rows without one rank below rows with one), then by candidate id.

        With a budget, only evaluations at that budget count. Without one, each candidate is aggregated at
        the largest budget it reached, and candidates that reached a larger budget (survivors of successive
        halving) rank above those eliminated earlier. Without a config_hash, the most recently written
        configuration is used (averaging across configurations would mix incomparable runs)."""
        config_hash = config_hash or self.latest_config_hash()
        if config_hash is None:
            return []
        by_key: dict[tuple[str, int], list[Evaluation]] = defaultdict(list)
        failed: set[tuple[str, int]] = set()
        for evaluation in self.rows(config_hash, include_failed=True):
            if budget is None or evaluation.budget == budget:
                key = (evaluation.candidate_id, evaluation.budget)
                if evaluation.failed:
                    failed.add(key)  # a candidate failed at a budget left the race there
                else:
                    by_key[key].append(evaluation)
        for key in failed:
            by_key.pop(key, None)
        top_budget: dict[str, int] = {}
        for cid, row_budget in by_key:
            top_budget[cid] = max(top_budget.get(cid, row_budget), row_budget)
        ranked = [aggregate(by_key[(cid, b)]) for cid, b in top_budget.items()]
        ranked.sort(key=lambda r: (-r.budget, *rank_key(r)))
        return ranked

    def to_table(self, budget: int | None = None, config_hash: str | None = None,
                 limit: int | None = None) -> str:
        """Plain-text ranking for the terminal; failed evaluations follow it as FAIL lines."""
        config_hash = config_hash or self.latest_config_hash()
        ranked = self.ranking(budget=budget, config_hash=config_hash)[:limit]
        failures = [] if config_hash is None else [
            f for f in self.failures(config_hash) if budget is None or f.budget == budget]
        return format_table(ranked, failures, self.path)

    # -- configurations
    def save_config(self, config_hash: str, config: Mapping[str, Any],
                    fingerprint: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Store a search configuration (kept if already stored) and, if none is stored yet, its data
        fingerprint. Returns the fingerprint stored before this call (None if there was none)."""
        with self.transaction() as connection:
            return self.save_config_in(connection, config_hash, config, fingerprint)

    def save_config_in(self, connection: sqlite3.Connection, config_hash: str, config: Mapping[str, Any],
                       fingerprint: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """`save_config` inside a transaction the caller holds."""
        row = connection.execute("SELECT fingerprint_json FROM configs WHERE config_hash = ?",
                                 (config_hash,)).fetchone()
        before = None if row is None or row[0] is None else _loads(row[0])
        fingerprint_json = None if fingerprint is None else _dumps(dict(fingerprint))
        if row is None:
            connection.execute("INSERT INTO configs (config_hash, config_json, fingerprint_json, created_at) "
                               "VALUES (?, ?, ?, ?)", (config_hash, _dumps(dict(config)), fingerprint_json, _now()))
        elif before is None and fingerprint_json is not None:
            connection.execute("UPDATE configs SET fingerprint_json = ? WHERE config_hash = ?",
                               (fingerprint_json, config_hash))
        return before

    def config(self, config_hash: str) -> dict[str, Any] | None:
        row = self._execute("SELECT config_json FROM configs WHERE config_hash = ?", (config_hash,)).fetchone()
        return None if row is None else _loads(row[0])

    def fingerprint(self, config_hash: str) -> dict[str, Any] | None:
        row = self._execute("SELECT fingerprint_json FROM configs WHERE config_hash = ?",
                            (config_hash,)).fetchone()
        return None if row is None or row[0] is None else _loads(row[0])

    def configs(self) -> dict[str, dict[str, Any]]:
        """Every stored configuration by hash, oldest first."""
        cursor = self._execute("SELECT config_hash, config_json FROM configs ORDER BY rowid")
        return {row[0]: _loads(row[1]) for row in cursor.fetchall()}
