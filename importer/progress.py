"""Progress for people: a tqdm bar on a terminal, a log line every few seconds otherwise
(cron and CI logs), nothing with ``--quiet``. Observers only watch; the pipeline does not know
which one is attached.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Never, TextIO

from tqdm import tqdm

from .events import Outcome, RowEvent, RunSummary

log = logging.getLogger("importer.progress")


def _counts_text(summary: RunSummary) -> str:
    c = summary.counts
    parts = [f"{name} {c[name]}" for name in ("succeeded", "valid", "failed", "invalid",
                                             "skipped", "retries") if c[name]]
    return ", ".join(parts) or "nothing yet"


class ProgressObserver:
    """Shows how far a run is. ``stream`` decides: a terminal gets a bar, anything else a log
    line every ``interval`` seconds."""

    def __init__(self, *, interval: float = 10.0, stream: TextIO | None = None) -> None:
        self._summary = RunSummary(manifest="", ledger=None)
        self._stream = stream or sys.stderr
        self._interval = interval
        self._bar: tqdm[Never] | None = None
        self._last_line = time.monotonic()

    def started(self, summary: RunSummary) -> None:
        self._summary = summary
        self._last_line = time.monotonic()
        if self._stream.isatty():
            self._bar = tqdm(total=None, unit="row", desc="importing", file=self._stream,
                             dynamic_ncols=True, leave=False)

    def row(self, event: RowEvent) -> None:
        if event.outcome is Outcome.RETRYING:
            return
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(_counts_text(self._summary), refresh=False)
            return
        now = time.monotonic()
        if now - self._last_line >= self._interval:
            self._last_line = now
            elapsed = now - self._summary.started
            rate = self._summary.rows / elapsed if elapsed > 0 else 0.0
            log.info("progress: %d rows (%s), %.1f rows/s, %.1f MB sent", self._summary.rows,
                     _counts_text(self._summary), rate, self._summary.bytes_sent / 1e6)

    def finished(self, summary: RunSummary) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
