"""SQLite store of candidate evaluations: one row per (configuration, candidate, seed, budget).

The database lives in the search's output folder. It runs in WAL mode with a busy timeout, and
every write is its own short transaction, so several processes (joblib/Dask workers, or two
searches sharing an output folder) can record at once without losing rows. The unique key
(config_hash, candidate_id, seed, budget) makes a repeated evaluation a no-op, which is what lets
an interrupted search resume without redoing finished work.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from ..errors import UserError
from .records import (
    Evaluation,
    RankedCandidate,
    aggregate,
    canonical_json,
    candidate_id,
    describe_candidate,
    package_versions,
    rank_key,
)

DEFAULT_FILENAME = "leaderboard.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000
_LOCK_RETRIES = 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY,
    config_hash TEXT NOT NULL,
    candidate_id TEXT NOT NULL,
    candidate_json TEXT NOT NULL,
    seed INTEGER NOT NULL,
    budget INTEGER NOT NULL,
    rung INTEGER NOT NULL,
    dev_metric REAL,
    test_metric REAL,
    dev_metrics_json TEXT NOT NULL,
    test_metrics_json TEXT NOT NULL,
    extra_json TEXT NOT NULL,
    steps INTEGER NOT NULL,
    wall_time_s REAL NOT NULL,
    versions_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (config_hash, candidate_id, seed, budget)
);
CREATE INDEX IF NOT EXISTS evaluations_by_config ON evaluations (config_hash, budget);
"""

_COLUMNS = (
    "config_hash", "candidate_id", "candidate_json", "seed", "budget", "rung", "dev_metric",
    "test_metric", "dev_metrics_json", "test_metrics_json", "extra_json", "steps", "wall_time_s",
    "versions_json", "created_at",
)


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
    )


# ---------------------------------------------------------------------------------------------
# The store


class Leaderboard:
    """Evaluations of one or more searches, stored in an SQLite file.

    `path` is the database file, or an existing folder (the output folder) in which
    `leaderboard.sqlite` is used. The object is cheap and picklable: each process (and thread)
    opens its own connection on first use.
    """

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

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None and getattr(self._local, "pid", None) == os.getpid():
            connection.close()
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
        # Reading the schema first makes a non-SQLite file fail here with a clear error.
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise UserError(
                f"{self.path}: leaderboard schema version {version}; this program reads version "
                f"{SCHEMA_VERSION}. Use a new output folder or the matching program version."
            )
        if version == 0 and tables - {"evaluations"}:
            raise UserError(
                f"{self.path}: is an SQLite database with other tables ({', '.join(sorted(tables))}); "
                f"expected an autoprompt_search leaderboard or a new file"
            )
        check = connection.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")
        if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        if version == 0:
            connection.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        else:
            self._check_columns(connection)

    def _check_columns(self, connection: sqlite3.Connection) -> None:
        present = {row[1] for row in connection.execute("PRAGMA table_info(evaluations)")}
        missing = [name for name in _COLUMNS if name not in present]
        if missing:
            raise UserError(f"{self.path}: table 'evaluations' lacks columns {missing}; "
                            f"expected an autoprompt_search leaderboard")

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
    ) -> bool:
        """Store one evaluation in its own transaction. Returns False (and stores nothing) if
        this (config, candidate, seed, budget) is already stored."""
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
            datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        )
        placeholders = ", ".join("?" for _ in _COLUMNS)
        cursor = self._execute(
            f"INSERT OR IGNORE INTO evaluations ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
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
            versions=evaluation.versions,
        )

    # -- reading
    def get(self, candidate_id: str, seed: int, budget: int, config_hash: str) -> Evaluation | None:
        row = self._execute(
            "SELECT * FROM evaluations WHERE config_hash = ? AND candidate_id = ? AND seed = ? "
            "AND budget = ?",
            (config_hash, candidate_id, int(seed), int(budget)),
        ).fetchone()
        return None if row is None else _row_to_evaluation(row)

    def has(self, candidate_id: str, seed: int, budget: int, config_hash: str) -> bool:
        return self.get(candidate_id, seed, budget, config_hash) is not None

    def rows(self, config_hash: str | None = None) -> list[Evaluation]:
        """All evaluations (of one configuration if given), in the order they were recorded."""
        if config_hash is None:
            cursor = self._execute("SELECT * FROM evaluations ORDER BY id")
        else:
            cursor = self._execute(
                "SELECT * FROM evaluations WHERE config_hash = ? ORDER BY id", (config_hash,))
        return [_row_to_evaluation(row) for row in cursor.fetchall()]

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
        """Candidates best first by mean dev metric over seeds, ties broken by candidate id.

        With a budget, only evaluations at that budget count. Without one, each candidate is
        aggregated at the largest budget it reached, and candidates that reached a larger budget
        (survivors of successive halving) rank above those eliminated earlier. Without a
        config_hash, the most recently written configuration is used (averaging across
        configurations would mix incomparable runs).
        """
        config_hash = config_hash or self.latest_config_hash()
        if config_hash is None:
            return []
        by_key: dict[tuple[str, int], list[Evaluation]] = defaultdict(list)
        for evaluation in self.rows(config_hash):
            if budget is None or evaluation.budget == budget:
                by_key[(evaluation.candidate_id, evaluation.budget)].append(evaluation)
        top_budget: dict[str, int] = {}
        for cid, row_budget in by_key:
            top_budget[cid] = max(top_budget.get(cid, row_budget), row_budget)
        ranked = [aggregate(by_key[(cid, b)]) for cid, b in top_budget.items()]
        ranked.sort(key=lambda r: (-r.budget, *rank_key(r)))
        return ranked

    def to_table(self, budget: int | None = None, config_hash: str | None = None,
                 limit: int | None = None) -> str:
        """Plain-text ranking for the terminal."""
        ranked = self.ranking(budget=budget, config_hash=config_hash)[:limit]
        header = ("rank", "dev mean", "dev std", "seeds", "steps", "test mean", "id", "candidate")
        lines = [header]
        for position, entry in enumerate(ranked, start=1):
            lines.append((
                str(position),
                _format_metric(entry.mean_dev),
                _format_metric(entry.std_dev),
                str(entry.n_seeds),
                str(entry.budget),
                _format_metric(entry.mean_test),
                entry.candidate_id[:10],
                describe_candidate(entry.candidate),
            ))
        if len(lines) == 1:
            return f"(no evaluations in {self.path})"
        widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
        rendered = []
        for line in lines:
            cells = [cell.rjust(width) if i < 6 else cell.ljust(width)
                     for i, (cell, width) in enumerate(zip(line, widths))]
            rendered.append("  ".join(cells + [line[-1]]).rstrip())
        rendered.insert(1, "-" * max(len(r) for r in rendered))
        return "\n".join(rendered)


def _format_metric(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    return f"{value:.4f}"
