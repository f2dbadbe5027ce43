"""What the sandbox received: one row per accepted upload, in SQLite (memory by default, or a
file with ``--store``), so tests and the lookup endpoints can list calls back. File contents are
not kept, only their size and sha256, computed while the upload streamed in.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


@dataclass(frozen=True)
class StoredCall:
    call_id: int
    received_at: str
    request_id: str
    external_id: str | None
    fields: dict[str, str]
    file_name: str | None
    file_size: int | None
    file_sha256: str | None


class CallStore:
    def __init__(self, path: str = ":memory:") -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            """CREATE TABLE IF NOT EXISTS calls (
                   call_id INTEGER PRIMARY KEY,
                   received_at TEXT NOT NULL,
                   request_id TEXT NOT NULL,
                   external_id TEXT,
                   fields TEXT NOT NULL,
                   file_name TEXT,
                   file_size INTEGER,
                   file_sha256 TEXT)""")
        self._conn.execute("CREATE INDEX IF NOT EXISTS calls_external ON calls(external_id)")

    def add(self, request_id: str, fields: dict[str, str], file_name: str | None,
            file_size: int | None, file_sha256: str | None) -> int:
        cur = self._conn.execute(
            "INSERT INTO calls (received_at, request_id, external_id, fields, file_name, "
            "file_size, file_sha256) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (datetime.now(UTC).isoformat(), request_id, fields.get("external_id"),
             json.dumps(fields), file_name, file_size, file_sha256))
        return int(cur.lastrowid or 0)

    def calls(self, **equals: Any) -> list[StoredCall]:
        """Stored calls in arrival order, optionally filtered by column equality."""
        unknown = set(equals) - {"call_id", "request_id", "external_id", "file_sha256"}
        if unknown:
            raise ValueError(f"cannot filter calls on {sorted(unknown)}")
        where = " AND ".join(f"{k} = ?" for k in equals)
        sql = "SELECT * FROM calls" + (f" WHERE {where}" if where else "") + " ORDER BY call_id"
        return [StoredCall(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], r[7])
                for r in self._conn.execute(sql, list(equals.values()))]

    def call_records(self) -> list[dict[str, Any]]:
        """Calls as the lookup endpoints show them. GUESS: no public source shows a V2 call
        record, so this is the upload's fields plus an id, a creation time and the file's facts."""
        records = []
        for call in self.calls():
            f = call.fields
            records.append({
                "call_id": call.call_id, "external_id": call.external_id,
                "group_id": _int(f.get("group_id")), "campaign_id": _int(f.get("campaign_id")),
                "channel_id": _int(f.get("channel_id")), "call_started": f.get("call_date"),
                **{k: v for k, v in f.items() if k not in (
                    "external_id", "group_id", "campaign_id", "channel_id", "call_date")},
                "recording_file_name": call.file_name, "recording_size": call.file_size,
                "recording_sha256": call.file_sha256, "call_created": call.received_at,
            })
        return records

    def delete(self, call_id: int) -> bool:
        """Forget a call, as if it had been deleted in Convirza (tests of ``verify``)."""
        return self._conn.execute("DELETE FROM calls WHERE call_id = ?", (call_id,)).rowcount == 1

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        self._conn.close()
