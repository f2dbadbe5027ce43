"""``verify LEDGER``: the migration's proof. Every row a ledger holds as ``succeeded`` is
looked for in Convirza by the external_id its call was sent with, and is found once (good),
not at all (missing) or more than once (a duplicate in Convirza). A row found already imported
under another key (``same_as``) stands for that key's call, which is looked for once for all
the rows that stand for it; a row imported without any external_id cannot be looked for
(unverifiable, listed, not a failure).

How many requests: the API's filter is an AND of rules and nothing else (no OR, no IN, no
comma inside a value), so the baseline is one lookup per external_id
(``filter=external_id=X``). When many rows went to one group, listing that group's calls
(``filter=group_id=G``, 100 a page) and counting external_ids can take far fewer requests, but
the API says nothing of how many calls a group holds, and a busy group may hold millions that
are not ours. So, for a group with ``n`` calls to find (``n >= MIN_LISTED``), one request asks
for the group's call at offset ``100 * (n - 2) - 1``: when there is none, the group has fewer
calls than that, and listing it costs at most ``n - 2`` pages (``n - 1`` requests with the
question) instead of ``n``; when there is one, the calls are looked up one by one. External
ids are always matched exactly here, whatever the API's filter lets through. An external_id
holding a comma, which no filter can carry, is found among its group's calls, or its group's
and caller's.

A group listing sees that group's calls only: a duplicate sent to another group (the row's
group edited between two attempts) is seen by the lookups one by one alone.

What to do next is said: a call missing is sent again by putting its row back to ``pending``
(``--requeue-missing``, under the ledger's lock, as a run would hold it) and running
``retry``; a call present twice names the calls to remove in Convirza (the oldest is kept).

Lookups go through the run's ``ConvirzaClient``: one session, its rate limit, its retries.
What was found, and how it is told, is in ``findings``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client.lookups import DEFAULT_PAGE, MIN_LISTED, listing_limit
from ..client.resources import RESOURCES, Call, build_filter
from ..client.session import ConvirzaClient
from ..errors import ApiError, AuthError, NotTheApi, RequestRejected, plain_errors
from ..events import StopReason
from ..ledger.lock import LedgerLock
from ..ledger.queries import SentCall
from ..ledger.states import Status
from ..ledger.store import Ledger
from ..settings.resolve import Settings
from .findings import CallVerdict, Finding, VerifyResult

log = logging.getLogger("importer.verify")

CALLS = RESOURCES["calls"]


#: Discrepancies kept in the result (the ``--output`` file has every one).
KEEP = 1000


@dataclass
class _Wanted:
    """One call to find, and the ledger rows that stand for it."""

    external_id: str
    group_id: str | None
    caller_id: str | None
    rows: list[SentCall]


@dataclass
class _Batch:
    """The rows of one group, as ``Ledger.sent_calls`` gives them one group after another."""

    group_id: str | None
    wanted: list[_Wanted] = field(default_factory=list)
    unverifiable: list[tuple[SentCall, str]] = field(default_factory=list)


def _batches(rows: Iterator[SentCall]) -> Iterator[_Batch]:
    """Rows grouped by group, and by call within a group (the ledger orders them so)."""
    batch: _Batch | None = None
    for row in rows:
        if batch is None or row.group_id != batch.group_id:
            if batch is not None:
                yield batch
            batch = _Batch(row.group_id)
        if row.target_status is not Status.SUCCEEDED:
            state = row.target_status.value if row.target_status else "not in the ledger"
            batch.unverifiable.append((row, f"stands for {row.same_as}, which is {state}"))
        elif not row.external_id:
            batch.unverifiable.append((row, "imported without an external_id"))
        elif batch.wanted and batch.wanted[-1].external_id == row.external_id:
            batch.wanted[-1].rows.append(row)
        else:
            batch.wanted.append(_Wanted(row.external_id, row.group_id, row.caller_id, [row]))
    if batch is not None:
        yield batch


class Verifier:
    """Verify ``ledgers`` against the API; ``on_finding`` hears of each discrepancy as it is
    found (``--output`` writes it). ``stop`` finishes the lookups in flight and starts no
    other (Ctrl-C)."""

    def __init__(self, settings: Settings, ledgers: Sequence[Path], *,
                 on_finding: Callable[[Finding], None] | None = None,
                 requeue_missing: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.ledgers = tuple(ledgers)
        self.requeue_missing = requeue_missing
        self.requests = 0
        self._on_finding = on_finding
        self._clock = clock
        self._rows: Counter[str] = Counter()
        self._calls: Counter[str] = Counter()
        self._findings: list[Finding] = []
        self._failures = 0  # lookups in a row that failed (the circuit breaker)
        self._stop: tuple[StopReason, str] | None = None
        self._ledger = ""
        self._progress = _Progress(settings.progress_interval, clock)
        #: ``--requeue-missing``: the keys of the rows whose call is missing (the row each
        #: call was sent for), of the ledger being verified; and how many were put back.
        self._missing: list[str] = []
        self._requeued: dict[str, int] = {}

    def stop(self, reason: StopReason = StopReason.INTERRUPTED, detail: str | None = None) -> None:
        if self._stop is None:
            log.warning("stopping (%s): letting the lookups in flight finish",
                        detail or reason.value)
            self._stop = (reason, detail or reason.value)

    async def execute(self) -> VerifyResult:
        started = self._clock()
        opened: list[Ledger] = []
        locks: list[LedgerLock] = []
        try:
            if self.requeue_missing:  # it writes the ledgers: as a run, one writer at a time
                for path in self.ledgers:
                    locks.append(await _locked(path))
            for path in self.ledgers:
                opened.append(await asyncio.to_thread(Ledger.open_readonly, path))
            counted = [await asyncio.to_thread(ledger.counts) for ledger in opened]
            self._progress.total = sum(counts[Status.SUCCEEDED] for counts in counted)
            with plain_errors():
                async with ConvirzaClient(self.settings) as client:
                    await client.check_api()
                    for ledger in opened:
                        if self._stop is None:
                            await self._verify(client, ledger)
                            await self._requeue(ledger.path)
        finally:
            for ledger in opened:
                ledger.close()
            for lock in locks:
                lock.release()
        reason, detail = self._stop or (None, None)
        return VerifyResult(self.ledgers, dict(self._rows), dict(self._calls), self.requests,
                            tuple(self._findings), self._clock() - started, reason, detail,
                            dict(self._requeued))

    async def _requeue(self, path: Path) -> None:
        """``--requeue-missing``: the rows whose call is missing go back to pending."""
        keys, self._missing = self._missing, []
        if self.requeue_missing and keys:
            self._requeued[str(path)] = await asyncio.to_thread(_requeue_rows, path, keys)

    async def _verify(self, client: ConvirzaClient, ledger: Ledger) -> None:
        self._ledger = str(ledger.path)
        batches = _batches(ledger.sent_calls())
        slots = asyncio.Semaphore(self.settings.concurrency)
        async with asyncio.TaskGroup() as tasks:

            async def start(work: Coroutine[Any, Any, None]) -> None:
                await slots.acquire()
                tasks.create_task(_released(slots, work))

            while self._stop is None:
                batch = await asyncio.to_thread(next, batches, None)
                if batch is None:
                    break
                for row, detail in batch.unverifiable:
                    self._record(CallVerdict.UNVERIFIABLE, row, None, detail=detail)
                    self._rows[CallVerdict.UNVERIFIABLE] += 1
                    self._progress.advance(1, self._rows, self.requests)
                group = batch.group_id
                if group and group.isdigit() and len(batch.wanted) >= MIN_LISTED and \
                        await self._listing_pays(client, group, len(batch.wanted)):
                    await start(self._list_group(client, group, batch.wanted))
                    continue
                for wanted in batch.wanted:
                    if self._stop is not None:
                        break
                    await start(self._look_up(client, wanted))

    async def _listing_pays(self, client: ConvirzaClient, group: str, n: int) -> bool:
        """Whether the group holds fewer than ``100 * (n - 2)`` calls, so that listing them
        costs fewer requests than ``n`` lookups: the one call at that offset tells."""
        self.requests += 1
        try:
            return await client.group_smaller_than(group, listing_limit(n))
        except (AuthError, NotTheApi):
            raise
        except ApiError as exc:
            log.debug("group %s: cannot size it (%s); looking its calls up one by one", group,
                      exc)
            return False

    async def _list_group(self, client: ConvirzaClient, group: str,
                          wanted: list[_Wanted]) -> None:
        """Count the group's calls by external_id, page by page, for every call to find."""
        found: dict[str, list[int]] = {w.external_id: [] for w in wanted}
        seen = 0
        try:
            async for call in client.iterate(CALLS, filter=build_filter({"group_id": group})):
                seen += 1
                if isinstance(call, Call) and call.external_id in found:
                    found[call.external_id].append(call.call_id)
        except (AuthError, NotTheApi):
            raise
        except RequestRejected as exc:  # no group_id filter on calls after all
            self.requests += 1
            log.warning("the API refused to list group %s's calls (%s): looking them up one "
                        "by one", group, exc.message)
            for one in wanted:
                await self._look_up(client, one)
            return
        except ApiError as exc:
            self.requests += seen // DEFAULT_PAGE + 1
            self._failed(exc)
            for one in wanted:
                self._settle(one, None, str(exc))
            return
        self.requests += seen // DEFAULT_PAGE + 1
        self._failures = 0
        for one in wanted:
            self._settle(one, found[one.external_id])

    async def _look_up(self, client: ConvirzaClient, wanted: _Wanted) -> None:
        """The calls carrying exactly this external_id: by a filter on it, or, for one the
        filter cannot carry (a comma, spaces around it), among its group's and caller's."""
        eid = wanted.external_id
        if "," in eid or eid.strip() != eid:
            narrow = {k: v for k, v in (("group_id", wanted.group_id),
                                        ("caller_id", wanted.caller_id))
                      if v and "," not in v}
            if not narrow:
                for row in wanted.rows:
                    self._record(CallVerdict.UNVERIFIABLE, row, None, detail=(
                        "its external_id holds a comma, which the API's filter cannot carry, "
                        "and it was sent without a group_id or caller_id to narrow by"))
                    self._rows[CallVerdict.UNVERIFIABLE] += 1
                self._progress.advance(len(wanted.rows), self._rows, self.requests)
                return
            rule = build_filter(narrow)
        else:
            rule = build_filter({"external_id": eid})
        ids: list[int] = []
        seen = 0
        try:
            async for call in client.iterate(CALLS, filter=rule):
                seen += 1
                if isinstance(call, Call) and call.external_id == eid:
                    ids.append(call.call_id)
        except (AuthError, NotTheApi):
            raise
        except ApiError as exc:
            self.requests += seen // DEFAULT_PAGE + 1
            self._failed(exc)
            self._settle(wanted, None, str(exc))
            return
        self.requests += seen // DEFAULT_PAGE + 1
        self._failures = 0
        self._settle(wanted, ids)

    def _failed(self, exc: ApiError) -> None:
        """One more lookup in a row failed after its retries: the circuit breaker."""
        self._failures += 1
        limit = self.settings.max_consecutive_failures
        if limit and self._failures >= limit:
            self.stop(StopReason.FAILING, f"{self._failures} lookups in a row failed, the "
                      f"last with {exc} (--max-consecutive-failures)")

    def _settle(self, wanted: _Wanted, call_ids: list[int] | None, error: str = "") -> None:
        if call_ids is None:
            verdict = CallVerdict.UNCHECKED
        else:
            verdict = CallVerdict.PRESENT if len(call_ids) == 1 else \
                CallVerdict.MISSING if not call_ids else CallVerdict.DUPLICATED
        self._calls[verdict] += 1
        if verdict is CallVerdict.MISSING and self.requeue_missing:
            self._missing.extend(dict.fromkeys(row.same_as or row.key for row in wanted.rows))
        for row in wanted.rows:
            self._rows[verdict] += 1
            if verdict is not CallVerdict.PRESENT:
                self._record(verdict, row, call_ids, detail=error)
        self._progress.advance(len(wanted.rows), self._rows, self.requests)

    def _record(self, verdict: CallVerdict, row: SentCall, call_ids: list[int] | None, *,
                detail: str = "") -> None:
        finding = Finding(verdict, self._ledger, row.manifest, row.row_number, row.key,
                          row.external_id, row.same_as, row.group_id,
                          None if call_ids is None else len(call_ids),
                          " ".join(str(i) for i in call_ids or ()), detail)
        if len(self._findings) < KEEP:
            self._findings.append(finding)
        if self._on_finding is not None:
            self._on_finding(finding)


async def _locked(path: Path) -> LedgerLock:
    """The ledger's lock, held as a run holds it, or ``LedgerBusy`` naming its holder."""
    lock = LedgerLock(path)
    await lock.acquire(f"verify {path} --requeue-missing")
    return lock


def _requeue_rows(path: Path, keys: list[str]) -> int:
    ledger = Ledger.open(path, create=False)
    try:
        return ledger.requeue(keys, "verify: not found in Convirza")
    finally:
        ledger.close()


async def _released(slots: asyncio.Semaphore, work: Coroutine[Any, Any, None]) -> None:
    try:
        await work
    finally:
        slots.release()


class _Progress:
    """A log line every ``interval`` seconds: rows verified of the ledgers' succeeded rows."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.total = 0
        self.done = 0
        self._interval = interval
        self._clock = clock
        self._started = self._last = clock()

    def advance(self, n: int, rows: Counter[str], requests: int) -> None:
        self.done += n
        now = self._clock()
        if now - self._last < self._interval:
            return
        self._last = now
        elapsed = now - self._started
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = ""
        if self.done and self.total > self.done and elapsed > 0:
            eta = f", ETA {(self.total - self.done) * elapsed / self.done:.0f}s"
        counts = ", ".join(f"{v.value} {rows[v]}" for v in CallVerdict if rows[v])
        log.info("verify: %d/%d rows%s: %s; %d requests%s", self.done, self.total, share,
                 counts or "nothing yet", requests, eta)
