"""The leaderboard's SQLite schema: its tables, the version check on open and the migration of older files.

Version 1 had only `evaluations`. Version 2 adds the evaluation's state (COMPLETE or FAIL) and error, the
`claims` table (which process computes which evaluation, until when) and the `configs` table (every search
configuration and the fingerprint of the data it ran on). Version 3 adds `predictions`: per evaluation and
split, the gold labels and the per-example class scores, from which an ensemble of candidates is scored
without training again. An older file is migrated in place when it is opened, inside one write
transaction, so an old output folder resumes (its rows have no predictions); a newer file is refused with
one line.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import UserError

SCHEMA_VERSION = 3
COMPLETE = "COMPLETE"
FAIL = "FAIL"

_EVALUATIONS = """
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
    state TEXT NOT NULL DEFAULT 'COMPLETE',
    error TEXT,
    UNIQUE (config_hash, candidate_id, seed, budget)
);
CREATE INDEX IF NOT EXISTS evaluations_by_config ON evaluations (config_hash, budget)
"""

# Added by version 2 (also part of a new file).
_VERSION_2_TABLES = """
CREATE TABLE IF NOT EXISTS claims (
    config_hash TEXT NOT NULL,
    candidate_id TEXT NOT NULL,
    seed INTEGER NOT NULL,
    budget INTEGER NOT NULL,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL,
    claimed_at TEXT NOT NULL,
    PRIMARY KEY (config_hash, candidate_id, seed, budget)
);
CREATE INDEX IF NOT EXISTS claims_by_owner ON claims (owner);
CREATE TABLE IF NOT EXISTS configs (
    config_hash TEXT PRIMARY KEY,
    config_json TEXT NOT NULL,
    fingerprint_json TEXT,
    created_at TEXT NOT NULL
)
"""

# Added by version 3 (also part of a new file). One row per evaluation and split ("dev", "test"):
# labels_json the gold labels, scores_json the [N, C] log-space class scores, in example order.
_VERSION_3_TABLES = """
CREATE TABLE IF NOT EXISTS predictions (
    config_hash TEXT NOT NULL,
    candidate_id TEXT NOT NULL,
    seed INTEGER NOT NULL,
    budget INTEGER NOT NULL,
    split TEXT NOT NULL,
    labels_json TEXT NOT NULL,
    scores_json TEXT NOT NULL,
    PRIMARY KEY (config_hash, candidate_id, seed, budget, split)
)
"""

_MIGRATE_1_TO_2 = """
ALTER TABLE evaluations ADD COLUMN state TEXT NOT NULL DEFAULT 'COMPLETE';
ALTER TABLE evaluations ADD COLUMN error TEXT
"""

EVALUATION_COLUMNS = (
    "config_hash", "candidate_id", "candidate_json", "seed", "budget", "rung", "dev_metric",
    "test_metric", "dev_metrics_json", "test_metrics_json", "extra_json", "steps", "wall_time_s",
    "versions_json", "created_at", "state", "error",
)
_VERSION_1_COLUMNS = EVALUATION_COLUMNS[:-2]
_OWN_TABLES = {"evaluations", "claims", "configs", "predictions"}


def _statements(script: str):
    return [statement for statement in script.split(";") if statement.strip()]


def _columns(connection: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}


def _tables(connection: sqlite3.Connection) -> set[str]:
    return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _version(connection: sqlite3.Connection) -> int:
    return connection.execute("PRAGMA user_version").fetchone()[0]


def check_version(connection: sqlite3.Connection, path: Path) -> int:
    """The file's schema version, or a one-line UserError when this program cannot use it."""
    version = _version(connection)
    if version > SCHEMA_VERSION:
        raise UserError(f"{path}: leaderboard schema version {version} is newer than this program's "
                        f"({SCHEMA_VERSION}); upgrade autoprompt_search or use a new output folder")
    if version < 0:
        raise UserError(f"{path}: leaderboard schema version {version} is older than any this program "
                        f"reads (1..{SCHEMA_VERSION}); use a new output folder")
    tables = _tables(connection)
    if version == 0 and tables - {"evaluations"}:
        raise UserError(f"{path}: is an SQLite database with other tables ({', '.join(sorted(tables))}); "
                        f"expected an autoprompt_search leaderboard or a new file")
    return version


def _check_columns(connection: sqlite3.Connection, path: Path, expected) -> None:
    missing = [name for name in expected if name not in _columns(connection, "evaluations")]
    if missing:
        raise UserError(f"{path}: table 'evaluations' lacks columns {missing}; "
                        f"expected an autoprompt_search leaderboard")


def create_or_migrate(connection: sqlite3.Connection, path: Path) -> None:
    """Bring the file to SCHEMA_VERSION: create the tables in a new file, migrate an older one.

    Runs in one BEGIN IMMEDIATE transaction and re-reads the version inside it, so when several
    processes open the same old file at once exactly one migrates it and the others see the result.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = check_version(connection, path)
        if version == SCHEMA_VERSION:
            connection.execute("COMMIT")
            return
        if version == 0 and "evaluations" not in _tables(connection):
            for statement in _statements(_EVALUATIONS) + _statements(_VERSION_2_TABLES):
                connection.execute(statement)
        elif version <= 1:  # version 1 (or an unversioned version-1 table)
            _check_columns(connection, path, _VERSION_1_COLUMNS)
            for statement in _statements(_MIGRATE_1_TO_2) + _statements(_VERSION_2_TABLES):
                connection.execute(statement)
        for statement in _statements(_VERSION_3_TABLES):
            connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def check_schema(connection: sqlite3.Connection, path: Path) -> None:
    """A file already at SCHEMA_VERSION still has every table and column this program uses."""
    _check_columns(connection, path, EVALUATION_COLUMNS)
    missing = sorted(_OWN_TABLES - _tables(connection))
    if missing:
        raise UserError(f"{path}: leaderboard lacks tables {missing}; expected an autoprompt_search leaderboard")
