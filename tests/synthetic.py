"""A test double for the search: `SyntheticEvaluator`, a cheap, deterministic stand-in for training."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

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
    line per state load and per finished call."""

    noise: float = 0.02
    sleep_s: float = 0.0
    call_log: str | None = None
    salt: str = ""

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
        learning = 0.6 + 0.4 * steps / (steps + 10)
        noise = self.noise * (2 * _unit_hash(self.salt, cid, seed, steps) - 1)
        dev = self.quality(candidate) * learning + noise
        test = dev - 0.5 * self.noise * _unit_hash("test", self.salt, cid, seed, steps)
        self._log({"event": "call", "candidate_id": cid, "seed": seed, "steps": steps})
        return EvalOutcome(dev, test, {"dev_metrics": {"acc": dev}, "test_metrics": {"acc": test}})

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
