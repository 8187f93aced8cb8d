"""Compare the evaluations of two leaderboards row by row (config hash, candidate, seed, budget, rung, dev and
test metric): the check behind results/layout_refactor_check.md.

    python benchmarks/compare_leaderboards.py BEFORE/leaderboard.sqlite AFTER/leaderboard.sqlite
"""
from __future__ import annotations

import sqlite3
import sys

KEY = ("config_hash", "candidate_id", "seed", "budget", "rung")
VALUES = ("dev_metric", "test_metric")


def rows(path: str) -> dict[tuple, tuple]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    query = f"select {', '.join(KEY + VALUES)} from evaluations"
    return {row[:len(KEY)]: row[len(KEY):] for row in connection.execute(query)}


def main(before: str, after: str) -> int:
    a, b = rows(before), rows(after)
    differing = sorted(set(a) ^ set(b)) + sorted(k for k in set(a) & set(b) if a[k] != b[k])
    identical = sum(1 for key in a if key in b and a[key] == b[key])
    print(f"before {len(a)} rows, after {len(b)} rows, identical {identical}")
    for key in differing:
        print("differs:", key, a.get(key), b.get(key))
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
