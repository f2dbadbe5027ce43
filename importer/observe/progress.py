"""Progress for people: a tqdm bar on a terminal, a log line every few seconds otherwise
(cron mail, CI and Kubernetes logs), nothing with ``--quiet``. Observers only watch; the
pipeline does not know which one is attached.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Never, TextIO

from tqdm import tqdm

from ..events import Outcome, RowEvent, RunSummary
from ..observers import Observer

log = logging.getLogger("importer.progress")

#: Seconds between two rebuilds of the bar's counts text.
POSTFIX_EVERY = 0.25

_SHOWN = (("succeeded", "ok"), ("reconciled", "reconciled"), ("valid", "valid"),
          ("failed", "failed"), ("invalid", "invalid"), ("skipped", "skipped"),
          ("retries", "retried"))


def counts_text(summary: RunSummary) -> str:
    c = summary.counts
    return ", ".join(f"{label} {c[name]}" for name, label in _SHOWN if c[name]) or "nothing yet"


def rates_text(summary: RunSummary, elapsed: float) -> str:
    done = summary.counts["succeeded"]
    if elapsed <= 0 or not done:
        return ""
    return f"{done / elapsed:.1f} files/s, {summary.bytes_sent / elapsed / 1e6:.2f} MB/s"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class ProgressObserver(Observer):
    """Shows how far a run is. ``stream`` decides: a terminal gets a bar (rows done of the
    manifest's rows, rate, ETA, counts), anything else a line every ``interval`` seconds."""

    def __init__(self, *, interval: float = 10.0, stream: TextIO | None = None) -> None:
        self._summary = RunSummary(manifest="", ledger=None)
        self._stream = stream or sys.stderr
        self._interval = interval
        self._bar: tqdm[Never] | None = None
        self._last_line = time.monotonic()
        self._last_postfix = 0.0

    def started(self, summary: RunSummary) -> None:
        self._summary = summary
        self._last_line = time.monotonic()
        if self._stream.isatty():
            self._bar = tqdm(total=summary.expected, unit="row", desc="importing",
                             file=self._stream, dynamic_ncols=True, leave=False)

    def row(self, event: RowEvent) -> None:
        self.passed(event.outcome, 1)

    def passed(self, outcome: Outcome, n: int) -> None:
        s = self._summary
        now = time.monotonic()
        if self._bar is not None:
            if outcome not in (Outcome.RETRYING, Outcome.RESENDING):
                self._bar.update(n)
            # The counts text is rebuilt a few times a second, not for every row: a million
            # rows would spend seconds formatting text that tqdm draws ten times a second.
            if now - self._last_postfix >= POSTFIX_EVERY:
                self._last_postfix = now
                postfix = "; ".join(p for p in (counts_text(s), rates_text(s, now - s.started))
                                    if p)
                self._bar.set_postfix_str(postfix, refresh=False)
            return
        if now - self._last_line >= self._interval:
            self._last_line = now
            log.info("progress: %s", self.line(now - s.started))

    def line(self, elapsed: float) -> str:
        """``1200/10000 rows (12%), ok 1100, failed 3; 45.1 files/s, 3.20 MB/s, ETA 3m15s``."""
        s = self._summary
        done = s.rows + s.counts["other shards"]  # against every row of the manifest
        head = f"{done} rows"
        eta = ""
        if s.expected:
            head = f"{done}/{s.expected} rows ({100 * done / s.expected:.0f}%)"
            if done and elapsed > 0 and done < s.expected:
                eta = f", ETA {_duration((s.expected - done) * elapsed / done)}"
        rates = rates_text(s, elapsed)
        return f"{head}, {counts_text(s)}" + (f"; {rates}" if rates else "") + eta

    def finished(self, summary: RunSummary) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
