"""What the HTML report shows, aggregated from one or more ledgers (shards) in SQLite.

A ledger of a million rows holds a million recordings and about as many attempts; the page
must stay small and quick to build, so nothing here reads rows one by one. Each ledger is
asked a handful of ``GROUP BY`` queries (per minute, per state, per reason), whose answers
are a few thousand rows however long the ledger, and the ledgers' answers are added up. On
the 1,000,000-row ledger of ``bench/report.py`` that is faster than the same aggregation in
pandas, which must first read both tables into frames (about 900 MB for that ledger); the
benchmark table (docs/benchmarks.md) has both times, measured in one run.

Latency percentiles are read off a histogram of 20 logarithmic bins a decade (each bin
spans 12%; the middle of a bin is within 6% of any value in it), which adds up across
minutes and shards where exact percentiles would need every duration at hand.

The report reads the tables directly, through a read-only connection of its own (or an
immutable one on read-only media), so that it depends on the ledger's schema, which changes
only through named migrations, and not on ``Ledger``'s internals.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import LedgerError
from ..events import PaceFound
from .admission import DUPLICATE
from .figures import (
    FAILED_ATTEMPTS,
    RETRIED,
    Figures,
    Stopped,
    rates,
    rows_by_manifest,
    stopped,
    unread_over,
)
from .states import Status

#: Histogram bins of request latency per decade (see the module docstring).
BINS_PER_DECADE = 20
#: Attempts that sent a request and waited for its answer: their duration is a latency.
SENT = ("succeeded", "error", "unknown")
#: Bucket widths a timeline may use, in minutes: the smallest that keeps it within its points.
WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)

_ATTEMPTS_SQL = f"""
    SELECT substr(a.started_at, 1, 16), a.outcome, a.http_status = 429, {RETRIED},
           CASE WHEN a.outcome IN {SENT} AND a.duration IS NOT NULL
                THEN CAST(floor(log10(max(a.duration, 0.001)) * {BINS_PER_DECADE}) AS INTEGER)
           END,
           COUNT(*)
    FROM attempts a GROUP BY 1, 2, 3, 4, 5"""

_RECORDINGS_SQL = """
    SELECT substr(COALESCE(last_attempt_at, updated_at), 1, 16), status,
           same_as IS NOT NULL OR last_outcome = 'found in Convirza',
           last_outcome = 'reconciled', instr(COALESCE(reason, ''), ?) > 0, COUNT(*),
           COALESCE(SUM(size), 0)
    FROM recordings GROUP BY 1, 2, 3, 4, 5"""

_EXAMPLES_SQL = """
    SELECT status, reason, row_number, key, source, error FROM (
        SELECT status, COALESCE(reason, error, '?') AS reason, row_number, key, source, error,
               ROW_NUMBER() OVER (PARTITION BY status, COALESCE(reason, error, '?')
                                  ORDER BY manifest, row_number, key) AS n
        FROM recordings WHERE status IN ('failed', 'invalid'))
    WHERE n <= ?"""


@dataclass
class Minute:
    """One minute of activity (UTC), added up over ledgers."""

    succeeded: int = 0      # upload attempts that succeeded
    failed: int = 0         # attempts that failed (tried again later, or failed for good)
    throttled: int = 0      # attempts answered 429
    retries: int = 0        # attempts retried (``figures``: failed, and tried again)
    done: int = 0           # rows that became succeeded (uploaded, reconciled, already there)
    ended_badly: int = 0    # rows that became failed or invalid
    latency: Counter[int] = field(default_factory=Counter)  # bin -> sent attempts

    def add(self, other: Minute) -> None:
        for name in ("succeeded", "failed", "throttled", "retries", "done", "ended_badly"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency.update(other.latency)


@dataclass(frozen=True)
class Example:
    """A failed or invalid row, as the tables show it."""

    ledger: str
    status: str
    row: int | None
    key: str
    source: str | None
    error: str | None


@dataclass
class Reason:
    status: str
    reason: str
    rows: int
    examples: list[Example] = field(default_factory=list)


@dataclass(frozen=True)
class RunFacts:
    ledger: str
    id: int
    command: str
    manifest: str | None
    started_at: str
    finished_at: str | None
    exit_code: int | None
    counts: dict[str, int]
    stopped: str | None
    #: The rows its manifest holds, roughly, when the run recorded it.
    expected: int | None = None
    #: What it learned of the API's pace (None: a run before this was kept, or no API).
    pace: PaceFound | None = None


@dataclass
class LedgerStats:
    """Everything the page shows, for one ledger or the sum of several."""

    ledgers: list[str] = field(default_factory=list)
    #: Rows by state, over all ledgers, and for each ledger (in ``ledgers`` order).
    counts: Counter[str] = field(default_factory=Counter)
    per_ledger: list[dict[str, int]] = field(default_factory=list)
    #: Recordings imported by an upload (or found to have arrived: reconciled), and their bytes.
    imported: int = 0
    bytes_imported: int = 0
    #: Duplicates avoided: rows found already imported under another key or found in
    #: Convirza before they were sent (nothing sent), and rows refused as repeating an earlier
    #: row of their manifest.
    already_imported: int = 0
    duplicates: int = 0
    reconciled: int = 0
    #: Rows of manifests whose last run stopped early that no ledger has read yet
    #: (``figures.unread``; 0 when that run did not know how many rows its manifest has).
    unread: int = 0
    minutes: dict[str, Minute] = field(default_factory=dict)
    runs: list[RunFacts] = field(default_factory=list)
    reasons: list[Reason] = field(default_factory=list)
    problems: list[Example] = field(default_factory=list)
    problems_total: int = 0

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    def figures(self) -> Figures:
        """The figures every report tells (``figures``), from what was added up here."""
        uploads = {m: v.succeeded for m, v in self.minutes.items() if v.succeeded or v.failed}
        return Figures({s.value: self.counts[s.value] for s in Status}, self.unread,
                       sum(v.retries for v in self.minutes.values()), self.imported,
                       self.bytes_imported, rates(uploads))


def collect(paths: Sequence[Path], *, reasons: int = 10, examples: int = 3,
            problems: int = 200) -> LedgerStats:
    """Read every ledger in ``paths`` and add them up: the ``reasons`` commonest error reasons
    with ``examples`` rows each, and the first ``problems`` failed or invalid rows."""
    stats = LedgerStats()
    found: Counter[tuple[str, str]] = Counter()
    shown: dict[tuple[str, str], list[Example]] = {}
    halted: list[list[Stopped]] = []
    known: Counter[str] = Counter()
    for path in paths:
        conn = _connect(path)
        try:
            name = str(path)
            stats.ledgers.append(name)
            stats.per_ledger.append(_add_recordings(conn, stats))
            _add_attempts(conn, stats)
            for status, reason, row, key, source, error in conn.execute(_EXAMPLES_SQL,
                                                                        (examples,)):
                shown.setdefault((status, reason), []).append(
                    Example(name, status, row, key, source, error))
            found.update({(s, r): n for s, r, n in conn.execute(
                "SELECT status, COALESCE(reason, error, '?'), COUNT(*) FROM recordings "
                "WHERE status IN ('failed', 'invalid') GROUP BY 1, 2")})
            stats.problems.extend(Example(name, *r) for r in conn.execute(
                "SELECT status, row_number, key, source, error FROM recordings "
                "WHERE status IN ('failed', 'invalid') ORDER BY manifest, row_number, key "
                "LIMIT ?", (problems,)))
            stats.runs.extend(_runs(conn, name))
            halted.append(stopped(conn))
            known.update(rows_by_manifest(conn))
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{path}: cannot read the ledger ({exc})") from None
        finally:
            conn.close()
    stats.problems_total = stats.counts[Status.FAILED] + stats.counts[Status.INVALID]
    stats.problems = stats.problems[:problems]
    stats.reasons = [Reason(s, r, n, shown.get((s, r), [])[:examples])
                     for (s, r), n in found.most_common(reasons)]
    stats.unread = unread_over(halted, known)
    stats.runs.sort(key=lambda r: r.started_at)
    return stats


def _connect(path: Path) -> sqlite3.Connection:
    """A read-only connection; on read-only media, where SQLite cannot make the WAL's shared
    memory file, an immutable one (the file cannot change there)."""
    uri = path.resolve().as_uri()
    failure: sqlite3.DatabaseError | None = None
    for mode in ("mode=ro", "immutable=1"):
        try:
            conn = sqlite3.connect(f"{uri}?{mode}", uri=True)
        except sqlite3.DatabaseError as exc:
            failure = exc
            continue
        try:
            conn.execute("SELECT 1 FROM attempts LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            conn.close()
            failure = exc
            continue
        _ensure_math(conn)
        return conn
    raise LedgerError(f"{path}: cannot read the ledger ({failure})")


def _ensure_math(conn: sqlite3.Connection) -> None:
    """SQLite's math functions are a compile-time option; where they are missing, Python's
    stand in (slower, the same result)."""
    try:
        conn.execute("SELECT log10(10), floor(1.5)").fetchall()
    except sqlite3.OperationalError:
        conn.create_function("log10", 1, math.log10, deterministic=True)
        conn.create_function("floor", 1, math.floor, deterministic=True)


def _minute(stats: LedgerStats, at: str | None) -> Minute | None:
    if not at or len(at) < 16:
        return None
    return stats.minutes.setdefault(at, Minute())


_ENDED = (Status.SUCCEEDED, Status.FAILED, Status.INVALID)


def _add_recordings(conn: sqlite3.Connection, stats: LedgerStats) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for at, status, alias, reconciled, duplicate, n, size in conn.execute(_RECORDINGS_SQL,
                                                                         (DUPLICATE,)):
        counts[status] += n
        # A minute only where a chart has something to show: the axes fit the data.
        minute = _minute(stats, at) if status in _ENDED else None
        if status == Status.SUCCEEDED:
            if alias:
                stats.already_imported += n
            else:
                stats.imported += n
                stats.bytes_imported += size
            stats.reconciled += n if reconciled else 0
            if minute is not None:
                minute.done += n
        elif status in (Status.FAILED, Status.INVALID):
            stats.duplicates += n if duplicate and status == Status.INVALID else 0
            if minute is not None:
                minute.ended_badly += n
    stats.counts.update(counts)
    return {s.value: counts[s.value] for s in Status}


def _add_attempts(conn: sqlite3.Connection, stats: LedgerStats) -> None:
    for at, outcome, throttled, retry, latency_bin, n in conn.execute(_ATTEMPTS_SQL):
        minute = _minute(stats, at)
        if minute is None:
            continue
        if outcome == "succeeded":
            minute.succeeded += n
        elif outcome in FAILED_ATTEMPTS:
            minute.failed += n
        minute.throttled += n if throttled else 0
        minute.retries += n if retry else 0
        if latency_bin is not None:
            minute.latency[latency_bin] += n


def _runs(conn: sqlite3.Connection, ledger: str) -> list[RunFacts]:
    facts = []
    for rid, command, manifest, started, finished, code, summary in conn.execute(
            "SELECT id, command, manifest, started_at, finished_at, exit_code, summary "
            "FROM runs ORDER BY id"):
        data: dict[str, Any] = {}
        if summary:
            try:
                data = json.loads(summary)
            except ValueError:
                data = {}
        counts = {str(k): int(v) for k, v in (data.get("counts") or {}).items()
                  if isinstance(v, int)}
        expected = data.get("expected")
        facts.append(RunFacts(ledger, rid, command, manifest, started, finished, code, counts,
                              data.get("stopped"),
                              expected if isinstance(expected, int) else None,
                              PaceFound.from_dict(data.get("pace"))))
    return facts


# --- the time series the charts draw ------------------------------------------------------

@dataclass(frozen=True)
class Timeline:
    """The minutes put into buckets of ``width`` minutes, from ``start`` (UTC), each series one
    value per bucket; rates are per minute (averaged over the bucket)."""

    start: datetime
    width: int
    succeeded: list[float]
    failed: list[float]
    throttled: list[int]
    retries: list[int]
    p50: list[float | None]
    p90: list[float | None]
    p99: list[float | None]
    done: list[int]          # cumulative: rows succeeded by the end of each bucket
    ended_badly: list[int]   # cumulative: rows failed or invalid by then

    @property
    def times(self) -> list[datetime]:
        return [self.start + timedelta(minutes=self.width * i) for i in range(len(self.done))]


def when(minute: str) -> datetime:
    """A minute key (``2026-11-02T01:07``) as a UTC datetime."""
    return datetime.fromisoformat(minute).replace(tzinfo=UTC)


def timeline(stats: LedgerStats, points: int = 360) -> Timeline | None:
    """The minutes in at most ``points`` buckets (of a width from ``WIDTHS``); None when the
    ledgers have no timed activity at all."""
    if not stats.minutes:
        return None
    keys = sorted(stats.minutes)
    first, last = when(keys[0]), when(keys[-1])
    span = int((last - first).total_seconds() // 60) + 1
    width = next((w for w in WIDTHS if span / w <= points), WIDTHS[-1])
    epoch = int(first.timestamp() // 60) // width * width
    start = datetime.fromtimestamp(epoch * 60, UTC)
    count = (int(last.timestamp() // 60) - epoch) // width + 1
    buckets = [Minute() for _ in range(count)]
    for key in keys:
        buckets[(int(when(key).timestamp() // 60) - epoch) // width].add(stats.minutes[key])
    done = bad = 0
    cum_done, cum_bad = [], []
    for b in buckets:
        done, bad = done + b.done, bad + b.ended_badly
        cum_done.append(done)
        cum_bad.append(bad)
    return Timeline(
        start, width, [b.succeeded / width for b in buckets], [b.failed / width for b in buckets],
        [b.throttled for b in buckets], [b.retries for b in buckets],
        [percentile(b.latency, 0.50) for b in buckets],
        [percentile(b.latency, 0.90) for b in buckets],
        [percentile(b.latency, 0.99) for b in buckets], cum_done, cum_bad)


def percentile(histogram: Counter[int], q: float) -> float | None:
    """The ``q`` quantile of a latency histogram, as the middle of its bin (None: empty)."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    for b in sorted(histogram):
        seen += histogram[b]
        if seen >= rank:
            return float(10 ** ((b + 0.5) / BINS_PER_DECADE))
    return None  # unreachable: ``seen`` ends at ``total``
