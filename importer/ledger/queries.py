"""What is read from a ledger: its rows for reports, the rows ``retry`` sends again, counts and
reasons, the runs; and, for the manifest reader, which keys and files are already done.

Reads never write and never block a run writing the same file (WAL): ``report`` reads a ledger
while a run fills it, and the reader asks about each chunk through a read-only connection of its
own.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import LedgerError
from ..events import PaceFound
from .facts import FileFacts, facts
from .figures import Unread, unread
from .schema import refuse_newer, select_in, unusable
from .states import Status


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



ROW_FIELDS = tuple(f.name for f in fields(LedgerRow))


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
    manifest: str | None = None


@dataclass(frozen=True)
class RunRecord:
    id: int
    command: str
    manifest: str | None
    started_at: str
    finished_at: str | None
    exit_code: int | None
    summary: dict[str, Any]


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


def _as_is(text: str) -> str:
    return text


class LedgerQueries:
    """The reading half of ``Ledger``, on the connection it holds."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        #: Applied to every error text written (a last defence: the client already blanks
        #: our secrets in what servers echo back).
        self.scrub: Callable[[str], str] = _as_is

    def close(self) -> None:
        self._conn.close()

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
            "size, mtime_ns, sha256, manifest FROM recordings "
            f"WHERE {' AND '.join(clauses)} ORDER BY rowid LIMIT ?", [*params, limit])
        return [Candidate(r[0], r[1], r[2], Status(r[3]), json.loads(r[4]) if r[4] else None,
                          r[5], r[6], facts(r[7], r[8], r[9]), r[10])
                for r in cur]

    def find_existing(self) -> dict[str, tuple[bool, str]]:
        """What the sample found of each manifest first run on a new ledger: whether its rows
        are looked up before they are sent, and why (``--find-existing``)."""
        return {m: (bool(look), why) for m, look, why in self._conn.execute(
            "SELECT manifest, look_first, why FROM find_existing")}

    def runs(self) -> list[RunRecord]:
        cur = self._conn.execute("SELECT id, command, manifest, started_at, finished_at, "
                                 "exit_code, summary FROM runs ORDER BY id")
        return [RunRecord(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else {})
                for r in cur]

    def remembered_pace(self) -> float | None:
        """The pace the API allowed (``PaceFound.allowed``) on the latest finished run that
        met a 429: where the next run starts instead of the rate asked. A ledger keeps it in
        its runs' summaries; older runs, and runs the API refused nothing, have none."""
        for (text,) in self._conn.execute(
                "SELECT summary FROM runs WHERE finished_at IS NOT NULL AND summary IS NOT NULL "
                "ORDER BY id DESC LIMIT 50"):
            found = PaceFound.from_dict(json.loads(text).get("pace"))
            if found is not None and found.allowed is not None:
                return found.allowed
        return None

    def unread(self) -> list[Unread]:
        """The manifests whose last ``run`` ended before reading every row (``figures``)."""
        return unread(self._conn)

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
            f"SELECT {', '.join(ROW_FIELDS)} FROM recordings {where} "
            "ORDER BY manifest, row_number, key", params)
        for rec in cur:
            values = dict(zip(ROW_FIELDS, rec, strict=True))
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




def connect_readonly(path: Path) -> tuple[sqlite3.Connection, set[str]]:
    """A connection to the ledger at ``path`` that reads only, and the migrations the file has
    had. It never blocks a run writing the file (WAL readers do not), and it reads a ledger on
    read-only media: when SQLite cannot create the WAL's shared-memory file there, the file is
    read as immutable, which is what it is. Where the file may be written, the connection may
    too (it never does): the last connection to close then folds the WAL back into the file and
    removes it, as a run does, where a read-only one would leave ``-wal`` and ``-shm`` behind."""
    if not path.is_file():
        raise LedgerError(f"{path}: no such ledger file")
    opened = _connect_any(path)
    if isinstance(opened, sqlite3.DatabaseError):
        raise unusable(path, opened) from None
    conn, names = opened
    try:
        refuse_newer(conn, path, names)  # a newer version's ledger: neither read nor written
    except LedgerError:
        conn.close()
        raise
    return conn, names


def refuse_if_newer(path: Path) -> None:
    """``LedgerError`` for a ledger a newer version wrote, asked before a run makes anything
    beside it (its lock); whatever else is wrong with the file is for the open that follows
    to say (an empty file, for one, becomes a ledger)."""
    if not path.is_file():
        return
    opened = _connect_any(path)
    if isinstance(opened, sqlite3.DatabaseError):
        return
    conn, names = opened
    try:
        refuse_newer(conn, path, names)
    finally:
        conn.close()


def _connect_any(path: Path) -> tuple[sqlite3.Connection, set[str]] | sqlite3.DatabaseError:
    """The first connection that reads the ledger's migrations (see ``connect_readonly``),
    with them; or what the last try met."""
    uri = path.resolve().as_uri()
    failure: sqlite3.DatabaseError = sqlite3.DatabaseError("cannot open")
    for mode in ("mode=rw", "mode=ro", "immutable=1"):
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(f"{uri}?{mode}", uri=True, check_same_thread=False,
                                   timeout=30)
            return conn, {r[0] for r in conn.execute("SELECT name FROM migrations")}
        except sqlite3.DatabaseError as exc:
            failure = exc
            if conn is not None:
                conn.close()
    return failure


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
        return {k: (facts(size, mtime_ns, sha256) if k[0] == "f" else None)
                for k, status, size, mtime_ns, sha256 in select_in(
                    self._conn, "SELECT key, status, size, mtime_ns, sha256 FROM recordings "
                    "WHERE key IN ({})", (), keys)
                if status == "succeeded"}

    def imported_files(self, paths: Sequence[str]) -> dict[str, tuple[str, FileFacts]]:
        """The files, by absolute path, that the ledger holds as imported with their size and
        mtime: path -> (the key it was imported under, its facts then). A row whose key is new
        (an ``external_id`` added or edited) but whose file is one of these, unchanged, is the
        same recording: it is not hashed again, let alone sent."""
        found: dict[str, tuple[str, FileFacts]] = {}
        for path, key, status, size, mtime_ns, sha256 in select_in(
                self._conn, "SELECT path, COALESCE(same_as, key), status, size, mtime_ns, "
                "sha256 FROM recordings WHERE path IN ({})", (), paths):
            known = facts(size, mtime_ns, sha256)
            if status == "succeeded" and known is not None:
                found.setdefault(path, (key, known))
        return found

    def close(self) -> None:
        self._conn.close()


