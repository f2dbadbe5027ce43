"""The ledger file itself: its tables, the named migrations that brought each file to them,
and the transactions every change is made in.

The schema changes only through ``MIGRATIONS``, each a named, transactional step recorded in
the file (``migrations`` table), so that opening an older ledger upgrades it and a step that
fails leaves the file as it was. Durability tests close and reopen real files.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..errors import LedgerError


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


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
    # A call is a call (issue 17): identical audio is the same call only when the call's own
    # facts agree (``records.call_facts``: the date's instant to the second, the caller, the
    # group) and no two explicit external_ids tell the rows apart. Rows that an earlier
    # version recorded "already imported" for their audio alone (``same_as`` naming a row of
    # another file) may be other calls: they go back to pending, so that the next run of
    # their manifest checks them by these rules (and sends those that are other calls).
    ("0005_call_facts", """
        ALTER TABLE recordings ADD COLUMN call TEXT;
        UPDATE recordings SET call = strftime('%s', json_extract(fields, '$.call_date'))
                || '|' || json_extract(fields, '$.caller_id')
                || '|' || json_extract(fields, '$.group_id')
            WHERE json_valid(fields) AND strftime('%s', json_extract(fields, '$.call_date'))
                IS NOT NULL AND json_extract(fields, '$.caller_id') IS NOT NULL
                AND json_extract(fields, '$.group_id') IS NOT NULL;
        UPDATE recordings SET status = 'pending', same_as = NULL, last_outcome = NULL,
                updated_at = strftime('%Y-%m-%dT%H:%M:%fZ')
            WHERE same_as IS NOT NULL AND status = 'succeeded' AND sha256 IS NOT NULL
                AND path IS NOT (SELECT t.path FROM recordings t
                                 WHERE t.key = recordings.same_as);
        UPDATE recordings SET call = (SELECT t.call FROM recordings t
                                      WHERE t.key = recordings.same_as)
            WHERE same_as IS NOT NULL AND call IS NULL;
        CREATE INDEX recordings_audio_call ON recordings(sha256, call);
        DROP INDEX IF EXISTS recordings_sha256;
    """),
    # Convirza asked before a new ledger sends (issue 17): what the sample of a manifest
    # found, and so whether its rows are looked up before they are sent, kept for its later
    # runs and for retry.
    ("0006_find_existing", """
        CREATE TABLE find_existing (
            manifest TEXT PRIMARY KEY,
            look_first INTEGER NOT NULL,
            why TEXT NOT NULL,
            decided_at TEXT NOT NULL
        );
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
MIGRATION_STEPS: dict[str, Callable[[sqlite3.Connection], None]] = {
    "0004_file_identity": _absolute_file_keys,
}




def migrate(conn: sqlite3.Connection) -> None:
    """Apply, in order, each migration the file has not had, each in a transaction of its own;
    then stamp the file with this version's layout (``PRAGMA user_version``). A file of a newer
    version is refused before anything is written to it (``refuse_newer``)."""
    refuse_newer(conn, Path(conn.execute("PRAGMA database_list").fetchone()[2]),
                 applied(conn) if _has_migrations(conn) else set())
    conn.execute("CREATE TABLE IF NOT EXISTS migrations "
                 "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {r[0] for r in conn.execute("SELECT name FROM migrations")}
    for name, script in MIGRATIONS:
        if name in done:
            continue
        statements = [s.strip() for s in script.split(";") if s.strip()]
        with Transaction(conn):
            for statement in statements:
                conn.execute(statement)
            step = MIGRATION_STEPS.get(name)
            if step is not None:
                step(conn)
            conn.execute("INSERT INTO migrations VALUES (?, ?)", (name, now()))
    if conn.execute("PRAGMA user_version").fetchone()[0] < layout():
        conn.execute(f"PRAGMA user_version = {layout()}")


def applied(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM migrations")}


def up_to_date(names: set[str]) -> bool:
    return names >= {name for name, _ in MIGRATIONS}


def layout() -> int:
    """This version's ledger layout: the number of migrations it knows. A newer version, with
    more of them, stamps a higher number into the files it writes (``PRAGMA user_version``)."""
    return len(MIGRATIONS)


def _has_migrations(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                        "AND name = 'migrations'").fetchone() is not None


def refuse_newer(conn: sqlite3.Connection, path: Path, names: set[str]) -> None:
    """Raise ``LedgerError`` when the file at ``path`` (whose migrations are ``names``) was
    written by a newer version: it lists migrations this one does not know, or its
    ``user_version`` is above this one's layout. Such a file may hold what this version would
    misread or undo (a column it does not fill, a state it does not know), so it is neither
    read nor written; only reading ``user_version`` and ``names`` came before."""
    stamped = conn.execute("PRAGMA user_version").fetchone()[0]
    unknown = sorted(names - {name for name, _ in MIGRATIONS})
    if not unknown and stamped <= layout():
        return
    theirs = max(stamped, len(names))
    listed = f", with migrations unknown here: {', '.join(unknown)}" if unknown else ""
    raise LedgerError(f"{path}: written by a newer version of convirza-import (ledger layout "
                      f"{theirs}{listed}); convirza-import {_version()} reads ledger layouts up "
                      f"to {layout()}: use the newer version (the ledger was left untouched)")


def _version() -> str:
    try:
        return version("convirza-import")
    except PackageNotFoundError:
        return "(version unknown)"


#: The rows each run has admitted: what duplicates are looked up in. It lives in SQLite's
#: temporary database (a file, not memory: a run of ten million rows stays small), for as
#: long as the connection, and is never written to the ledger file: it must see every row of
#: this run, also those skipped as done, without rewriting what the ledger says of them.
RUN_ROWS = (
    "CREATE TEMP TABLE IF NOT EXISTS run_rows (run_id INTEGER NOT NULL, key TEXT NOT NULL, "
    "recording TEXT, row_number INTEGER NOT NULL, PRIMARY KEY (key, run_id)) WITHOUT ROWID",
    # The looked-up column first: SQLite's planner then searches by it, not by the run's rows.
    "CREATE INDEX IF NOT EXISTS temp.run_rows_recording ON run_rows (recording, run_id)",
    # validate's files by content (``record_audio(record=False)``): each row's audio and call.
    "CREATE TEMP TABLE IF NOT EXISTS run_audio (run_id INTEGER NOT NULL, sha256 TEXT NOT NULL, "
    "call TEXT, key TEXT NOT NULL, row_number INTEGER NOT NULL, PRIMARY KEY (sha256, run_id, "
    "key)) WITHOUT ROWID",
)



class Transaction:
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



def select_in(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...],
               values: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """``sql`` with its ``IN ({})`` filled in, over ``values`` in slices that stay within
    SQLite's limit on parameters."""
    for start in range(0, len(values), 500):
        part = values[start:start + 500]
        yield from conn.execute(sql.format(",".join("?" * len(part))), (*params, *part))



def unusable(path: Path, exc: sqlite3.DatabaseError) -> LedgerError:
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


