"""A claimed row sent: attempts until an outcome (the one retry loop, ``limits.retrying``), and
the one way to find out whether a request of unknown outcome arrived (``reconcile``).

The API has no idempotency key and answers an upload with no call id, so a timeout, a dropped
connection or a 5xx after the body left leaves the outcome unknown. Before such a row is sent
again, its call is looked up by the external_id the request carried: found, the row is done
("reconciled"); not found, it is sent again; impossible to look up, it stays ``uploading``
(``--on-unknown=skip``) or is sent anyway (``resend``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum

from ..audio.info import AudioInfo
from ..client.limits import retrying
from ..errors import ApiError, AudioError, AuthError, NotTheApi, Stopped, StoreRefused, UsageError
from ..events import Outcome, RowEvent, StopReason
from ..ledger.books import AttemptRecord
from .context import Job, RunContext

log = logging.getLogger("importer.pipeline")


class Found(Enum):
    """What a reconciling lookup learned of a call."""

    THERE = "there"
    MISSING = "missing"
    UNKNOWABLE = "unknowable"  # no external_id to look for, or the lookup failed


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Timing:
    """When an attempt began, for its audit record."""

    started_at: str
    t0: float

    @classmethod
    def now(cls) -> Timing:
        return cls(_now_iso(), time.monotonic())

    def record(self, key: str, outcome: str, exc: ApiError | None = None, *,
               status: int | None = None, request_id: str | None = None,
               error: str | None = None) -> AttemptRecord:
        if exc is not None:
            status, error, request_id = exc.status, exc.message, exc.request_id
        return AttemptRecord(key, self.started_at, round(time.monotonic() - self.t0, 3),
                             outcome, status, error, request_id)


class Sender:
    """The sending half of a run's workers."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    async def lookup(self, job: Job, external_id: str | None = None) -> Found:
        """Whether Convirza has this row's call, found by ``external_id`` (by default the one
        an earlier request carried, else the row's). An id the API's filter cannot carry (a
        comma) is looked for among the calls of the row's group from its caller."""
        client = self.ctx.client
        external_id = external_id or job.sent_external_id or job.record.external_id
        if external_id is None or client is None:
            return Found.UNKNOWABLE
        narrow = {"group_id": job.record.group_id, "caller_id": job.record.caller_id}
        try:
            return Found.THERE if await client.find_calls(external_id, narrow) else \
                Found.MISSING
        except Stopped:
            return Found.UNKNOWABLE  # the run stops: the row is left as it is
        except NotTheApi as exc:
            self.ctx.refused_for_good(exc)
        except (ApiError, UsageError) as exc:  # a refused token shows again on upload
            log.warning("row %d: cannot look the call up by external_id %r (%s)", job.row,
                        external_id, exc)
        return Found.UNKNOWABLE

    async def found_before(self, job: Job) -> bool:
        """For a row never sent, on a ledger whose rows are looked up first: True when it is
        settled here (found in Convirza: succeeded, nothing sent), or when Convirza cannot be
        asked (the run stops; the row stays pending, never sent on a guess); False to send."""
        destination, record = self.ctx.destination, job.record
        if destination is None or record.external_id is None:
            return False
        timing = Timing.now()
        try:
            there = await destination.holds(record.external_id, record.group_id,
                                            record.caller_id)
        except Stopped:
            return True  # the run stops: the row stays pending
        except (AuthError, NotTheApi) as exc:
            self.ctx.refused_for_good(exc)
            return True
        except ApiError as exc:
            self.ctx.stop(StopReason.UNAVAILABLE, f"cannot ask Convirza whether row {job.row} "
                          f"is already imported ({exc}); rows not sent stay pending, never sent "
                          "on a guess")
            return True
        if not there:
            return False
        await self.ctx.ledger.found(job.key, record.external_id,
                                    timing.record(job.key, "found in Convirza"))
        self.ctx.outcomes.emit(RowEvent(job.row, job.key, Outcome.FOUND_IN_CONVIRZA))
        log.debug("row %d: %s: found in Convirza by external_id %s: not sent", job.row,
                  job.key, record.external_id)
        return True

    async def reconcile(self, job: Job, found: Found | None = None) -> bool:
        """For a row whose last request has an unknown outcome: True when it is settled here
        (found, so succeeded; or left unresolved, ``--on-unknown=skip``), False when it is
        to be sent (not found, or ``--on-unknown=resend``). ``found``: already looked up."""
        timing = Timing.now()
        found = found or await self.lookup(job)
        if found is Found.THERE:
            await self.ctx.ledger.succeeded(timing.record(job.key, "reconciled"))
            self.ctx.outcomes.emit(RowEvent(job.row, job.key, Outcome.RECONCILED))
            log.info("row %d: an earlier attempt did arrive (found by external_id %s)",
                     job.row, job.sent_external_id or job.record.external_id)
            return True
        if found is Found.UNKNOWABLE and self.ctx.stopping.is_set():
            return True  # stopped while it was looked up: left for the next run to look up
        if found is Found.UNKNOWABLE and self.ctx.settings.on_unknown == "skip":
            self.ctx.outcomes.emit(RowEvent(
                job.row, job.key, Outcome.UNRESOLVED,
                f"row {job.row}: the upload may have arrived and the call cannot be looked up; "
                "left 'uploading' (--on-unknown=resend sends it again)",
                "outcome unknown, not resent"))
            return True
        return False

    async def send(self, job: Job, info: AudioInfo | None) -> bool:
        """Attempts until success, a final error, the attempt limit, or a stop; True when the
        recording is now imported (sent, or found to have arrived)."""
        client = self.ctx.client
        assert client is not None
        timing = Timing.now()

        async def once() -> bool:
            nonlocal timing
            timing = Timing.now()
            try:
                answer = await client.upload(job.record, info)
            except Stopped:  # a stop ended its wait for its turn: it never left
                await self.ctx.ledger.unclaim(job.key)
                return False
            except StoreRefused as exc:  # its store's credentials expired midway: not sent
                await self.ctx.ledger.unclaim(job.key)
                self.ctx.fatal = self.ctx.fatal or exc
                self.ctx.stop(StopReason.CREDENTIALS, str(exc))
                return False
            except AudioError as exc:  # changed or gone since it was checked: nothing sent
                await self.ctx.ledger.failed(timing.record(job.key, "not sent", error=str(exc)),
                                             retryable=True)
                self.ctx.outcomes.emit(RowEvent(job.row, job.key, Outcome.FAILED,
                                                f"row {job.row}: {exc}", exc.reason))
                return False
            await self.ctx.ledger.succeeded(timing.record(
                job.key, "succeeded", status=answer.status, request_id=answer.request_id))
            self.ctx.outcomes.emit(RowEvent(job.row, job.key, Outcome.SUCCEEDED,
                                            size=info.size if info else 0))
            self.ctx.guard.after_success()
            return True

        async def failed(exc: ApiError, number: int, delay: float | None) -> bool | None:
            return await self._after_error(job, timing.record(
                job.key, "unknown" if exc.outcome_unknown else "error", exc), exc, number,
                delay)

        return await retrying(once, client.policy, pause=self._pause, on_error=failed)

    async def _after_error(self, job: Job, attempt: AttemptRecord, exc: ApiError, number: int,
                           delay: float | None) -> bool | None:
        """What a failed attempt means for its row: True or False to end with (imported or
        not), None to let the policy try again after ``delay``."""
        ctx = self.ctx
        if isinstance(exc, (AuthError, NotTheApi)):
            # Refused, or answered by something else: nothing was imported. The row goes back
            # to pending, and the run stops, since every further request would meet the same.
            outcome = "refused" if isinstance(exc, AuthError) else "not the API"
            await ctx.ledger.not_sent(replace(attempt, outcome=outcome))
            ctx.refused_for_good(exc)
            return False
        if exc.outcome_unknown:
            found = await self.lookup(job, job.record.external_id)
            if found is Found.THERE or (found is Found.UNKNOWABLE and
                                        ctx.settings.on_unknown == "skip"):
                await ctx.ledger.attempted(attempt)
                await self.reconcile(job, found)
                return found is Found.THERE
        if delay is None or ctx.stopping.is_set():
            await ctx.ledger.failed(attempt, retryable=exc.retryable)
            reason = f"HTTP {exc.status}: {exc.message}" if exc.status else exc.message
            ctx.outcomes.emit(RowEvent(job.row, job.key, Outcome.FAILED, f"row {job.row}: {exc}",
                                       reason))
            stop = ctx.guard.after_failure(exc.retryable, reason)
            if stop is not None:
                ctx.halt(stop)
            return False
        await ctx.ledger.attempted(attempt)
        ctx.outcomes.emit(RowEvent(job.row, job.key, Outcome.RETRYING, str(exc)))
        log.info("row %d: attempt %d failed (%s); retrying in %.1fs", job.row, number, exc,
                 delay)
        return None

    async def _pause(self, seconds: float) -> None:
        """A pause between attempts that a stop cuts short."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ctx.stopping.wait(), seconds)
