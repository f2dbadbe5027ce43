"""The figures every output tells of a ledger, defined once: the end-of-run summary,
``--summary-json``, ``report`` in each format, the HTML page and the metrics all take their
counts, retries, rates and "left to do" from here, so that no two of them can disagree.

Each definition is stated where it is made, because each was once made twice, differently:

- **retries**: attempts that failed and were followed by another attempt of the same row in
  the same run (a look-up that found the call is not another attempt). That is what a run
  counts as it goes (``Outcome.RETRYING``), so the ledger's total is the sum of its runs'.
  A row sent again by a later ``retry`` or ``run`` is a new run's first attempt, not a retry.
- **unread**: rows of a manifest whose last ``run`` stopped early or was killed, that the
  ledger never saw. A manifest whose last run read it to the end has none: an errors CSV fed
  back, whose rows land under the keys they had, leaves nothing unread behind it.
- **left to do**: rows pending or of unknown outcome (``uploading``), and the unread ones;
  nothing, on a finished migration.
- **rows known**: the rows the ledger holds and the unread ones: what progress is measured
  against.
- **rates**: uploads a minute over the minutes with at least one attempt; the average over
  all of them, the recent one over those of the last hour of activity (the same kind of
  window, so the two compare).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .states import Status

#: Attempt outcomes that failed: the row was tried again, or failed for good.
FAILED_ATTEMPTS = ("error", "unknown", "refused", "not the API", "not sent")
#: Minutes of activity that make the recent rate.
RECENT_MINUTES = 60

#: An attempt (alias ``a``) that was retried: it failed, and another attempt of its row
#: followed in the same run. (``attempts_key`` indexes the look-up.)
RETRIED = """(a.outcome IN ('error', 'unknown') AND EXISTS (
    SELECT 1 FROM attempts b WHERE b.key = a.key AND b.id > a.id
        AND b.run_id IS a.run_id AND b.outcome != 'reconciled'))"""


@dataclass(frozen=True)
class Unread:
    """A manifest whose last run stopped before its end: rows it never read are not in the
    ledger, so only ``run`` can send them. ``about``: how many, from that run's count of the
    manifest's rows (None when it did not know); ``why``: how the run ended."""

    manifest: str
    about: int | None
    why: str


@dataclass(frozen=True)
class Stopped:
    """A manifest whose last ``run`` in a ledger stopped early or was killed: how it ended,
    how many rows that run said the manifest has (None: it did not know), and how many of
    them it passed over as other shards' (``--shard``)."""

    manifest: str
    why: str
    expected: int | None
    elsewhere: int


def stopped(conn: sqlite3.Connection) -> list[Stopped]:
    found = []
    for manifest, finished, summary_text in conn.execute(
            "SELECT manifest, finished_at, summary FROM runs WHERE id IN (SELECT MAX(id) "
            "FROM runs WHERE command = 'run' GROUP BY manifest) ORDER BY id").fetchall():
        summary = json.loads(summary_text) if summary_text else {}
        if finished is not None and not summary.get("stopped"):
            continue
        why = f"stopped early: {summary['stopped']}" if finished is not None else \
            "ended without a word: killed?"
        expected = summary.get("expected")
        found.append(Stopped(manifest, why, expected if isinstance(expected, int) else None,
                             int(summary.get("counts", {}).get("other shards", 0))))
    return found


def rows_by_manifest(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT manifest, COUNT(*) FROM recordings GROUP BY manifest"))


def unread(conn: sqlite3.Connection) -> list[Unread]:
    """The manifests whose last ``run`` ended before reading every row: stopped early (a
    budget, Ctrl-C, an outage) or killed (no end recorded)."""
    known = rows_by_manifest(conn)
    found = []
    for s in stopped(conn):
        about = None if s.expected is None else s.expected - known.get(s.manifest, 0) - \
            s.elsewhere
        if about is None or about > 0:
            found.append(Unread(s.manifest, about, s.why))
    return found


def unread_over(found: list[list[Stopped]], known: Mapping[str, int]) -> int:
    """The rows never read over several ledgers (``found``: each one's ``stopped``), against
    ``known``, the rows each manifest has in all of them: the shards of one manifest read it
    between them, so the rows another shard passed over are not counted unread when that
    shard's ledger is among them."""
    several = len(found) > 1
    about: dict[str, int] = {}
    for ledger in found:
        for s in ledger:
            if s.expected is not None:
                left = s.expected - known.get(s.manifest, 0) - (0 if several else s.elsewhere)
                about[s.manifest] = max(about.get(s.manifest, 0), left)
    return sum(max(0, n) for n in about.values())


def retries(conn: sqlite3.Connection, run_id: int | None = None) -> int:
    """Retries (see the module docstring), of one run or of the whole ledger."""
    where = "" if run_id is None else " AND a.run_id = ?"
    return int(conn.execute(f"SELECT COUNT(*) FROM attempts a WHERE {RETRIED}{where}",
                            () if run_id is None else (run_id,)).fetchone()[0])


def state_counts(conn: sqlite3.Connection) -> dict[str, int]:
    counts = {s.value: 0 for s in Status}
    counts.update(conn.execute("SELECT status, COUNT(*) FROM recordings GROUP BY status"))
    return counts


def left_to_do(counts: Mapping[str, int], unread_rows: int) -> int:
    """Rows without a final state yet: pending, of unknown outcome, never read."""
    return counts.get(Status.PENDING.value, 0) + counts.get(Status.UPLOADING.value, 0) + \
        unread_rows


def ledger_left(conn: sqlite3.Connection) -> int:
    """What is left to do in the ledger now (the figure a run ends its summary with)."""
    return left_to_do(state_counts(conn), sum(u.about or 0 for u in unread(conn)))


@dataclass(frozen=True)
class Rates:
    """Uploads a minute, and how long what is left takes at the recent one."""

    active_minutes: int    # minutes with at least one attempt
    average: float         # uploads a minute over the active minutes
    recent_minutes: int    # active minutes within the last hour of activity
    recent: float          # uploads a minute over those


def rates(uploads: Mapping[str, int]) -> Rates:
    """``uploads``: for each minute with at least one attempt (``2026-11-02T01:07``, UTC), the
    uploads that succeeded in it (0 when every attempt failed)."""
    if not uploads:
        return Rates(0, 0.0, 0, 0.0)
    last = _when(max(uploads))
    recent = [m for m in uploads if last - _when(m) < timedelta(minutes=RECENT_MINUTES)]
    return Rates(len(uploads), sum(uploads.values()) / len(uploads), len(recent),
                 sum(uploads[m] for m in recent) / len(recent))


def _when(minute: str) -> datetime:
    return datetime.fromisoformat(minute).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Figures:
    """A ledger's figures (or several ledgers' added up), as every report tells them."""

    counts: Mapping[str, int]
    unread: int
    retries: int
    imported: int
    bytes_imported: int
    rates: Rates

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    @property
    def rows_known(self) -> int:
        return self.rows + self.unread

    @property
    def left(self) -> int:
        return left_to_do(self.counts, self.unread)

    @property
    def eta_minutes(self) -> float | None:
        """What is left at the recent rate; 0 when nothing is; None: no rate to go by."""
        if not self.left:
            return 0.0
        return self.left / self.rates.recent if self.rates.recent > 0 else None

    def as_dict(self) -> dict[str, object]:
        """As ``report --format json`` gives them (and the HTML page's ``data-value``s)."""
        return {
            "rows": self.rows, **{s.value: self.counts.get(s.value, 0) for s in Status},
            "unread": self.unread, "rows_known": self.rows_known, "left": self.left,
            "retries": self.retries, "imported": self.imported,
            "bytes_imported": self.bytes_imported,
            "average_per_minute": round(self.rates.average, 1),
            "recent_per_minute": round(self.rates.recent, 1),
            "active_minutes": self.rates.active_minutes,
            "eta_minutes": None if self.eta_minutes is None else round(self.eta_minutes, 1),
        }
