"""The results ledger: one SQLite file (WAL), one row per recording, the product's memory.

Every write is one transaction with ``synchronous=FULL``: when it returns, the change survives a
power cut. The states of a row and their legal moves are in ``states``; the tables and their
migrations in ``schema``; what is read, for reports and retries, in ``queries``; what a run
decides of each row in ``admission``. ``Ledger`` is synchronous; a run writes it through
``writer``'s one thread (group commit) and ``run.run_ledger``'s named calls.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LedgerError
from .admission import (
    ALREADY,
    DUPLICATE,
    KNOWN_COLUMNS,
    Admission,
    Decision,
    Known,
    Record,
    Seen,
    decide,
    duplicate_error,
)
from .books import AttemptRecord, Books
from .lock import LedgerLock, describe
from .queries import connect_readonly
from .schema import RUN_ROWS, Transaction, migrate, now, select_in, unusable, up_to_date
from .states import TRANSITIONS, Status, check

#: Another row of the same call, by its audio (sha256) and the call's own facts (``call``),
#: that is imported (``succeeded``; an alias names the key it was imported under) or may be
#: (``uploading``: its outcome is unknown), imported ones first, then the oldest. Two rows whose
#: explicit external_ids differ (both keys ``ext:``) are different calls whatever their audio
#: (the fourth parameter: whether this row's key is explicit). Served by the
#: ``recordings_audio_call`` index, so a ledger of millions of rows answers without a scan,
#: even when thousands of its calls are the same second of silence.
SAME_AUDIO_QUERY = ("SELECT COALESCE(same_as, key), manifest, row_number, status FROM recordings "
                    "WHERE sha256 = ? AND call = ? AND key != ? AND status IN ('succeeded', "
                    "'uploading') AND NOT (? AND key LIKE 'ext:%') "
                    "ORDER BY status = 'succeeded' DESC, rowid LIMIT 1")
#: Another call with the same audio (not the same call): counted, not a reason to hold back.
OTHER_CALL_QUERY = ("SELECT key, manifest, row_number, status FROM recordings WHERE sha256 = ? "
                    "AND key != ? AND status IN ('succeeded', 'uploading') LIMIT 1")


@dataclass(frozen=True)
class SameAudio:
    """Another recording whose file has the same sha256 (found by ``record_audio``): of the
    same call (``same_call``: its facts agree and no explicit ids tell them apart), or of
    another call that happens to hold the same bytes."""

    key: str
    manifest: str | None
    row_number: int | None
    status: Status
    same_call: bool = True


class Ledger(Books):
    """One ledger file, for reading (``LedgerQueries``) and writing."""

    @classmethod
    def open(cls, path: Path, *, create: bool = True, durable: bool = True) -> Ledger:
        """Open (and create or upgrade) the ledger at ``path``.

        ``durable=False`` skips the fsync of each transaction: only for a throwaway ledger
        (``validate``), whose content nobody needs after a power cut.
        """
        if not create and not path.is_file():
            raise LedgerError(f"{path}: no such ledger file")
        if path.parent and not path.parent.is_dir():
            raise LedgerError(f"{path}: the folder {path.parent} does not exist")
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            conn.execute("PRAGMA foreign_keys=ON")
            migrate(conn)
            for statement in RUN_ROWS:
                conn.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise unusable(path, exc) from None
        return cls(conn, path)

    @classmethod
    def open_readonly(cls, path: Path) -> Ledger:
        """The ledger at ``path`` for reading only (``report``), never blocking a run that
        writes it (see ``connect_readonly``). A ledger of an older layout is upgraded first,
        when nobody writes it."""
        conn, names = connect_readonly(path)
        if up_to_date(names):
            return cls(conn, path)
        conn.close()
        lock = LedgerLock(path)
        holder = lock.try_acquire(f"report {path} (upgrading its layout)")
        if holder is not None:
            raise LedgerError(f"{path}: written by an older version of convirza-import and in "
                              f"use by {describe(holder)}; report it once that run has ended")
        try:
            cls.open(path, create=False).close()
        finally:
            lock.release()
        return cls.open_readonly(path)

    @property
    def connection(self) -> sqlite3.Connection:
        """For the one writer thread, which wraps calls in its own transactions."""
        return self._conn

    # --- admission ----------------------------------------------------------------------

    def admit(self, run_id: int, rows: Sequence[Admission], *,
              record: bool = True) -> list[Decision]:
        """Decide, for each row of a chunk, what the run does with it (``admission.decide``),
        and record what the decisions say: one transaction per chunk, so a chunk of a thousand
        rows costs one fsync, not a thousand. ``record=False`` decides the same but writes
        nothing of the rows (``validate``: its ledger is thrown away)."""
        found = {rec[0]: Known._make(rec) for rec in select_in(
            self._conn, f"SELECT {KNOWN_COLUMNS} FROM recordings WHERE key IN ({{}})", (),
            [r.key for r in rows if r.passed_over in ("", ALREADY)])}
        seen = Seen(
            dict(select_in(self._conn, "SELECT key, row_number FROM run_rows WHERE "
                           "run_id = ? AND key IN ({})", (run_id,), [r.key for r in rows])),
            dict(select_in(self._conn, "SELECT recording, row_number FROM run_rows WHERE "
                           "run_id = ? AND recording IN ({})", (run_id,),
                           [r.recording for r in rows if r.recording])))
        decisions, writes, aliases = [], [], []
        stamp = now()
        with Transaction(self._conn):
            for row in rows:
                previous = found.get(row.key)
                decision = decide(row, previous, seen)
                decisions.append(decision)
                if decision.record is None:
                    continue
                if decision.record is Record.AS_DUPLICATE:
                    row = row._replace(status=Status.INVALID, fields=None, fields_json=None,
                                       error=duplicate_error(row, decision),
                                       reason="; ".join(filter(None, (row.reason, DUPLICATE))))
                to = Status.SUCCEEDED if decision.record is Record.AS_ALREADY else row.status
                if previous is not None:
                    check(row.key, decision.previous, to)
                found[row.key] = Known(row.key, to.value, row.fingerprint, 1, None, None,
                                       None, None, None)
                if record and decision.record is Record.AS_ALREADY:
                    aliases.append((row.key, row.external_id, row.manifest, row.row_number,
                                    row.source, run_id, stamp, _path_of(row.recording),
                                    row.same_as))
                elif record:
                    writes.append(_upsert_params(run_id, row, stamp))
            self._conn.executemany(_UPSERT, writes)
            self._conn.executemany(_ALIAS, aliases)
            self._conn.executemany("INSERT OR IGNORE INTO run_rows (run_id, key, recording, "
                                   "row_number) VALUES (?, ?, ?, ?)",
                                   [(run_id, *new) for new in seen.new])
        return decisions

    # --- transitions --------------------------------------------------------------------

    def _move(self, key: str, to: Status, sets: str = "", params: Sequence[Any] = ()) -> None:
        allowed = [s.value for s, targets in TRANSITIONS.items() if s is not None and to in targets]
        marks = ",".join("?" * len(allowed))
        with Transaction(self._conn):
            cur = self._conn.execute(
                f"UPDATE recordings SET status = ?, updated_at = ?{sets} "
                f"WHERE key = ? AND status IN ({marks})",
                (to.value, now(), *params, key, *allowed))
            if cur.rowcount != 1:
                rec = self._conn.execute("SELECT status FROM recordings WHERE key = ?",
                                         (key,)).fetchone()
                if rec is None:
                    raise LedgerError(f"{key}: no such recording in the ledger")
                check(key, Status(rec[0]), to)

    def mark_uploading(self, key: str, size: int | None, run_id: int, *,
                       external_id: str | None = None) -> None:
        """Durable before the request leaves: a crash after this leaves the outcome unknown,
        and ``external_id`` (what the request carries) is how the call is looked up then."""
        self._move(key, Status.UPLOADING, ", size = ?, run_id = ?, sent_external_id = ?",
                   (size, run_id, external_id))

    def record_audio(self, key: str, size: int, sha256: str | None, *, run_id: int = 0,
                     row_number: int = 0, record: bool = True, path: str | None = None,
                     mtime_ns: int | None = None, call: str | None = None) -> SameAudio | None:
        """Store what probing learned of the row's file (and ``call``, the call's facts), and
        return another row with the same audio that is imported (``succeeded``; the key it
        was imported under) or may be (``uploading``: outcome unknown): one of the same call
        if there is one, else one of another call (``same_call`` False), else None.

        One transaction, and the ledger is written by one thread: of two rows with the same
        file, the one recorded second always sees the first. ``record=False`` (``validate``,
        whose ledger keeps no rows) compares within this run only, in the per-run table.
        """
        if not record:
            return _audio_in_run(self._conn, key, sha256, call, run_id, row_number) \
                if sha256 is not None else None
        with Transaction(self._conn):
            self._conn.execute("UPDATE recordings SET size = ?, sha256 = ?, path = ?, "
                               "mtime_ns = ?, call = ?, updated_at = ? WHERE key = ?",
                               (size, sha256, path, mtime_ns, call, now(), key))
            return None if sha256 is None else _same_audio(self._conn, key, sha256, call)

    def claim(self, key: str, run_id: int, *, external_id: str | None, size: int,
              sha256: str | None, path: str | None, mtime_ns: int | None,
              call: str | None = None, send_twins: bool = False) -> SameAudio | None:
        """Store what probing learned of the row's file and mark the row ``uploading``, in one
        transaction (durable before the request leaves), and return another row with the same
        audio that is imported or may be, if any. Unless ``send_twins``, a row of the same
        call keeps the row from being marked: it stays ``pending``, and the caller records it
        as already imported, or leaves it for a later run; a row of another call does not."""
        with Transaction(self._conn):
            twin = self.record_audio(key, size, sha256, path=path, mtime_ns=mtime_ns,
                                     call=call)
            if twin is None or not twin.same_call or send_twins:
                self.mark_uploading(key, size, run_id, external_id=external_id)
        return twin

    def mark_already_imported(self, key: str, same_as: str) -> None:
        """The row's recording is imported under ``same_as`` (the same audio): done, and
        nothing was sent for it."""
        self._move(key, Status.SUCCEEDED, ", same_as = ?, last_outcome = 'already imported', "
                   "error = NULL, reason = NULL", (same_as,))

    def mark_found(self, key: str, external_id: str, attempt: AttemptRecord) -> None:
        """The row's call is in Convirza already, found by ``external_id`` before anything was
        sent (``--find-existing``): done, and the lookup kept as its attempt."""
        with Transaction(self._conn):
            self._insert_attempt(attempt)
            self._move(key, Status.SUCCEEDED, ", last_outcome = 'found in Convirza', "
                       "sent_external_id = ?, error = NULL, reason = NULL", (external_id,))

    def mark_invalid(self, key: str, error: str, reason: str | None = None) -> None:
        self._move(key, Status.INVALID, ", error = ?, reason = ?",
                   (self.scrub(error), self.scrub(reason or error)))

    def mark_pending(self, key: str) -> None:
        self._move(key, Status.PENDING)

    def finish(self, key: str, status: Status, attempt: AttemptRecord,
               *, retryable: bool = True) -> None:
        """Record the last attempt and the row's final state in one transaction."""
        if status not in (Status.SUCCEEDED, Status.FAILED):
            raise LedgerError(f"{key}: finish() takes succeeded or failed, not {status}")
        attempt = self._scrubbed(attempt)
        with Transaction(self._conn):
            self._insert_attempt(attempt)
            self._move_in_tx(key, status, attempt, retryable)

    def record_attempt(self, attempt: AttemptRecord) -> None:
        """An attempt that will be followed by another (the row stays ``uploading``)."""
        attempt = self._scrubbed(attempt)
        with Transaction(self._conn):
            self._insert_attempt(attempt)
            self._conn.execute(
                """UPDATE recordings SET attempts = attempts + 1,
                       first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?,
                       http_status = ?, error = ?, request_id = ?, last_outcome = ?,
                       duration = COALESCE(duration, 0) + ?, updated_at = ?
                   WHERE key = ?""",
                (attempt.started_at, attempt.started_at, attempt.http_status, attempt.error,
                 attempt.request_id, attempt.outcome, attempt.duration, now(), attempt.key))

    def _move_in_tx(self, key: str, to: Status, a: AttemptRecord, retryable: bool) -> None:
        rec = self._conn.execute("SELECT status FROM recordings WHERE key = ?", (key,)).fetchone()
        check(key, Status(rec[0]) if rec else None, to)
        reason = None
        if to is Status.FAILED:
            reason = f"HTTP {a.http_status}: {a.error}" if a.http_status else a.error
        self._conn.execute(
            """UPDATE recordings SET status = ?, retryable = ?, attempts = attempts + 1,
                   first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?,
                   http_status = ?, error = ?, reason = ?, request_id = ?, last_outcome = ?,
                   duration = COALESCE(duration, 0) + ?, updated_at = ?
               WHERE key = ?""",
            (to.value, int(retryable), a.started_at, a.started_at, a.http_status, a.error,
             reason, a.request_id, a.outcome, a.duration, now(), key))


def _same_audio(conn: sqlite3.Connection, key: str, sha256: str,
                call: str | None) -> SameAudio | None:
    """Another row of the ledger with this audio: of the same call if there is one, else of
    another call (``same_call`` False), else None."""
    rec = conn.execute(SAME_AUDIO_QUERY, (sha256, call, key, key.startswith("ext:"))).fetchone()
    if rec is not None:
        return SameAudio(rec[0], rec[1], rec[2], Status(rec[3]))
    other = conn.execute(OTHER_CALL_QUERY, (sha256, key)).fetchone()
    return None if other is None else SameAudio(other[0], other[1], other[2], Status(other[3]),
                                                same_call=False)


def _audio_in_run(conn: sqlite3.Connection, key: str, sha256: str, call: str | None,
                  run_id: int, row_number: int) -> SameAudio | None:
    """``validate``: the first earlier row of this run of the same call (else of another call
    with the same audio), from the per-run table; this row is added to it."""
    with Transaction(conn):
        rec = conn.execute(
            "SELECT key, row_number, call = ? AND NOT (? AND key LIKE 'ext:%') AS same "
            "FROM run_audio WHERE run_id = ? AND sha256 = ? ORDER BY same DESC, "
            "row_number LIMIT 1", (call, key.startswith("ext:"), run_id, sha256)).fetchone()
        conn.execute("INSERT OR IGNORE INTO run_audio VALUES (?, ?, ?, ?, ?)",
                     (run_id, sha256, call, key, row_number))
    if rec is None:
        return None
    return SameAudio(rec[0], None, rec[1], Status.PENDING, same_call=bool(rec[2]))


def _upsert_params(run_id: int, row: Admission, stamp: str) -> tuple[Any, ...]:
    return (row.key, row.external_id, row.manifest, row.row_number, row.source,
            row.status.value, row.fingerprint,
            None if row.fields is None else row.fields_json or json.dumps(row.fields),
            row.error, row.reason, run_id, stamp, _path_of(row.recording))


def _path_of(recording: str) -> str | None:
    return recording[5:] if recording.startswith("file:") else None


_UPSERT = """INSERT INTO recordings (key, external_id, manifest, row_number, source, status,
                 retryable, fingerprint, fields, error, reason, run_id, updated_at, path)
             VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(key) DO UPDATE SET external_id = excluded.external_id,
                 manifest = excluded.manifest, row_number = excluded.row_number,
                 source = excluded.source, status = excluded.status, retryable = 1,
                 fingerprint = excluded.fingerprint, fields = excluded.fields,
                 error = excluded.error, reason = excluded.reason, http_status = NULL,
                 request_id = NULL, run_id = excluded.run_id, same_as = NULL,
                 path = excluded.path, updated_at = excluded.updated_at"""

#: A row found already imported under another key (``same_as``): succeeded, with the file's
#: facts of the recording it repeats. (``WHERE true`` lets SQLite read ``ON CONFLICT`` after a
#: ``SELECT``.)
_ALIAS = """INSERT INTO recordings (key, external_id, manifest, row_number, source, status,
                 retryable, fingerprint, run_id, updated_at, path, same_as, size, mtime_ns,
                 sha256, call, last_outcome)
             SELECT ?, ?, ?, ?, ?, 'succeeded', 1, '', ?, ?, ?, key, size, mtime_ns, sha256,
                 call, 'already imported'
             FROM recordings WHERE key = ? AND true
             ON CONFLICT(key) DO UPDATE SET external_id = excluded.external_id,
                 manifest = excluded.manifest, row_number = excluded.row_number,
                 source = excluded.source, status = 'succeeded', error = NULL, reason = NULL,
                 run_id = excluded.run_id, path = excluded.path, same_as = excluded.same_as,
                 size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,
                 call = excluded.call, last_outcome = excluded.last_outcome,
                 updated_at = excluded.updated_at"""

