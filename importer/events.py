"""What a run tells its observers (progress bars, logs, tests), as plain data.

The pipeline only emits these; how they are shown is the observer's business, so the pipeline
never imports tqdm and tests attach an observer that just records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from .errors import (
    ApiUnavailable,
    AuthError,
    LedgerError,
    ManifestError,
    NotTheApi,
    StoreRefused,
    UsageError,
    ours_in,
)

log = logging.getLogger("importer.events")


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INVALID = "invalid"
    VALID = "valid"            # validate only: the row would be sent
    SKIPPED = "skipped"        # already done (or refused for good) in an earlier run
    RETRYING = "retrying"      # one attempt failed, another will follow
    RECONCILED = "reconciled"  # outcome was unknown; the call was found at Convirza: done
    RESENDING = "resending"    # outcome was unknown; the call was not found: sent again
    UNRESOLVED = "unresolved"  # outcome unknown and no way to find out: left 'uploading'
    OTHER_SHARD = "other-shard"  # another shard's row (--shard): not this run's business
    #: Its recording is imported under another key (the same file unchanged, or the same
    #: audio bytes): recorded succeeded, naming that key; nothing sent.
    ALREADY_IMPORTED = "already imported"
    #: Looked up before it was sent (a new ledger, ``--find-existing``) and found in Convirza:
    #: recorded succeeded; nothing sent.
    FOUND_IN_CONVIRZA = "found in Convirza"
    #: Its recording was modified within ``--min-age``: left pending for the next run.
    TOO_NEW = "too new"


class StopReason(StrEnum):
    """Why a run stopped before the end of its rows; each decides the exit code (one table,
    ``EXIT_CODES``), never the text that describes it."""

    INTERRUPTED = "interrupted"                  # Ctrl-C, SIGTERM, SIGHUP
    BUDGET = "budget"                            # --max-errors, --max-uploads, --max-duration
    FAILING = "the API kept failing"             # --max-consecutive-failures
    UNAVAILABLE = "the API is unavailable"       # the check before the first row failed
    CREDENTIALS = "credentials refused"          # 401/403, or a refused login
    NOT_THE_API = "not the API"                  # a redirect, an HTML page: a wrong --api-url
    MANIFEST = "manifest unreadable"             # the manifest broke part-way
    SETUP = "could not start"                    # settings, ledger: before the first row

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self]


#: The exit code of a run that stopped for each reason (see cli.py's table).
EXIT_CODES: dict[StopReason, int] = {
    StopReason.INTERRUPTED: 130, StopReason.BUDGET: 4, StopReason.FAILING: 4,
    StopReason.UNAVAILABLE: 4, StopReason.CREDENTIALS: 3, StopReason.NOT_THE_API: 2,
    StopReason.MANIFEST: 2, StopReason.SETUP: 2,
}


#: The exit code of a command that did its work (the ledger records it) but could not write
#: an output it was asked for: standard output (a reader that exited, a full disk) or
#: ``--summary-json``. A weightier code (rows failed, a stop) is given instead when there is one.
OUTPUT_LOST = 5


def stop_reason_for(exc: BaseException) -> StopReason | None:
    """The stop reason, hence the exit code, of an error that ends a command; None for an
    error that is a bug (exit 1). The one mapping, for runs and every other command."""
    if isinstance(exc, (AuthError, StoreRefused)):
        return StopReason.CREDENTIALS
    if isinstance(exc, NotTheApi):
        return StopReason.NOT_THE_API
    if isinstance(exc, ApiUnavailable):
        return StopReason.UNAVAILABLE
    if isinstance(exc, ManifestError):
        return StopReason.MANIFEST
    if isinstance(exc, (UsageError, LedgerError)):
        return StopReason.SETUP
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        return StopReason.INTERRUPTED
    return None


def run_stop_reason(exc: BaseException) -> StopReason:
    """The stop reason of an error that ends a run (a group's by the first error of ours in
    it): what the run's record and summary say; a bug is a setup failure there."""
    if isinstance(exc, BaseExceptionGroup):
        ours = ours_in(exc)
        return run_stop_reason(ours) if ours is not None else StopReason.SETUP
    return stop_reason_for(exc) or StopReason.SETUP


@dataclass(frozen=True)
class RowEvent:
    row: int
    key: str
    outcome: Outcome
    error: str | None = None
    reason: str | None = None  # the error without row-specific detail, for counting alike ones
    size: int = 0
    #: An invalid row's problems one by one (``reason`` joins them), each counted on its own.
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class PaceFound:
    """What a run learned of the API's pace: the rate asked (``--rate``), the pace the API
    allowed (None: it refused nothing at the rate asked), the answers 429 and the pauses
    they caused, and the pace remembered from an earlier run that this one started from."""

    asked: float
    allowed: float | None
    refused: int
    pauses: int
    started_from: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {"asked": self.asked, "allowed": None if self.allowed is None
                else round(self.allowed, 2), "refused": self.refused, "pauses": self.pauses,
                "started_from": self.started_from}

    @classmethod
    def from_dict(cls, found: object) -> PaceFound | None:
        """As ``as_dict`` wrote it in a run's summary (None for a summary without one)."""
        if not isinstance(found, dict):
            return None
        try:
            return cls(float(found["asked"]), None if found.get("allowed") is None
                       else float(found["allowed"]), int(found.get("refused", 0)),
                       int(found.get("pauses", 0)), found.get("started_from"))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class RunSummary:
    """The end-of-run account: counts by outcome, top error reasons, elapsed time, and why the
    run stopped early, if it did."""

    manifest: str
    ledger: str | None
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    stopped: str | None = None  # why, in words: the reason and its particulars
    stop_reason: StopReason | None = None
    expected: int | None = None  # rows the manifest holds, roughly (for progress), if known
    #: Rows of a call that another row holds, sent anyway (``--send-same-audio``), or, in
    #: validate, found valid (run sends one of them).
    same_audio: int = 0
    #: Rows sent as calls of their own although another call holds the same audio bytes
    #: (silence, a greeting: their date, caller, group or external_id differ).
    shared_audio: int = 0
    #: ``retry``: the invalid rows its ledger holds, which it cannot send (they never passed
    #: the checks) and which make its exit code 1 until fixed in the manifest and sent by
    #: ``run``. None for ``run`` and ``validate``, whose invalid rows are counted as read.
    invalid_left: int | None = None
    #: ``retry``: rows still pending when it ended (not selected, or not sendable yet), and
    #: manifests whose last run stopped before reading every row (``(manifest, about, why)``:
    #: only ``run`` can send rows never read). Either makes its exit code 1.
    pending_left: int | None = None
    unread: list[tuple[str, int | None, str]] = field(default_factory=list)
    #: Whether Convirza was asked before sending, which way the run went, and why.
    find_existing: str | None = None
    #: What the run learned of the API's pace (None: it sent nothing to the API).
    pace: PaceFound | None = None
    #: ``--min-age``, in seconds, when rows were left for the next run for it.
    min_age: float | None = None
    #: Rows of the ledger left to do when the run ended (``ledger/figures.py``: pending, of
    #: unknown outcome, never read), as ``report`` counts them; None: no ledger was written.
    left: int | None = None

    def add_many(self, outcome: Outcome, n: int) -> None:
        """``n`` rows with an outcome that carries nothing more (valid, skipped, another
        shard's), counted at once: a resumed run of a million rows makes no million events."""
        self.counts[counter_of(outcome)] += n

    def add(self, event: RowEvent) -> None:
        self.add_many(event.outcome, 1)
        if event.outcome is Outcome.SUCCEEDED:
            self.bytes_sent += event.size
        if event.outcome in (Outcome.FAILED, Outcome.INVALID):
            for reason in event.reasons or (event.reason or event.error or "unknown",):
                self.errors[reason] += 1

    @property
    def rows(self) -> int:
        return sum(n for k, n in self.counts.items() if k not in _NOT_ROWS.values())

    @property
    def problems(self) -> int:
        return self.counts["failed"] + self.counts["invalid"] + self.counts["unresolved"]

    @property
    def processed(self) -> int:
        """Rows that reached an outcome in this run (skipped ones excluded)."""
        return self.rows - self.counts["skipped"]

    def stop(self, reason: StopReason, detail: str | None = None) -> None:
        """Say why the run stops; the first reason given stands."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stopped = detail or reason.value

    @property
    def exit_code(self) -> int:
        """0 all done, 1 some rows failed or invalid, else the stop reason's code."""
        if self.stop_reason is not None:
            return self.stop_reason.exit_code
        return 1 if self.problems or self.invalid_left or self.pending_left or self.unread \
            else 0

    def as_dict(self) -> dict[str, object]:
        found: dict[str, object] = {
            "manifest": self.manifest, "ledger": self.ledger, "rows": self.rows,
            "counts": dict(self.counts), "top_errors": dict(self.errors.most_common(10)),
            "bytes_sent": self.bytes_sent, "same_audio": self.same_audio,
            "shared_audio": self.shared_audio, "find_existing": self.find_existing,
            "pace": self.pace.as_dict() if self.pace is not None else None,
            # The manifest's rows, roughly: what a report measures progress against.
            "expected": self.expected, "left": self.left,
            "elapsed_seconds": round(self.elapsed, 3),
            "stopped": self.stopped,
            "stop_reason": self.stop_reason.name.lower() if self.stop_reason else None,
        }
        if self.invalid_left is not None:  # a retry's
            found["invalid_left"] = self.invalid_left
            found["pending_left"] = self.pending_left
            found["unread"] = [{"manifest": m, "about": n, "why": why}
                               for m, n, why in self.unread]
        return found


#: Events that are not a row's final outcome, and the counter each one feeds.
_NOT_ROWS = {Outcome.RETRYING: "retries", Outcome.RESENDING: "resent after lookup",
             Outcome.OTHER_SHARD: "other shards"}


def counter_of(outcome: Outcome) -> str:
    """The summary's counter that an outcome feeds: its own name, or for an event that is not
    a row's outcome (a retry, a resend, another shard's row) the counter of those."""
    return _NOT_ROWS.get(outcome) or outcome.value


def is_row_outcome(outcome: Outcome) -> bool:
    """Whether the outcome ends a row (and counts in ``RunSummary.rows``)."""
    return outcome not in _NOT_ROWS


#: The path of an upload, as ``Observer.request_started`` and ``RequestEvent.path`` give it:
#: how an observer tells an upload from a lookup or a login (the client sends to it).
UPLOAD_PATH = "/v2/call/upload"


@dataclass(frozen=True)
class RequestEvent:
    """One request to the API, answered or not, as the client saw it: what the metrics need
    for latency, 429s and the limiter's pace, which no row event carries."""

    method: str
    path: str
    #: The HTTP status of the answer; None when none came (a timeout, a dropped connection).
    status: int | None
    #: From leaving the rate limiter to the answer read whole (or the failure).
    seconds: float
    #: The rate limiter's rate after this answer, in requests a second (it slows on a 429).
    rate: float
    #: The pace the API was last found to allow (None: it has refused nothing).
    allowed: float | None = None
