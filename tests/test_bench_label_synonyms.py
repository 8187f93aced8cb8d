"""bench_label_synonyms: rows are told apart by their words, a pilot's words can be left out, and the table
says which task-seeds are missing and what the plan's bar reads over the complete tasks only."""
from __future__ import annotations

import json
import sqlite3

from benchmark_scripts import load_benchmark

bench = load_benchmark("bench_label_synonyms")
MANUAL = {"0": "terrible", "1": "great"}
AUTO = {"0": ["terrible", "horrible"], "1": ["great", "excellent"], "_combine": "logsumexp"}
HAND = {"0": ["terrible", "bad"], "1": ["great", "good"], "_combine": "logsumexp"}


def _board(folder, rows):
    folder.mkdir(parents=True)
    with sqlite3.connect(folder / "leaderboard.sqlite") as db:
        db.execute("create table evaluations (id integer primary key, candidate_json text, seed int, budget int, "
                   "dev_metric real, test_metric real, extra_json text, error text)")
        for words, seed, budget, test in rows:
            db.execute("insert into evaluations (candidate_json, seed, budget, dev_metric, test_metric, extra_json) "
                       "values (?, ?, ?, 0.5, ?, ?)",
                       (json.dumps({"label_words": words, "template": "t"}), seed, budget, test,
                        json.dumps({"best_step": 8})))


def test_rows_tables_and_the_bar(tmp_path):
    _board(tmp_path / "cr", [(MANUAL, 13, 32, 0.80), (AUTO, 13, 32, 0.82), (MANUAL, 21, 32, 0.70),
                             (AUTO, 21, 32, 0.71), (AUTO, 21, 8, 0.99), (MANUAL, 21, 32, 0.70)])
    _board(tmp_path / "mr", [(MANUAL, 13, 32, 0.80), (HAND, 13, 32, 0.90), (AUTO, 13, 32, 0.70)])
    (tmp_path / "hand.txt").write_text(json.dumps(HAND) + "\n", encoding="utf-8")
    args = bench.parse_args(["--tasks", "cr", "mr", "--seeds", "13", "21", "--out-root", str(tmp_path),
                             "--leave-out", str(tmp_path / "hand.txt")])
    cr = bench.stored_rows(args, "cr")
    assert [(r["seed"], r["kind"]) for r in cr] == [(13, "manual"), (13, bench.SYNONYMS), (21, "manual"),
                                                   (21, bench.SYNONYMS)]  # the 8-step row is not a result; a repeated one counts once
    mr = bench.stored_rows(args, "mr")
    assert [r["test"] for r in mr] == [0.80, 0.70]  # the hand-picked words are left out
    table, summary = bench.report(args, cr + mr)
    assert summary["cr"]["complete"] and not summary["mr"]["complete"]
    assert abs(summary["cr"]["gain"] - 0.015) < 1e-9 and abs(summary["mr"]["gain"] + 0.10) < 1e-9
    assert "Partial: not run yet (or not finished): mr seed 21." in table
    assert "(cr): synonyms at least the manual words on mean test on every one: yes" in table
    assert "mean gain over their 2 task-seeds +1.50 points" in table


def test_only_counts_the_given_words_as_synonyms(tmp_path):
    _board(tmp_path / "mr", [(MANUAL, 13, 32, 0.80), (HAND, 13, 32, 0.90), (AUTO, 13, 32, 0.70)])
    (tmp_path / "hand.txt").write_text(json.dumps(HAND) + "\n", encoding="utf-8")
    args = bench.parse_args(["--tasks", "mr", "--seeds", "13", "--out-root", str(tmp_path),
                             "--only", str(tmp_path / "hand.txt")])
    assert [(r["kind"], r["test"]) for r in bench.stored_rows(args, "mr")] == [("manual", 0.80), (bench.SYNONYMS, 0.90)]
