"""One exception tree for the whole importer.

Every error the importer raises on purpose is an ``ImporterError``; the command line maps the
branches to exit codes in one place (``cli.exit_code_for``)::

    ImporterError
    ├── UsageError              bad options or settings                      exit 2
    ├── ManifestError           the manifest as a whole cannot be read       exit 2
    ├── RowError                one row is invalid (every problem of it); the run goes on
    ├── AudioError              one recording cannot be sent as it is
    ├── MachineError            this machine ran short (open files, memory): not the row's
    ├── StoreRefused            an object store refused our credentials (expired...)  exit 3
    ├── Stopped                 a stop ended a wait before the request left (kept inside)
    ├── ApiError                the API refused, or could not be reached
    │   ├── AuthError           401/403 or a refused login                   exit 3
    │   ├── RateLimited         429
    │   ├── ServerError         5xx
    │   ├── RequestRejected     any other 4xx: final for that row
    │   ├── UnexpectedAnswer    an answer in a shape we do not know
    │   ├── NotTheApi           a redirect, an HTML page: not the API's answer       exit 2
    │   ├── ApiUnavailable      no answer from the API before the first row          exit 4
    │   └── TransportError      no usable answer: refused, reset, garbage
    │       └── RequestTimeout  also a TimeoutError
    └── LedgerError             the ledger is unusable, or a transition is illegal   exit 2
        └── LedgerBusy          another process is writing the ledger                exit 2

Errors carry their facts as attributes and build their message from them, so callers (the
ledger, reports, tests) never parse ``str(exc)``. No error ever holds a token.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Self

log = logging.getLogger("importer.errors")


class ImporterError(Exception):
    """Root of every error the importer raises on purpose."""


class UsageError(ImporterError):
    """The command line or the configuration is wrong; nothing was started."""


class ManifestError(ImporterError):
    """The manifest as a whole cannot be used (unreadable, no header, a required column missing)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one cell: which column, what it held, what was expected."""

    column: str
    value: str
    expected: str

    def __str__(self) -> str:
        if not self.column:  # the row as a whole, not one cell
            return self.expected
        shown = repr(self.value) if self.value != "" else "empty"
        return f"{self.column}: {self.expected} (got {shown})"


def reason_of(problem: Problem) -> str:
    """A problem without its row's value, so that alike problems count together."""
    return f"{problem.column}: {problem.expected}" if problem.column else problem.expected


class RowError(ImporterError):
    """A row failed validation: every problem of it at once (``problems``), so the user can
    fix the row in one go. ``row`` is the row number as the user's sheet shows it, once the
    caller that knows it has said (``at``)."""

    def __init__(self, problems: list[Problem], row: int | None = None) -> None:
        self.problems = list(problems)
        self.row = row
        super().__init__(self.detail)

    def at(self, row: int) -> RowError:
        """The same problems, at row ``row``."""
        return RowError(self.problems, row)

    @property
    def detail(self) -> str:
        """``row 7: caller_id: ... (got 'x'); call_date: ...``, as the ledger keeps it."""
        text = "; ".join(str(p) for p in self.problems)
        return text if self.row is None else f"row {self.row}: {text}"


class AudioError(ImporterError):
    """A recording cannot be uploaded as it is (missing, empty, not mp3/wav, too big...)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class MachineError(ImporterError):
    """This machine could not do what a row needed (too many open files, out of memory): the
    row is not at fault, so it fails for a later try instead of being called invalid (which
    counts against ``--max-errors`` and which ``retry`` skips). ``path`` is what was asked."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class StoreRefused(ImporterError):
    """An object store (S3...) refused the credentials themselves (expired, unknown, none
    found), not one object: every further row from it would be refused too, so the run stops
    with one line and the rows not sent stay pending. ``code`` is the store's error code; the
    credentials are never part of it."""

    def __init__(self, protocol: str, code: str) -> None:
        self.protocol = protocol
        self.code = code
        super().__init__(f"the {protocol}:// store refused this machine's credentials ({code}): "
                         "renew them (AWS's own variables, profile or role) and run again")


class Stopped(ImporterError):
    """A stop request (the first Ctrl-C or SIGTERM, a budget) ended a wait for the rate
    limiter or a Retry-After before the request left: nothing was sent, so its row stays
    pending. Caught where rows are sent and looked up; never reaches the command line."""

    def __init__(self) -> None:
        super().__init__("stopped before the request left")


class ApiError(ImporterError):
    """The API answered with an error, or gave no usable answer.

    ``outcome_unknown`` is true when the request may have been acted on although we saw no
    success (a timeout, a reset or a 5xx after the body was sent): such a row must be
    reconciled before it is sent again, or it could be imported twice.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        self.message = message
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
        super().__init__(self._text())

    def _text(self) -> str:
        parts = [f"HTTP {self.status}" if self.status is not None else None, self.message]
        if self.request_id:
            parts.append(f"(requestId {self.request_id})")
        return " ".join(p for p in parts if p)

    def redacted(self, scrub: Callable[[str], str]) -> Self:
        """The same error with ``scrub`` applied to what the server said: a server that
        echoes a request into its message must not put our secrets into ours."""
        clone = copy.copy(self)
        clone.message = scrub(self.message)
        clone.request_id = scrub(self.request_id) if self.request_id else self.request_id
        clone.args = (clone._text(),)
        return clone


class AuthError(ApiError):
    """Credentials were refused: the run must stop, since every further request would fail too."""


class RateLimited(ApiError):
    """429: the API asks us to slow down, maybe saying for how long (``retry_after``)."""

    retryable = True


class ServerError(ApiError):
    """5xx: the API failed; worth another try after a pause."""

    retryable = True


class RequestRejected(ApiError):
    """A 4xx other than 401/403/429 (or 408): the API will refuse this request every time."""


class UnexpectedAnswer(ApiError):
    """The API answered, but not in any shape we know; another try would not help."""


class NotTheApi(ApiError):
    """Something other than the API answered: a redirect (never followed: the body and the
    token would go to another host), an HTML page (a captive portal, a proxy, a wrong
    ``--api-url``). Nothing it says counts, success least of all: the run stops."""


class ApiUnavailable(ApiError):
    """The check before the first row found no API to talk to (refused, unreachable, 5xx):
    the run stops before any row, rather than fail rows for the API's absence."""


class TransportError(ApiError):
    """No usable answer: connection refused or reset, or a body we cannot read."""

    retryable = True


class RequestTimeout(TransportError, TimeoutError):
    """The request took longer than its timeout allows."""


class LedgerError(ImporterError):
    """The ledger file cannot be used, or a row was asked to make an illegal state change."""


class LedgerBusy(LedgerError):
    """Another run or retry holds the ledger: two writers would send the same rows twice.
    ``holder`` says who (pid, host, since when, what command), as its lock file tells."""

    def __init__(self, ledger: object, holder: str, *, waited: bool = False) -> None:
        self.ledger = str(ledger)
        self.holder = holder
        hint = "it was still held when --wait-for-ledger ran out" if waited else \
            "wait for it to finish, or pass --wait-for-ledger to wait"
        super().__init__(f"the ledger {ledger} is in use by {holder}: {hint}")


def ours_in(group: BaseExceptionGroup[BaseException]) -> ImporterError | None:
    """The first of our errors among a task group's: the one that says why the work ended."""
    return next((e for e in group.exceptions if isinstance(e, ImporterError)), None)


@contextmanager
def plain_errors() -> Iterator[None]:
    """Raise a task group's ImporterError as itself, so callers and the command line see one
    error with its message and exit code; anything else is a bug and keeps its group. The
    group's other errors are logged, one line each: they happened too (a bug in one task
    while another met a dead ledger), and dropping them would hide the second cause. The same
    error met by several tasks at once (every worker writing to a full disk) is said once."""
    try:
        yield
    except BaseExceptionGroup as group:
        ours = ours_in(group)
        if ours is not None:
            said = {one_line(ours)}
            for other in group.exceptions:
                line = one_line(other)
                if line not in said:
                    said.add(line)
                    log.error("also: %s", line)
            raise ours from None
        raise


def one_line(exc: BaseException) -> str:
    """An error as one line: our own by its message, anything else (a bug) by its type too."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ImporterError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
