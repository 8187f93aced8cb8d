"""Claims: which process computes which evaluation, so searches sharing an output folder share the work.

Before a search computes an evaluation it claims it in the leaderboard's `claims` table, in one write
transaction that also checks the evaluation is not stored and not claimed by a live other process. A claim
is a lease: it expires `lease_s` after its owner last renewed it, and a heartbeat thread renews all of this
process's claims every `heartbeat_s` while evaluations run. A process killed with SIGKILL stops renewing,
so its claims are taken over once they expire (at once when the owner ran on this machine and its process
is gone). The result and the release of its claim are one transaction, so no finished evaluation is lost
and a taken-over claim only ever costs a repeated computation, never a second row.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from .leaderboard import Leaderboard
from .predictions import store_predictions
from .records import Evaluation
from .schema import COMPLETE, FAIL
from .trial import Job

logger = logging.getLogger(__name__)

Status = Literal["claimed", "done", "failed", "busy"]


@dataclass(frozen=True)
class ClaimSettings:
    """Lease timing. The defaults suit evaluations of seconds to hours; tests use short ones."""

    lease_s: float = 60.0         # a claim not renewed for this long is free for others
    heartbeat_s: float = 15.0     # how often the owner renews its claims
    poll_s: float = 1.0           # how often a process waiting on others' claims looks again
    # Take over at once the claim of a process on this host that no longer exists (kill -9), instead of
    # waiting for its lease; a process on another host (a shared folder) is trusted until its lease ends.
    check_local_pids: bool = True

    def __post_init__(self) -> None:
        if not (self.lease_s > 0 and 0 < self.heartbeat_s < self.lease_s and self.poll_s > 0):
            raise ValueError(f"claim settings: expected lease_s > heartbeat_s > 0 and poll_s > 0, got {self}")


def new_owner() -> str:
    """A claim owner name unique to this search run: host, process id and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _owner_gone(owner: str) -> bool:
    """True when `owner` names a process on this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by another user
        return False
    return False


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Claims:
    """This search run's claims on one configuration's evaluations in one leaderboard.

    `retry_failed_before`: FAIL rows recorded before this time (ISO, UTC) may be claimed again (the
    search was asked to retry failures); FAIL rows recorded later, by this run or a concurrent one,
    are final for this run, so a failing candidate is tried once per run, not in a loop.
    """

    def __init__(self, leaderboard: Leaderboard, config_hash: str, settings: ClaimSettings | None = None,
                 *, retry_failed_before: str | None = None, owner: str | None = None):
        self.leaderboard = leaderboard
        self.config_hash = config_hash
        self.settings = settings or ClaimSettings()
        self.retry_failed_before = retry_failed_before
        self.owner = owner or new_owner()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- claiming
    def try_claim(self, job: Job) -> Status:
        """Claim `job` if nobody has finished it and no live process holds it; say what was found."""
        key = (self.config_hash, job.candidate_id, int(job.seed), int(job.steps))
        with self.leaderboard.transaction() as connection:
            row = connection.execute(
                "SELECT state, created_at FROM evaluations WHERE config_hash = ? AND candidate_id = ? "
                "AND seed = ? AND budget = ?", key).fetchone()
            if row is not None and row[0] == COMPLETE:
                return "done"
            claim = connection.execute(
                "SELECT owner, expires_at FROM claims WHERE config_hash = ? AND candidate_id = ? "
                "AND seed = ? AND budget = ?", key).fetchone()
            if claim is not None and claim[0] != self.owner and not self._expired(claim[0], claim[1]):
                return "busy"
            if row is not None and row[0] == FAIL and not (
                    self.retry_failed_before is not None and row[1] < self.retry_failed_before):
                return "failed"
            if claim is not None and claim[0] != self.owner:
                logger.info("taking over the expired claim of %s on %s seed %s at %s steps",
                            claim[0], job.candidate_id[:10], job.seed, job.steps)
            connection.execute(
                "INSERT OR REPLACE INTO claims (config_hash, candidate_id, seed, budget, owner, expires_at, "
                "claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*key, self.owner, time.time() + self.settings.lease_s, now_iso()))
        return "claimed"

    def _expired(self, owner: str, expires_at: float) -> bool:
        return expires_at <= time.time() or (self.settings.check_local_pids and _owner_gone(owner))

    def finish(self, evaluation: Evaluation) -> Evaluation:
        """Store a result and release its claim in one transaction; returns the stored evaluation
        (another process's, when it stored this one first)."""
        key = (evaluation.config_hash, evaluation.candidate_id, int(evaluation.seed), int(evaluation.budget))
        with self.leaderboard.transaction() as connection:
            stored = self.leaderboard.record_evaluation(evaluation)
            if stored and evaluation.predictions:
                store_predictions(connection, evaluation)
            connection.execute("DELETE FROM claims WHERE config_hash = ? AND candidate_id = ? AND seed = ? "
                               "AND budget = ? AND owner = ?", (*key, self.owner))
        if stored:
            return evaluation
        return self.leaderboard.get(*key[1:], key[0], include_failed=True) or evaluation

    def release_all(self) -> None:
        """Give up every claim this run still holds (an evaluation that was claimed but not run)."""
        with self.leaderboard.transaction() as connection:
            connection.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))

    def held(self) -> int:
        with self.leaderboard.transaction() as connection:
            return connection.execute("SELECT COUNT(*) FROM claims WHERE owner = ?", (self.owner,)).fetchone()[0]

    # -- the heartbeat
    def renew(self) -> None:
        with self.leaderboard.transaction() as connection:
            connection.execute("UPDATE claims SET expires_at = ? WHERE owner = ?",
                               (time.time() + self.settings.lease_s, self.owner))

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s):
            try:
                self.renew()
            except Exception as error:  # a missed beat only risks a repeated computation
                logger.warning("could not renew claims in %s: %s", self.leaderboard.path, error)
        self.leaderboard.close_thread_connection()

    def __enter__(self) -> "Claims":
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="autoprompt-claims-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.release_all()
        except Exception as error:
            logger.warning("could not release claims in %s: %s (they expire after %.0f s)",
                           self.leaderboard.path, error, self.settings.lease_s)
