"""When a run must stop starting uploads: its budgets and its circuit breaker.

A migration meets quotas (``--max-uploads``: an API's daily allowance, reserved before a row
is checked, so that workers checking rows at once never start more than it allows), windows
(``--max-duration``: a night's maintenance window), data worse than expected (``--max-errors``)
and outages (``--max-consecutive-failures``: rows failing for the API's sake, not their own).
Each is a question asked at one point of a row's way, answered here from counts and a clock
handed in, so that every budget is tested on a fake clock, without a server. No I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

from ..client.limits import Clock
from ..events import RunSummary, StopReason
from ..settings.resolve import Settings

#: A percentage error budget is judged only once this many rows have an outcome.
MIN_ROWS_FOR_PERCENT = 20


@dataclass(frozen=True)
class Stop:
    """Why the run stops: the reason (its exit code) and its particulars, in words."""

    reason: StopReason
    detail: str
    #: Whether rows waiting for their turn (the rate limiter) stay pending. Not when the
    #: upload budget is spent: the rows waiting hold reservations within it, and go.
    end_waits: bool = True


class _Wait(Enum):
    WAIT = "wait"


#: ``before_upload``'s answer when the upload budget is held by rows on their way: wait for
#: their outcome (sent, the budget is spent; not sent, it is free again).
WAIT = _Wait.WAIT


class RunGuard:
    """The budgets and the circuit breaker of one run."""

    def __init__(self, settings: Settings, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.started = clock()
        self.uploads = 0  # started
        self.reserved = 0  # held by rows being checked, which may or may not be sent
        self.failing = 0  # rows in a row that failed for the API's sake

    def elapsed(self) -> float:
        return self.clock() - self.started

    def before_upload(self) -> Stop | _Wait | None:
        """Whether another row may go on towards an upload: None, and one upload of the
        budget is reserved for it (``upload_started`` spends it, ``unreserve`` gives it back);
        the budget that forbids it; or ``WAIT`` while rows holding the last of the budget
        have no outcome yet."""
        s = self.settings
        if s.max_duration is not None and self.elapsed() >= s.max_duration:
            return Stop(StopReason.BUDGET,
                        f"budget: --max-duration {s.max_duration:g}s reached")
        if s.max_uploads is not None and self.uploads + self.reserved >= s.max_uploads:
            if self.reserved:
                return WAIT
            return Stop(StopReason.BUDGET, f"budget: --max-uploads {s.max_uploads} reached",
                        end_waits=False)
        self.reserved += 1
        return None

    def upload_started(self) -> None:
        """The row's reservation is spent: its request leaves."""
        self.reserved = max(0, self.reserved - 1)
        self.uploads += 1

    def unreserve(self) -> None:
        """The row was not sent after all (invalid, already imported, stopped)."""
        self.reserved = max(0, self.reserved - 1)

    def after_problem(self, summary: RunSummary, rows_read: int) -> Stop | None:
        """``--max-errors`` after a row failed or was found invalid: N rows, or N% judged
        once enough rows have an outcome, against every row read so far (those done before,
        re-checked on a re-run, and those still queued: an invalid row has its outcome at
        once, a valid one only after its upload)."""
        budget = self.settings.error_budget
        if budget is None:
            return None
        limit, percent = budget
        errors = summary.problems
        if percent:
            if summary.rows < MIN_ROWS_FOR_PERCENT:
                return None
            done = max(rows_read, summary.rows)
            if errors * 100 < limit * done:
                return None
            reached = f"{errors} of {done} rows failed or invalid, over {limit:g}%"
        elif errors >= limit:
            reached = f"{errors} rows failed or invalid"
        else:
            return None
        return Stop(StopReason.BUDGET,
                    f"budget: --max-errors {self.settings.max_errors} reached ({reached})")

    def after_failure(self, retryable: bool, reason: str) -> Stop | None:
        """The circuit breaker, after a row failed every attempt. A failure for a reason that
        is not the row's own (retryable: unreachable, 5xx, throttled) counts; an answer about
        the row itself (a 4xx) shows the API is there and starts the count again. An outage
        thus stops the run after a few rows instead of burning through the manifest."""
        if not retryable:
            self.failing = 0
            return None
        self.failing += 1
        limit = self.settings.max_consecutive_failures
        if limit and self.failing >= limit:
            return Stop(StopReason.FAILING,
                        f"budget: --max-consecutive-failures {limit} reached ({self.failing} "
                        f"rows in a row failed for the API's sake; last: {reason})")
        return None

    def after_success(self) -> None:
        self.failing = 0
