"""What the ledger keeps beside its rows' states: the runs (when each began and ended, and how),
every attempt (the audit of what was sent and answered), what a new ledger's check found
(``--find-existing``), and the rows ``verify --requeue-missing`` puts back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .figures import ledger_left
from .queries import LedgerQueries
from .schema import Transaction, now


@dataclass(frozen=True)
class AttemptRecord:
    """One request, kept for audit whatever its outcome."""

    key: str
    started_at: str
    duration: float
    outcome: str
    http_status: int | None = None
    error: str | None = None
    request_id: str | None = None


class Books(LedgerQueries):
    """What the ledger keeps beside its rows' states: the runs, the attempts (for audit),
    what a new ledger's check found (``--find-existing``), and the rows ``verify`` puts back."""

    # --- runs ---------------------------------------------------------------------------

    def begin_run(self, command: str, manifest: str | None) -> int:
        with Transaction(self._conn):
            cur = self._conn.execute(
                "INSERT INTO runs (command, manifest, started_at) VALUES (?, ?, ?)",
                (command, manifest, now()))
        return int(cur.lastrowid or 0)

    def end_run(self, run_id: int, exit_code: int, summary: dict[str, Any]) -> None:
        with Transaction(self._conn):
            self._conn.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, summary = ? WHERE id = ?",
                (now(), exit_code, self.scrub(json.dumps(summary)), run_id))

    def left_to_do(self) -> int:
        """Rows left to do now, as every report counts them (``figures``)."""
        return ledger_left(self._conn)

    def decide_find_existing(self, manifest: str, look_first: bool, why: str) -> None:
        """What the sample of a new ledger's manifest found: kept for its later runs."""
        with Transaction(self._conn):
            self._conn.execute("INSERT OR REPLACE INTO find_existing VALUES (?, ?, ?, ?)",
                               (manifest, int(look_first), why, now()))

    def requeue(self, keys: Sequence[str], why: str) -> int:
        """Rows held as ``succeeded`` whose call Convirza does not have (``verify
        --requeue-missing``) go back to ``pending``, their data kept, so that ``retry`` sends
        them; the move is kept in the attempts, for audit. The one way out of ``succeeded``,
        taken on the API's word only (it is not among ``TRANSITIONS``, so no bug of a run can
        take it). Returns how many rows moved."""
        moved = 0
        with Transaction(self._conn):
            for key in keys:
                cur = self._conn.execute(
                    "UPDATE recordings SET status = 'pending', last_outcome = 'missing in "
                    "Convirza', updated_at = ? WHERE key = ? AND status = 'succeeded'",
                    (now(), key))
                if cur.rowcount:
                    moved += 1
                    self._insert_attempt(AttemptRecord(key, now(), 0.0, "requeued", None, why))
        return moved

    def _scrubbed(self, attempt: AttemptRecord) -> AttemptRecord:
        if attempt.error is None:
            return attempt
        return replace(attempt, error=self.scrub(attempt.error))

    def _insert_attempt(self, a: AttemptRecord) -> None:
        self._conn.execute(
            """INSERT INTO attempts (key, run_id, started_at, duration, http_status, error,
                   request_id, outcome)
               VALUES (?, (SELECT run_id FROM recordings WHERE key = ?), ?, ?, ?, ?, ?, ?)""",
            (a.key, a.key, a.started_at, a.duration, a.http_status, a.error, a.request_id,
             a.outcome))
