"""Test doubles for the search: `SyntheticEvaluator`, a cheap, deterministic stand-in for training, and
`write_version_1_database`, a leaderboard as version 1 of the program wrote it."""
from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Mapping

from autoprompt_search.errors import UserError
from autoprompt_search.search import EvalOutcome, LazyEvaluator, candidate_id


def _unit_hash(*parts: Any) -> float:
    """Deterministic number in [0, 1) from the parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class SyntheticEvaluator(LazyEvaluator):
    """A stand-in for training: a hidden quality per candidate, improving with steps, plus seed
    noise. Deterministic, cheap and picklable; for dry runs of a search plan, benchmarks of the
    executors and tests. `sleep_s` imitates training time; `call_log` (a file) gets one JSON
    line per state load and per finished call (and per failed one, event "fail"). A candidate whose
    template contains one of `fail_templates` raises `fail_with` (a UserError with "UserError").

    Like the real evaluator it reports a continuous dev score (`extra["dev_score"]`, the log of the
    unrounded dev value) and the split sizes (`extra["examples"]`). With `dev_examples` > 0 the dev
    metric is rounded to a multiple of 1/dev_examples, as an accuracy on that many examples is, so
    candidates tie on it while their continuous scores still differ."""

    noise: float = 0.02
    sleep_s: float = 0.0
    call_log: str | None = None
    salt: str = ""
    fail_templates: tuple[str, ...] = ()
    fail_with: str = "ValueError"
    dev_examples: int = 0
    test_examples: int = 100

    def state_config(self) -> dict[str, Any]:
        return {"salt": self.salt}

    def load_state(self) -> dict[str, Any]:
        self._log({"event": "load"})
        return {"pid": os.getpid()}

    def quality(self, candidate: Mapping[str, Any]) -> float:
        return 0.5 + 0.4 * _unit_hash(self.salt, candidate_id(candidate))

    def evaluate_with(self, state: Any, candidate: Mapping[str, Any], seed: int, steps: int) -> EvalOutcome:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        cid = candidate_id(candidate)
        if any(part in str(candidate.get("template", "")) for part in self.fail_templates):
            self._log({"event": "fail", "candidate_id": cid, "seed": seed, "steps": steps})
            error = UserError if self.fail_with == "UserError" else ValueError
            raise error(f"synthetic failure of {candidate.get('template')!r}")
        learning = 0.6 + 0.4 * steps / (steps + 10)
        noise = self.noise * (2 * _unit_hash(self.salt, cid, seed, steps) - 1)
        smooth = self.quality(candidate) * learning + noise
        dev = round(smooth * self.dev_examples) / self.dev_examples if self.dev_examples else smooth
        test = dev - 0.5 * self.noise * _unit_hash("test", self.salt, cid, seed, steps)
        self._log({"event": "call", "candidate_id": cid, "seed": seed, "steps": steps})
        examples = {"dev": self.dev_examples or 32, "test": self.test_examples}
        return EvalOutcome(dev, test, {"dev_metrics": {"acc": dev}, "test_metrics": {"acc": test},
                                       "dev_score": math.log(smooth), "dev_score_kind": "mean_gold_logprob",
                                       "examples": examples})

    def _log(self, record: dict[str, Any]) -> None:
        if self.call_log is None:
            return
        line = json.dumps({**record, "pid": os.getpid(), "tag": os.environ.get("AUTOPROMPT_RUN_TAG", "")})
        # One short O_APPEND write per line: lines from concurrent processes never interleave.
        fd = os.open(self.call_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


_VERSION_1_SCHEMA = """
CREATE TABLE evaluations (
    id INTEGER PRIMARY KEY, config_hash TEXT NOT NULL, candidate_id TEXT NOT NULL, candidate_json TEXT NOT NULL,
    seed INTEGER NOT NULL, budget INTEGER NOT NULL, rung INTEGER NOT NULL, dev_metric REAL, test_metric REAL,
    dev_metrics_json TEXT NOT NULL, test_metrics_json TEXT NOT NULL, extra_json TEXT NOT NULL,
    steps INTEGER NOT NULL, wall_time_s REAL NOT NULL, versions_json TEXT NOT NULL, created_at TEXT NOT NULL,
    UNIQUE (config_hash, candidate_id, seed, budget));
CREATE INDEX evaluations_by_config ON evaluations (config_hash, budget);
PRAGMA user_version = 1;
"""


def write_version_1_database(path, candidates, cfg: str = "cfg", seed: int = 13, budget: int = 10) -> list[str]:
    """A leaderboard as version 1 wrote it (no state/error columns, no claims or configs tables), with
    one row per candidate; returns their ids."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = WAL")  # as version 1 left its files
    connection.executescript(_VERSION_1_SCHEMA)
    ids = []
    for i, candidate in enumerate(candidates):
        ids.append(candidate_id(candidate))
        connection.execute(
            "INSERT INTO evaluations (config_hash, candidate_id, candidate_json, seed, budget, rung, dev_metric, "
            "test_metric, dev_metrics_json, test_metrics_json, extra_json, steps, wall_time_s, versions_json, "
            "created_at) VALUES (?, ?, ?, ?, ?, 0, ?, NULL, '{}', '{}', '{}', ?, 0.1, '{}', '2024-01-01')",
            (cfg, ids[-1], json.dumps(candidate, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
             seed, budget, 0.1 * i, budget))
    connection.commit()
    connection.close()
    return ids
