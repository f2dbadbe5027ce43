"""What the parts of one run share: its settings and mode, its ledger, client, guard and
outcomes, the rows on their way (``Job``), and the one way to stop it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from ..client.session import ConvirzaClient
from ..errors import AuthError, NotTheApi, StoreRefused
from ..events import PaceFound, StopReason
from ..ledger.facts import FileFacts
from ..manifest.records import UploadRecord
from ..settings.resolve import Settings
from ..sources.objects import ObjectStore
from .destination import Decision, Destination
from .guard import RunGuard, Stop
from .modes import Mode
from .outcomes import Outcomes
from .run_ledger import RunLedger

log = logging.getLogger("importer.pipeline")


@dataclass(frozen=True)
class Job:
    """A row on its way to a worker. ``reconcile``: an earlier attempt's outcome is unknown,
    so the call is looked up before it may be sent again."""

    row: int
    key: str
    record: UploadRecord
    cells: dict[str, str] = field(default_factory=dict)  # as read, for ``--errors-out``
    reconcile: bool = False
    #: What the ledger knows of the file from an earlier probe (not hashed again if unchanged).
    known: FileFacts | None = None
    #: ``reconcile``: the external_id the earlier request carried (the call is looked up by
    #: it, whatever the manifest says now).
    sent_external_id: str | None = None
    #: Looked up in Convirza before it is sent (``--find-existing``): never sent before.
    look_first: bool = False


@dataclass
class RunContext:
    """One run's shared parts."""

    settings: Settings
    mode: Mode
    ledger: RunLedger
    outcomes: Outcomes
    guard: RunGuard
    #: The manifest (or retried ledger) as the ledger names it: its resolved path.
    origin: str
    client: ConvirzaClient | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: The object stores recordings are read from (``s3://``), opened on first use.
    objects: ObjectStore = field(default_factory=ObjectStore)
    #: The refusal that stopped the run for good (raised once the ledger is consistent).
    fatal: AuthError | NotTheApi | StoreRefused | None = None
    #: Rows new to the ledger are looked up in Convirza before they are sent (a new ledger
    #: whose sample found calls there, or ``--find-existing always``), and, for retry, the
    #: manifests whose rows are.
    destination: Destination | None = None
    look_first: set[str] = field(default_factory=set)
    #: What the check before sending decided (None: Convirza was not asked).
    decision: Decision | None = None
    #: Set when a row gives its reservation of the upload budget back (``budget_freed``).
    _budget: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def sends(self) -> bool:
        return self.mode.sends and self.client is not None

    def stop(self, reason: StopReason = StopReason.INTERRUPTED,
             detail: str | None = None, *, end_waits: bool = True) -> None:
        """Finish what is in flight, start nothing new (the first Ctrl-C, a budget); rows
        waiting for their turn stay pending, unless ``end_waits`` is False."""
        if self.stopping.is_set():
            return
        # A broken manifest is told once, by the error line the run ends with.
        log.log(logging.DEBUG if reason is StopReason.MANIFEST else logging.WARNING,
                "stopping (%s): letting uploads in flight finish; rows not started (or "
                "waiting for their turn) stay pending for the next run", detail or reason.value)
        self.outcomes.summary.stop(reason, detail)
        self.stopping.set()
        if self.client is not None and end_waits:
            self.client.stop_waiting()  # rows waiting for their turn stay pending

    async def start_pace(self) -> None:
        """Begin at the pace the API allowed on the last run of this ledger (a nightly job,
        a resume), when it is below the rate asked: no 429s to find it again."""
        if self.client is None:
            return
        remembered = await self.ledger.remembered_pace()
        pace = self.client.limiter.pace
        if remembered is not None and remembered < pace.target:
            pace.start_from(remembered)
            log.info("starting at %.1f requests a second: the API allowed about %.1f on the "
                     "last run of this ledger (--rate %g asked; it is probed again later)",
                     pace.rate, remembered, pace.target)

    def pace_found(self) -> PaceFound | None:
        return self.client.limiter.pace.found() if self.client is not None else None

    def close_destination(self) -> None:
        if self.destination is not None:
            self.destination.close()

    async def close_parts(self) -> None:
        """What the run opened beside the client: the lookups' scratch, the object stores."""
        self.close_destination()
        await self.objects.close()

    def budget_freed(self) -> None:
        """A row was not sent after all: workers waiting for the upload budget ask again."""
        self._budget.set()
        self._budget.clear()

    async def budget_changes(self) -> None:
        """Until a row gives its reservation back, or the run stops."""
        freed = asyncio.ensure_future(self._budget.wait())
        stopped = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait((freed, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            freed.cancel()
            stopped.cancel()

    def halt(self, stop: Stop) -> None:
        self.stop(stop.reason, stop.detail, end_waits=stop.end_waits)

    def refused_for_good(self, exc: AuthError | NotTheApi) -> None:
        """Every further request would be refused too (or answered by something else than
        the API): stop, and raise ``exc`` once the run is over."""
        if self.fatal is None:
            self.fatal = exc
            if isinstance(exc, AuthError):
                self.stop(StopReason.CREDENTIALS, "credentials refused")
            else:
                self.stop(StopReason.NOT_THE_API, f"not the API: {exc.message}")
        self.stopping.set()
