"""The results ledger: one SQLite file (WAL), one row per recording, the product's memory.

States of a recording and what each one promises::

    pending    known and valid, not sent yet in this state's run
    uploading  a request was (or was about to be) sent: the outcome is UNKNOWN. This is written
               durably before the request leaves, so after a crash a row found here may or may
               not exist at Convirza and must be reconciled before it is sent again.
    succeeded  the API acknowledged the upload (final: never sent again), or the recording
               was found already imported under another key (``same_as`` names it: the same
               file unchanged, or the same audio bytes), so it was not sent again
    failed     every attempt failed; ``retryable`` says whether sending again could help
    invalid    never passed local validation (manifest cell or audio file); never sent

Legal moves are listed in ``TRANSITIONS``; anything else raises ``LedgerError``, so a bug can
not, say, turn a ``succeeded`` row back into ``uploading`` and import a call twice.

Every method is one transaction with ``synchronous=FULL``: when it returns, the change survives
a power cut. The class is synchronous; ``AsyncLedger`` runs it on one writer thread that
commits the calls waiting together (group commit), so the event loop never waits on the disk,
writes are serialized through one connection, and a thousand rows a second do not cost a
thousand fsyncs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeVar

from .errors import LedgerError
from .lock import LedgerLock, describe


class Status(StrEnum):
    PENDING = "pending"
    UPLOADING = "uploading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INVALID = "invalid"


#: ``-> succeeded`` from anything but ``succeeded`` itself is also "found already imported under
#: another key" (``same_as``): nothing is sent, so no request can be in doubt.
TRANSITIONS: dict[Status | None, frozenset[Status]] = {
    None: frozenset({Status.PENDING, Status.INVALID, Status.SUCCEEDED}),
    Status.PENDING: frozenset({Status.PENDING, Status.UPLOADING, Status.INVALID,
                               Status.SUCCEEDED}),
    # uploading -> uploading is the next attempt; -> pending is "reconciled: never arrived".
    Status.UPLOADING: frozenset({Status.UPLOADING, Status.SUCCEEDED, Status.FAILED,
                                 Status.PENDING, Status.INVALID}),
    # failed -> succeeded: an attempt of unknown outcome was found at Convirza (reconciled).
    Status.FAILED: frozenset({Status.PENDING, Status.UPLOADING, Status.INVALID,
                              Status.SUCCEEDED}),
    Status.INVALID: frozenset({Status.PENDING, Status.INVALID, Status.SUCCEEDED}),
    Status.SUCCEEDED: frozenset(),
}

MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("0001_initial", """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            command TEXT NOT NULL,
            manifest TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            exit_code INTEGER,
            summary TEXT
        );
        CREATE TABLE recordings (
            key TEXT PRIMARY KEY,
            external_id TEXT,
            manifest TEXT,
            row_number INTEGER,
            source TEXT,
            status TEXT NOT NULL CHECK (status IN
                ('pending', 'uploading', 'succeeded', 'failed', 'invalid')),
            retryable INTEGER NOT NULL DEFAULT 1,
            fingerprint TEXT,
            fields TEXT,
            error TEXT,
            http_status INTEGER,
            request_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            first_attempt_at TEXT,
            last_attempt_at TEXT,
            duration REAL,
            size INTEGER,
            sha256 TEXT,
            run_id INTEGER REFERENCES runs(id),
            updated_at TEXT NOT NULL
        );
        CREATE INDEX recordings_status ON recordings(status);
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL REFERENCES recordings(key),
            run_id INTEGER REFERENCES runs(id),
            started_at TEXT NOT NULL,
            duration REAL,
            http_status INTEGER,
            error TEXT,
            request_id TEXT,
            outcome TEXT NOT NULL
        );
        CREATE INDEX attempts_key ON attempts(key);
    """),
    ("0002_reasons_and_outcomes", """
        ALTER TABLE recordings ADD COLUMN reason TEXT;
        ALTER TABLE recordings ADD COLUMN last_outcome TEXT;
        CREATE INDEX recordings_run ON recordings(run_id);
    """),
    # Same audio under two rows is found by its sha256 (issue 4): an index, not a scan.
    ("0003_recordings_sha256_index", """
        CREATE INDEX recordings_sha256 ON recordings(sha256);
    """),
    # A recording is known by what it is (issue 11): a file by its absolute path (and, with its
    # size and mtime, by the sha256 already computed for it), its audio by that sha256, and a
    # row found already imported under another key names that key. Reconciliation looks a
    # call up by the external_id that was sent, whatever the manifest says now.
    ("0004_file_identity", """
        ALTER TABLE recordings ADD COLUMN path TEXT;
        ALTER TABLE recordings ADD COLUMN mtime_ns INTEGER;
        ALTER TABLE recordings ADD COLUMN same_as TEXT;
        ALTER TABLE recordings ADD COLUMN sent_external_id TEXT;
        CREATE INDEX recordings_path ON recordings(path);
        UPDATE recordings SET sent_external_id = external_id WHERE attempts > 0
            OR status IN ('uploading', 'succeeded');
        UPDATE recordings SET path = json_extract(fields, '$.recording_file')
            WHERE fields IS NOT NULL AND json_valid(fields);
    """),
)


def _absolute_file_keys(conn: sqlite3.Connection) -> None:
    """Part of ``0004_file_identity``: keys of the form ``file:<path relative to the
    manifest's folder>`` become ``file:<absolute path>``, so that two folders' ``a.wav`` are
    two recordings. A row's attempts follow its key (the foreign key is checked at commit)."""
    conn.execute("PRAGMA defer_foreign_keys = ON")
    moves = []
    for key, manifest in conn.execute(
            "SELECT key, manifest FROM recordings WHERE key LIKE 'file:%'").fetchall():
        written = key[5:]
        if os.path.isabs(os.path.expanduser(written)) or not manifest:
            absolute = os.path.abspath(os.path.expanduser(written))
        else:
            absolute = os.path.abspath(os.path.join(os.path.dirname(manifest),
                                                    os.path.expanduser(written)))
        moves.append(("file:" + absolute, absolute, key))
    for new, path, old in moves:
        if new != old:
            conn.execute("UPDATE attempts SET key = ? WHERE key = ?", (new, old))
        conn.execute("UPDATE recordings SET key = ?, path = ? WHERE key = ?", (new, path, old))


#: Steps of a migration that SQL alone cannot do, run after its script in its transaction.
_MIGRATION_STEPS: dict[str, Callable[[sqlite3.Connection], None]] = {
    "0004_file_identity": _absolute_file_keys,
}


#: Another recording with a file's content that is imported (``succeeded``; an alias names the
#: key it was imported under) or may be (``uploading``: its outcome is unknown), imported ones
#: first, then the oldest; served by the ``recordings_sha256`` index, so a ledger of millions
#: of rows answers without a scan.
SAME_AUDIO_QUERY = ("SELECT COALESCE(same_as, key), manifest, row_number, status FROM recordings "
                    "WHERE sha256 = ? AND key != ? AND status IN ('succeeded', 'uploading') "
                    "ORDER BY status = 'succeeded' DESC, rowid LIMIT 1")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Admission(NamedTuple):
    """A manifest row offered to the ledger: valid (``status`` pending) or invalid. (Named
    tuples here and in ``Decision``: one of each is made per manifest row.)"""

    key: str
    external_id: str | None
    manifest: str
    row_number: int
    source: str
    status: Status
    fingerprint: str
    fields: dict[str, Any] | None = None
    error: str | None = None
    reason: str | None = None  # the error without row-specific detail, for counting alike
    #: The recording as one canonical text (``file:`` and the absolute path, or ``url:`` and
    #: the URL): two rows with the same one in a run list the same recording twice.
    recording: str = ""
    #: ``fields`` already encoded as JSON, when the caller has it (it fingerprinted them).
    fields_json: str | None = None
    #: Why the reader went no further with this row (``SETTLED``: it succeeded before;
    #: ``OTHER_SHARD``: another ``--shard`` sends it): it is neither normalized nor recorded,
    #: but it still takes its place in the run, so that a later row repeating its key or its
    #: recording is known as a duplicate.
    passed_over: str = ""
    #: For a row passed over as ``ALREADY``: the key its recording was imported under.
    same_as: str = ""


SETTLED = "settled"
OTHER_SHARD = "other shard"
#: The row's key is done, but its file (keyed by its path alone) holds other audio now.
CHANGED = "changed since imported"
#: The row's file, unchanged (path, size, mtime), was imported under another key.
ALREADY = "already imported"


#: The reason recorded for a row that repeats an earlier row of its run.
DUPLICATE = "duplicate of an earlier row"


class Verdict(StrEnum):
    """What the run should do with an admitted row."""

    SEND = "send"            # new, changed, or worth another try
    DONE = "done"            # succeeded before: skip
    UNKNOWN = "unknown"      # left uploading by a crash: reconcile first
    REJECTED = "rejected"    # failed for good before, same data: skip
    DUPLICATE = "duplicate"  # the same key or recording was already admitted in this run
    INVALID = "invalid"      # recorded as invalid
    ELSEWHERE = "elsewhere"  # another shard's row
    ALREADY = "already"      # its file was imported under another key: recorded succeeded
    CHANGED = "changed"      # done, but the file at its path holds other audio now: not sent


class Decision(NamedTuple):
    """What the ledger decided for one admitted row."""

    verdict: Verdict
    previous: Status | None = None
    duplicate_of: int | None = None
    #: For a row recorded ``invalid`` because it repeats another row's recording: why.
    error: str | None = None
    #: ``ALREADY``: the key its recording was imported under.
    same_as: str | None = None
    #: What the ledger already knows of the row's file, so that an unchanged file is not hashed
    #: again: ``FileFacts`` from an earlier probe of this key.
    known: FileFacts | None = None
    #: ``UNKNOWN``: the external_id the request of unknown outcome carried (the call is looked
    #: up by it, whatever the manifest says now).
    sent_external_id: str | None = None


class FileFacts(NamedTuple):
    """A file as last probed: when its size and mtime are still these, so is its sha256."""

    size: int
    mtime_ns: int
    sha256: str


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


@dataclass(frozen=True)
class SameAudio:
    """Another recording whose file has the same sha256 (found by ``record_audio``)."""

    key: str
    manifest: str | None
    row_number: int | None
    status: Status


@dataclass(frozen=True)
class LedgerRow:
    key: str
    external_id: str | None
    manifest: str | None
    row_number: int | None
    source: str | None
    status: Status
    attempts: int
    http_status: int | None
    error: str | None
    request_id: str | None
    first_attempt_at: str | None
    last_attempt_at: str | None
    duration: float | None
    size: int | None
    sha256: str | None
    #: A row found already imported under another key names it here (nothing was sent).
    same_as: str | None = None


@dataclass(frozen=True)
class SentCall:
    """A ``succeeded`` row and the call it stands for, as ``verify`` looks it up: the row's own
    call, or, for a row found already imported under another key (``same_as``), that key's.
    ``external_id``, ``group_id`` and ``caller_id`` are what that call was sent with;
    ``target_status`` is the status of the row it was sent for (None: no such row)."""

    key: str
    manifest: str | None
    row_number: int | None
    same_as: str | None
    target_status: Status | None
    external_id: str | None
    group_id: str | None
    caller_id: str | None


class Ledger:
    """Synchronous access to one ledger file; see the module docstring for the states."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        #: Applied to every error text written (a last defence: the client already blanks
        #: our secrets in what servers echo back).
        self.scrub: Callable[[str], str] = _as_is

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
            ledger = cls(conn, path)
            ledger._migrate()
            for statement in _RUN_ROWS:
                conn.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise _unusable(path, exc) from None
        return ledger

    @classmethod
    def open_readonly(cls, path: Path) -> Ledger:
        """The ledger at ``path`` for reading only (``report``): it never blocks a run writing
        it (WAL readers do not), and it reads a ledger on read-only media: when SQLite cannot
        create the WAL's shared-memory file there, the file is read as immutable, which is
        what it is. A ledger of an older layout is upgraded first, when nobody writes it.

        Where the file may be written, the connection may too (it never does): the last
        connection to close then folds the WAL back into the file and removes it, as a run
        does, where a read-only one would leave ``-wal`` and ``-shm`` files behind."""
        if not path.is_file():
            raise LedgerError(f"{path}: no such ledger file")
        uri = path.resolve().as_uri()
        conn: sqlite3.Connection | None = None
        failure: sqlite3.DatabaseError | None = None
        for mode in ("mode=rw", "mode=ro", "immutable=1"):
            try:
                conn = sqlite3.connect(f"{uri}?{mode}", uri=True, check_same_thread=False,
                                       timeout=30)
                applied = {r[0] for r in conn.execute("SELECT name FROM migrations")}
                break
            except sqlite3.DatabaseError as exc:
                failure = exc
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is None:
            raise _unusable(path, failure or sqlite3.DatabaseError("cannot open")) from None
        if applied >= {name for name, _ in MIGRATIONS}:
            return cls(conn, path)
        conn.close()
        return cls._upgraded(path)

    @classmethod
    def _upgraded(cls, path: Path) -> Ledger:
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

    def close(self) -> None:
        self._conn.close()

    def _migrate(self) -> None:
        self._conn.execute("CREATE TABLE IF NOT EXISTS migrations "
                           "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        done = {r[0] for r in self._conn.execute("SELECT name FROM migrations")}
        for name, script in MIGRATIONS:
            if name in done:
                continue
            statements = [s.strip() for s in script.split(";") if s.strip()]
            with self._transaction():
                for statement in statements:
                    self._conn.execute(statement)
                step = _MIGRATION_STEPS.get(name)
                if step is not None:
                    step(self._conn)
                self._conn.execute("INSERT INTO migrations VALUES (?, ?)", (name, _now()))

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    # --- runs ---------------------------------------------------------------------------

    def begin_run(self, command: str, manifest: str | None) -> int:
        with self._transaction():
            cur = self._conn.execute(
                "INSERT INTO runs (command, manifest, started_at) VALUES (?, ?, ?)",
                (command, manifest, _now()))
        return int(cur.lastrowid or 0)

    def end_run(self, run_id: int, exit_code: int, summary: dict[str, Any]) -> None:
        with self._transaction():
            self._conn.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, summary = ? WHERE id = ?",
                (_now(), exit_code, self.scrub(json.dumps(summary)), run_id))

    # --- admission ----------------------------------------------------------------------

    def admit(self, run_id: int, rows: Sequence[Admission], *,
              record: bool = True) -> list[Decision]:
        """Record a chunk of manifest rows and decide, for each, whether it is to be sent.

        One transaction per chunk: a chunk of a thousand rows costs one fsync, not a thousand.
        A row whose key, or whose recording, an earlier row of the same run already had is a
        ``DUPLICATE`` of that row; when only the recording repeats, the row has a key of its
        own and is recorded ``invalid`` under it. A row the reader found already imported under
        another key (``ALREADY``) is recorded ``succeeded``, naming that key.

        ``record=False`` decides the same but writes nothing of the rows (``validate``: its
        ledger is thrown away, and writing every row was most of its cost).
        """
        keys = [r.key for r in rows]
        found: dict[str, _Known] = {rec[0]: _Known._make(rec) for rec in self._select(
            f"SELECT {_KNOWN_COLUMNS} FROM recordings WHERE key IN ({{}})",
            (), [r.key for r in rows if r.passed_over in ("", ALREADY)])}
        seen_keys: dict[str, int] = {k: n for k, n in self._select(
            "SELECT key, row_number FROM run_rows WHERE run_id = ? AND key IN ({})",
            (run_id,), keys)}
        seen_recordings: dict[str, int] = {r: n for r, n in self._select(
            "SELECT recording, row_number FROM run_rows WHERE run_id = ? AND recording IN ({})",
            (run_id,), [r.recording for r in rows if r.recording])}
        decisions: list[Decision] = []
        writes: list[tuple[Any, ...]] = []
        aliases: list[tuple[Any, ...]] = []
        seen: list[tuple[Any, ...]] = []
        now = _now()
        with self._transaction():
            for row in rows:
                key, number, recording = row.key, row.row_number, row.recording
                if row.passed_over:
                    decision = self._pass_over(run_id, row, seen_keys, seen_recordings, seen)
                    if row.passed_over == ALREADY:
                        rec = found.get(key)
                        decision = decision._replace(previous=_status(rec))
                        if record:
                            self._write_passed(run_id, row, decision, rec, now, writes, aliases)
                    decisions.append(decision)
                    continue
                rec = found.get(key)
                first = seen_keys.get(key)
                if first is not None and first != number:
                    decisions.append(Decision(Verdict.DUPLICATE, _status(rec), duplicate_of=first))
                    continue
                other = seen_recordings.get(recording) if recording else None
                if other == number:
                    other = None  # the same row offered again, not a repeat
                if first is None:
                    seen_keys[key] = number
                    # A recording is kept under the first row that listed it, and only there.
                    seen.append((run_id, key, recording if other is None else None, number))
                if other is not None:
                    decision = self._repeated(row, rec, other)
                    if decision.verdict is Verdict.DUPLICATE:
                        row = row._replace(status=Status.INVALID, fields=None,
                                           fields_json=None, error=decision.error,
                                           reason="; ".join(filter(None, (row.reason, DUPLICATE))))
                else:
                    if recording:
                        seen_recordings[recording] = number
                    # A row the ledger has never seen (every row of a first run) is decided
                    # by its own status alone: one shared, immutable decision per status.
                    decision = _FIRST_SEEN[row.status] if rec is None else self._decide(row, rec)
                decisions.append(decision)
                if decision.verdict in _RECORDED:
                    if rec is not None:  # from nothing, pending and invalid are both legal
                        _check(key, decision.previous, row.status)
                    if record:
                        writes.append(self._upsert_params(run_id, row, now))
                    found[key] = _Known(key, row.status.value, row.fingerprint, 1, None, None,
                                        None, None, None)
            if record:
                self._conn.executemany(_UPSERT, writes)
                self._conn.executemany(_ALIAS, aliases)
            self._conn.executemany(
                "INSERT OR IGNORE INTO run_rows (run_id, key, recording, row_number) "
                "VALUES (?, ?, ?, ?)", seen)
        return decisions

    @staticmethod
    def _pass_over(run_id: int, row: Admission, seen_keys: dict[str, int],
                   seen_recordings: dict[str, int], seen: list[tuple[Any, ...]]) -> Decision:
        """A row the reader passed over takes its place in the run (a later row repeating its
        key or its recording is a duplicate of it), and nothing else; one found already
        imported under another key is itself a duplicate when an earlier row of this run
        listed its recording, as it was when that recording was first sent."""
        first = seen_keys.get(row.key)
        if first is not None and first != row.row_number:
            if row.passed_over in (SETTLED, ALREADY, CHANGED):  # a repeat of a row done before
                return Decision(Verdict.DUPLICATE, Status.SUCCEEDED, duplicate_of=first)
            return _PASSED[row.passed_over]
        other = seen_recordings.get(row.recording) if row.recording else None
        if other == row.row_number:
            other = None  # the same row offered again, not a repeat
        if first is None:
            seen_keys[row.key] = row.row_number
            claims = bool(row.recording) and other is None
            if claims:
                seen_recordings[row.recording] = row.row_number
            seen.append((run_id, row.key, row.recording if claims else None, row.row_number))
        if row.passed_over == ALREADY:
            if other is not None:
                return Decision(Verdict.DUPLICATE, duplicate_of=other, error=(
                    f"row {row.row_number}: duplicate of row {other}: the same recording "
                    f"({row.source})"))
            return Decision(Verdict.ALREADY, same_as=row.same_as)
        return _PASSED[row.passed_over]

    def _write_passed(self, run_id: int, row: Admission, decision: Decision, rec: _Known | None,
                      now: str, writes: list[tuple[Any, ...]],
                      aliases: list[tuple[Any, ...]]) -> None:
        """A row passed over as already imported is recorded as if it had been read: succeeded
        under the key its recording was imported under, or, when it repeats a recording listed
        earlier in this run, invalid under its own key (a repeat of a key: nothing)."""
        if decision.verdict is Verdict.ALREADY:
            to = Status.SUCCEEDED
        elif decision.verdict is Verdict.DUPLICATE and decision.error:
            to = Status.INVALID
        else:
            return
        if rec is not None:
            _check(row.key, decision.previous, to)
        if to is Status.SUCCEEDED:
            aliases.append(self._alias_params(run_id, row, now))
        else:
            writes.append(self._upsert_params(run_id, row._replace(
                status=Status.INVALID, error=decision.error, reason=DUPLICATE), now))

    def _select(self, sql: str, params: tuple[Any, ...],
                values: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        return _select_in(self._conn, sql, params, values)

    @staticmethod
    def _repeated(row: Admission, rec: _Known | None, other: int) -> Decision:
        """A row whose recording an earlier row of this run already listed, under another key."""
        previous = _status(rec)
        if previous is Status.SUCCEEDED:
            return Decision(Verdict.DONE, previous)  # imported before under this key: leave it
        repeated = f"duplicate of row {other}: the same recording ({row.source})"
        error = f"{row.error}; {repeated}" if row.error else f"row {row.row_number}: {repeated}"
        return Decision(Verdict.DUPLICATE, previous, duplicate_of=other, error=error)

    @staticmethod
    def _decide(row: Admission, rec: _Known) -> Decision:
        previous = Status(rec.status)
        if previous is Status.SUCCEEDED:
            return Decision(Verdict.DONE, previous)
        if previous is Status.UPLOADING:
            return Decision(Verdict.UNKNOWN, previous, known=rec.facts,
                            sent_external_id=rec.sent_external_id)
        same_data = rec.fingerprint == row.fingerprint
        if previous is Status.FAILED and rec.last_outcome == "unknown" and \
                row.status is Status.PENDING and same_data:
            # Its last attempt may have arrived after all (as ``retry`` knows): look first.
            return Decision(Verdict.UNKNOWN, previous, known=rec.facts,
                            sent_external_id=rec.sent_external_id)
        if previous is Status.FAILED and not rec.retryable and same_data:
            return Decision(Verdict.REJECTED, previous)
        if row.status is Status.INVALID:
            return Decision(Verdict.INVALID, previous)
        return Decision(Verdict.SEND, previous, known=rec.facts)

    @staticmethod
    def _upsert_params(run_id: int, row: Admission, now: str) -> tuple[Any, ...]:
        return (row.key, row.external_id, row.manifest, row.row_number, row.source,
                row.status.value, row.fingerprint,
                None if row.fields is None else row.fields_json or json.dumps(row.fields),
                row.error, row.reason, run_id, now, _path_of(row.recording))

    @staticmethod
    def _alias_params(run_id: int, row: Admission, now: str) -> tuple[Any, ...]:
        return (row.key, row.external_id, row.manifest, row.row_number, row.source, run_id, now,
                _path_of(row.recording), row.same_as)

    # --- transitions --------------------------------------------------------------------

    def _move(self, key: str, to: Status, sets: str = "", params: Sequence[Any] = ()) -> None:
        allowed = [s.value for s, targets in TRANSITIONS.items() if s is not None and to in targets]
        marks = ",".join("?" * len(allowed))
        with self._transaction():
            cur = self._conn.execute(
                f"UPDATE recordings SET status = ?, updated_at = ?{sets} "
                f"WHERE key = ? AND status IN ({marks})",
                (to.value, _now(), *params, key, *allowed))
            if cur.rowcount != 1:
                rec = self._conn.execute("SELECT status FROM recordings WHERE key = ?",
                                         (key,)).fetchone()
                if rec is None:
                    raise LedgerError(f"{key}: no such recording in the ledger")
                _check(key, Status(rec[0]), to)

    def mark_uploading(self, key: str, size: int | None, run_id: int, *,
                       external_id: str | None = None) -> None:
        """Durable before the request leaves: a crash after this leaves the outcome unknown,
        and ``external_id`` (what the request carries) is how the call is looked up then."""
        self._move(key, Status.UPLOADING, ", size = ?, run_id = ?, sent_external_id = ?",
                   (size, run_id, external_id))

    def record_audio(self, key: str, size: int, sha256: str | None, *, run_id: int = 0,
                     row_number: int = 0, record: bool = True, path: str | None = None,
                     mtime_ns: int | None = None) -> SameAudio | None:
        """Store what probing learned of the row's file, and return another recording with
        the same content that is imported (``succeeded``; the key it was imported under) or
        may be (``uploading``: outcome unknown), if any.

        One transaction, and the ledger is written by one thread: of two rows with the same
        file, the one recorded second always sees the first. ``record=False`` (``validate``,
        whose ledger keeps no rows) compares within this run only, in the per-run table.
        """
        if not record:
            if sha256 is None:
                return None
            with self._transaction():
                rec = self._conn.execute(
                    "SELECT key, row_number FROM run_audio WHERE run_id = ? AND sha256 = ?",
                    (run_id, sha256)).fetchone()
                if rec is None:
                    self._conn.execute("INSERT INTO run_audio VALUES (?, ?, ?, ?)",
                                       (run_id, sha256, key, row_number))
                    return None
            return SameAudio(rec[0], None, rec[1], Status.PENDING)
        with self._transaction():
            self._conn.execute("UPDATE recordings SET size = ?, sha256 = ?, path = ?, "
                               "mtime_ns = ?, updated_at = ? WHERE key = ?",
                               (size, sha256, path, mtime_ns, _now(), key))
            if sha256 is None:
                return None
            rec = self._conn.execute(SAME_AUDIO_QUERY, (sha256, key)).fetchone()
        return None if rec is None else SameAudio(rec[0], rec[1], rec[2], Status(rec[3]))

    def mark_already_imported(self, key: str, same_as: str) -> None:
        """The row's recording is imported under ``same_as`` (the same audio): done, and
        nothing was sent for it."""
        self._move(key, Status.SUCCEEDED, ", same_as = ?, last_outcome = 'already imported', "
                   "error = NULL, reason = NULL", (same_as,))

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
        with self._transaction():
            self._insert_attempt(attempt)
            self._move_in_tx(key, status, attempt, retryable)

    def record_attempt(self, attempt: AttemptRecord) -> None:
        """An attempt that will be followed by another (the row stays ``uploading``)."""
        attempt = self._scrubbed(attempt)
        with self._transaction():
            self._insert_attempt(attempt)
            self._conn.execute(
                """UPDATE recordings SET attempts = attempts + 1,
                       first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?,
                       http_status = ?, error = ?, request_id = ?, last_outcome = ?,
                       duration = COALESCE(duration, 0) + ?, updated_at = ?
                   WHERE key = ?""",
                (attempt.started_at, attempt.started_at, attempt.http_status, attempt.error,
                 attempt.request_id, attempt.outcome, attempt.duration, _now(), attempt.key))

    def _scrubbed(self, attempt: AttemptRecord) -> AttemptRecord:
        if attempt.error is None or self.scrub is _as_is:
            return attempt
        return replace(attempt, error=self.scrub(attempt.error))

    def _insert_attempt(self, a: AttemptRecord) -> None:
        self._conn.execute(
            """INSERT INTO attempts (key, run_id, started_at, duration, http_status, error,
                   request_id, outcome)
               VALUES (?, (SELECT run_id FROM recordings WHERE key = ?), ?, ?, ?, ?, ?, ?)""",
            (a.key, a.key, a.started_at, a.duration, a.http_status, a.error, a.request_id,
             a.outcome))

    def _move_in_tx(self, key: str, to: Status, a: AttemptRecord, retryable: bool) -> None:
        rec = self._conn.execute("SELECT status FROM recordings WHERE key = ?", (key,)).fetchone()
        _check(key, Status(rec[0]) if rec else None, to)
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
             reason, a.request_id, a.outcome, a.duration, _now(), key))

    # --- queries ------------------------------------------------------------------------

    def candidates(self, statuses: Sequence[Status], *, include_rejected: bool,
                   since: str | None, after: int, limit: int) -> list[Candidate]:
        """The next ``limit`` rows (by rowid, after ``after``) that ``retry`` should send:
        in ``statuses``, not refused for good unless ``include_rejected``, last tried at or
        after ``since``. Keyset paging keeps memory flat over any number of rows."""
        clauses = [f"status IN ({','.join('?' * len(statuses))})", "rowid > ?"]
        params: list[Any] = [s.value for s in statuses] + [after]
        if not include_rejected:
            clauses.append("retryable = 1")
        if since:
            clauses.append("last_attempt_at >= ?")
            params.append(since)
        cur = self._conn.execute(
            "SELECT rowid, key, row_number, status, fields, last_outcome, sent_external_id, "
            "size, mtime_ns, sha256 FROM recordings "
            f"WHERE {' AND '.join(clauses)} ORDER BY rowid LIMIT ?", [*params, limit])
        return [Candidate(r[0], r[1], r[2], Status(r[3]), json.loads(r[4]) if r[4] else None,
                          r[5], r[6], _facts(r[7], r[8], r[9]))
                for r in cur]

    def runs(self) -> list[RunRecord]:
        cur = self._conn.execute("SELECT id, command, manifest, started_at, finished_at, "
                                 "exit_code, summary FROM runs ORDER BY id")
        return [RunRecord(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else {})
                for r in cur]

    def reasons(self, limit: int = 20) -> list[tuple[Status, str, int]]:
        """The commonest error reasons of failed and invalid rows, with their counts."""
        cur = self._conn.execute(
            "SELECT status, COALESCE(reason, error, '?'), COUNT(*) AS n FROM recordings "
            "WHERE status IN ('failed', 'invalid') GROUP BY 1, 2 ORDER BY n DESC LIMIT ?",
            (limit,))
        return [(Status(r[0]), r[1], r[2]) for r in cur]

    def counts(self) -> dict[Status, int]:
        counts = dict.fromkeys(Status, 0)
        for status, n in self._conn.execute(
                "SELECT status, COUNT(*) FROM recordings GROUP BY status"):
            counts[Status(status)] = n
        return counts

    def rows(self, statuses: Sequence[Status] = (),
             run_id: int | None = None) -> Iterator[LedgerRow]:
        """Every recording in manifest order, optionally only those in ``statuses`` or last
        touched by run ``run_id``."""
        clauses, params = [], [s.value for s in statuses]
        if statuses:
            clauses.append(f"status IN ({','.join('?' * len(statuses))})")
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(str(run_id))
        where = "WHERE " + " AND ".join(clauses) if clauses else ""
        cur = self._conn.execute(
            f"SELECT {', '.join(_ROW_FIELDS)} FROM recordings {where} "
            "ORDER BY manifest, row_number, key", params)
        for rec in cur:
            values = dict(zip(_ROW_FIELDS, rec, strict=True))
            values["status"] = Status(values["status"])
            yield LedgerRow(**values)


    def sent_calls(self) -> Iterator[SentCall]:
        """Every ``succeeded`` row with the call it stands for (``SentCall``), ordered by the
        group that call was sent to and then its external_id: ``verify`` counts a group's
        calls together, and looks a call that several rows stand for up once."""
        cur = self._conn.execute(
            "SELECT r.key, r.manifest, r.row_number, r.same_as, t.status, "
            "COALESCE(t.sent_external_id, t.external_id), "
            "CASE WHEN json_valid(t.fields) THEN json_extract(t.fields, '$.group_id') END, "
            "CASE WHEN json_valid(t.fields) THEN json_extract(t.fields, '$.caller_id') END "
            "FROM recordings r LEFT JOIN recordings t ON t.key = COALESCE(r.same_as, r.key) "
            "WHERE r.status = 'succeeded' ORDER BY 7, 6, r.manifest, r.row_number, r.key")
        for rec in cur:
            yield SentCall(rec[0], rec[1], rec[2], rec[3],
                           Status(rec[4]) if rec[4] is not None else None, rec[5],
                           None if rec[6] is None else str(rec[6]),
                           None if rec[7] is None else str(rec[7]))


_ROW_FIELDS = tuple(f.name for f in fields(LedgerRow))


class _Known(NamedTuple):
    """What ``admit`` reads of a key the ledger holds."""

    key: str
    status: str
    fingerprint: str | None
    retryable: int
    last_outcome: str | None
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    sent_external_id: str | None

    @property
    def facts(self) -> FileFacts | None:
        return _facts(self.size, self.mtime_ns, self.sha256)


def _facts(size: int | None, mtime_ns: int | None, sha256: str | None) -> FileFacts | None:
    if size is None or mtime_ns is None or sha256 is None:
        return None
    return FileFacts(size, mtime_ns, sha256)


_KNOWN_COLUMNS = ", ".join(_Known._fields)


def _as_is(text: str) -> str:
    return text


def _path_of(recording: str) -> str | None:
    return recording[5:] if recording.startswith("file:") else None
_RECORDED = frozenset({Verdict.SEND, Verdict.INVALID, Verdict.DUPLICATE})
_FIRST_SEEN = {Status.PENDING: Decision(Verdict.SEND), Status.INVALID: Decision(Verdict.INVALID)}
_PASSED = {SETTLED: Decision(Verdict.DONE, Status.SUCCEEDED),
           OTHER_SHARD: Decision(Verdict.ELSEWHERE),
           CHANGED: Decision(Verdict.CHANGED, Status.SUCCEEDED)}

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
                 sha256, last_outcome)
             SELECT ?, ?, ?, ?, ?, 'succeeded', 1, '', ?, ?, ?, key, size, mtime_ns, sha256,
                 'already imported'
             FROM recordings WHERE key = ? AND true
             ON CONFLICT(key) DO UPDATE SET external_id = excluded.external_id,
                 manifest = excluded.manifest, row_number = excluded.row_number,
                 source = excluded.source, status = 'succeeded', error = NULL, reason = NULL,
                 run_id = excluded.run_id, path = excluded.path, same_as = excluded.same_as,
                 size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,
                 last_outcome = excluded.last_outcome, updated_at = excluded.updated_at"""

#: The rows each run has admitted: what duplicates are looked up in. It lives in SQLite's
#: temporary database (a file, not memory: a run of ten million rows stays small), for as
#: long as the connection, and is never written to the ledger file: it must see every row of
#: this run, also those skipped as done, without rewriting what the ledger says of them.
_RUN_ROWS = (
    "CREATE TEMP TABLE IF NOT EXISTS run_rows (run_id INTEGER NOT NULL, key TEXT NOT NULL, "
    "recording TEXT, row_number INTEGER NOT NULL, PRIMARY KEY (key, run_id)) WITHOUT ROWID",
    # The looked-up column first: SQLite's planner then searches by it, not by the run's rows.
    "CREATE INDEX IF NOT EXISTS temp.run_rows_recording ON run_rows (recording, run_id)",
    # validate's files by content (``record_audio(record=False)``), first row of each.
    "CREATE TEMP TABLE IF NOT EXISTS run_audio (run_id INTEGER NOT NULL, sha256 TEXT NOT NULL, "
    "key TEXT NOT NULL, row_number INTEGER NOT NULL, PRIMARY KEY (sha256, run_id)) "
    "WITHOUT ROWID",
)


def _status(rec: _Known | None) -> Status | None:
    return None if rec is None else Status(rec.status)


@dataclass(frozen=True)
class Candidate:
    """A row ``retry`` may send again, with the metadata the ledger kept for it."""

    rowid: int
    key: str
    row_number: int | None
    status: Status
    fields: dict[str, Any] | None
    last_outcome: str | None
    #: The external_id of the last request sent for it: how a call of unknown outcome is found.
    sent_external_id: str | None = None
    known: FileFacts | None = None


@dataclass(frozen=True)
class RunRecord:
    id: int
    command: str
    manifest: str | None
    started_at: str
    finished_at: str | None
    exit_code: int | None
    summary: dict[str, Any]


def _select_in(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...],
               values: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """``sql`` with its ``IN ({})`` filled in, over ``values`` in slices that stay within
    SQLite's limit on parameters."""
    for start in range(0, len(values), 500):
        part = values[start:start + 500]
        yield from conn.execute(sql.format(",".join("?" * len(part))), (*params, *part))


class SettledKeys:
    """Which keys a ledger already holds as ``succeeded``, asked through a read-only connection
    of its own: the manifest reader (a thread, or a second process) asks before it normalizes
    a row, so that a resumed run passes over done rows at the cost of a key lookup. WAL lets
    this reader see every committed write without blocking the writer."""

    def __init__(self, path: Path) -> None:
        try:
            self._conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                         check_same_thread=False, timeout=30)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{path}: not a usable ledger ({exc})") from None

    def __call__(self, keys: Sequence[str]) -> dict[str, FileFacts | None]:
        """Of ``keys``, those the ledger holds as succeeded, each with its file's facts when
        it has a file the ledger knows (a file key's file can be checked for changes)."""
        # Filter on status here, not in SQL: with a status condition SQLite may pick the
        # status index and scan every succeeded row instead of probing the primary key.
        return {k: (_facts(size, mtime_ns, sha256) if k[0] == "f" else None)
                for k, status, size, mtime_ns, sha256 in _select_in(
                    self._conn, "SELECT key, status, size, mtime_ns, sha256 FROM recordings "
                    "WHERE key IN ({})", (), keys)
                if status == "succeeded"}

    def imported_files(self, paths: Sequence[str]) -> dict[str, tuple[str, FileFacts]]:
        """The files, by absolute path, that the ledger holds as imported with their size and
        mtime: path -> (the key it was imported under, its facts then). A row whose key is new
        (an ``external_id`` added or edited) but whose file is one of these, unchanged, is the
        same recording: it is not hashed again, let alone sent."""
        found: dict[str, tuple[str, FileFacts]] = {}
        for path, key, status, size, mtime_ns, sha256 in _select_in(
                self._conn, "SELECT path, COALESCE(same_as, key), status, size, mtime_ns, "
                "sha256 FROM recordings WHERE path IN ({})", (), paths):
            facts = _facts(size, mtime_ns, sha256)
            if status == "succeeded" and facts is not None:
                found.setdefault(path, (key, facts))
        return found

    def close(self) -> None:
        self._conn.close()


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> LedgerError:
    """The one-line error for a ledger SQLite cannot use, saying what to do where we can."""
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return LedgerError(f"{path}: cannot write the ledger: the file or its folder is "
                           "read-only (or immutable); a run needs to write it (copy it "
                           "somewhere writable), while `report` only reads it")
    if "unable to open" in text:
        return LedgerError(f"{path}: cannot open the ledger ({text}; check the permissions "
                           "of the file and its folder)")
    return LedgerError(f"{path}: not a usable ledger ({text})")


def _check(key: str, current: Status | None, to: Status) -> None:
    if to not in TRANSITIONS[current]:
        was = current.value if current else "absent"
        raise LedgerError(f"{key}: illegal ledger transition {was} -> {to.value}")


class _Transaction:
    """``BEGIN IMMEDIATE`` .. ``COMMIT``, rolled back on any exception; inside a transaction
    already open (the batch writer's), a savepoint, so that one failing call is undone alone."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._nested = False

    def __enter__(self) -> None:
        self._nested = self._conn.in_transaction
        self._conn.execute("SAVEPOINT call" if self._nested else "BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._nested:
            if exc_type is not None:
                self._conn.execute("ROLLBACK TO call")
            self._conn.execute("RELEASE call")
        else:
            self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class _Call:
    run: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


class AsyncLedger:
    """The ledger for async code, through one writer thread with group commit.

    Every call runs on that thread, in the order made. The thread takes all the calls waiting
    and runs them in one transaction with one commit (one fsync), so a hundred workers that
    finish at once cost one disk flush, not a hundred. A call returns only after the commit
    that holds it, so what it wrote is durable when it returns; a call that raises is undone
    alone (a savepoint) and the rest of its batch still commits.
    """

    MAX_BATCH = 1000

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.batches = 0  # commits made, for benchmarks
        self.calls = 0
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name="ledger-writer",
                                        daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Call(functools.partial(fn, *args, **kwargs), future, loop))
        return await future

    async def close(self) -> None:
        """Finish every call made so far, then close the file."""
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    def _write_loop(self) -> None:
        conn = self.ledger._conn
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            results: list[tuple[bool, Any]] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                for call in batch:
                    try:
                        results.append((True, call.run()))
                    except Exception as exc:  # handed to the caller, who raises it
                        results.append((False, exc))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                failure = LedgerError(f"{self.ledger.path}: could not write the ledger ({exc})")
                results = [(False, failure)] * len(batch)
            self.batches += 1
            self.calls += len(batch)
            for call, (ok, value) in zip(batch, results, strict=True):
                _deliver(call, ok, value)
        self.ledger.close()


def _deliver(call: _Call, ok: bool, value: Any) -> None:
    def settle() -> None:
        if call.future.done():  # the caller was cancelled; the write stands regardless
            return
        if ok:
            call.future.set_result(value)
        else:
            call.future.set_exception(value)

    with contextlib.suppress(RuntimeError):  # the caller's loop is gone
        call.loop.call_soon_threadsafe(settle)
