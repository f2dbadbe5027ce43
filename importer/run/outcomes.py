"""Where every row's outcome goes: counted in the run's summary, shown to its observer, logged
when it is a problem, written to ``--errors-out`` when it is an invalid row, and judged against
the error budget.

One place, so that the reader (rows refused as read, passed over, duplicates) and the workers
(rows checked, sent, reconciled) report alike, and a million rows with nothing to say of each
(done before, another shard's) cost one count per chunk, not a million events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..events import Outcome, RowEvent, RunSummary
from ..observers import Observer
from ..reports.exports import InvalidRowsCsv
from .guard import RunGuard, Stop

log = logging.getLogger("importer.pipeline")

#: Rows whose problem is logged one by one; past this, a line says where the rest are (a
#: systematic error in a million-row manifest must not print a million lines). ``--verbose``
#: logs every one.
ROW_WARNINGS = 100
_PROBLEMS = frozenset({Outcome.FAILED, Outcome.INVALID, Outcome.UNRESOLVED})
#: What ``--verbose`` logs of a row that went well, by its outcome (a reconciled row and
#: one already imported are logged as info where they are found).
_SAID_WHEN_VERBOSE = {Outcome.SUCCEEDED: "uploaded", Outcome.VALID: "valid",
                      Outcome.RESENDING: "not found imported: sent again"}
_TALLIED = {Outcome.SKIPPED: "done in an earlier run: skipped",
            Outcome.OTHER_SHARD: "of other shards: passed over",
            Outcome.ALREADY_IMPORTED: "already imported under another key: not sent",
            Outcome.VALID: "valid"}


class Outcomes:
    """The outcomes of one run. ``stop`` is told when the error budget is spent; ``where``
    says, once the problems stop being logged one by one, where to find them all."""

    def __init__(self, summary: RunSummary, observer: Observer, guard: RunGuard,
                 stop: Callable[[Stop], None], where: str) -> None:
        self.summary = summary
        self.observer = observer
        self.guard = guard
        self.stop = stop
        self.where = where
        #: ``--errors-out``: the invalid rows, as a CSV to fix and feed back.
        self.invalid_rows: InvalidRowsCsv | None = None
        #: Rows the reader has handed over, for a percentage error budget.
        self.rows_read = 0
        self._problems_logged = 0

    def emit(self, event: RowEvent, cells: dict[str, str] | None = None,
             detail: str = "") -> None:
        """Count, log and show one row's outcome; an invalid row also goes to
        ``--errors-out`` (``cells`` as read, ``detail`` what is wrong with them)."""
        if self.invalid_rows is not None and event.outcome is Outcome.INVALID:
            self.invalid_rows.write(event.row, detail or event.error or "", cells or {})
        self.summary.add(event)
        if event.outcome in _PROBLEMS:
            if event.error:
                self.problem(event.error)
            stop = self.guard.after_problem(self.summary, self.rows_read)
            if stop is not None:
                self.stop(stop)
        elif event.outcome in _SAID_WHEN_VERBOSE:
            # --verbose: every row's outcome, the good ones too (retries are logged as info).
            size = f" ({event.size:,} bytes)" if event.size else ""
            log.debug("row %d: %s: %s%s", event.row, event.key,
                      _SAID_WHEN_VERBOSE[event.outcome], size)
        self.observer.row(event)

    def tally(self, outcome: Outcome, n: int) -> None:
        """``n`` rows whose outcome carries nothing more: counted at once, not one by one
        (``--verbose`` says how many, once per chunk of the manifest)."""
        if n:
            self.summary.add_many(outcome, n)
            self.observer.passed(outcome, n)
            log.debug("%d rows %s", n, _TALLIED.get(outcome, outcome.value))

    def problem(self, text: str) -> None:
        """Log a row's problem: the first ``ROW_WARNINGS`` one by one, then one line that
        says where the rest are (``--verbose``: every one)."""
        self._problems_logged += 1
        if self._problems_logged <= ROW_WARNINGS or log.isEnabledFor(logging.DEBUG):
            log.warning("%s", text)
        elif self._problems_logged == ROW_WARNINGS + 1:
            log.warning("more rows have problems; they are not logged one by one (--verbose "
                        "logs every one); %s", self.where)
