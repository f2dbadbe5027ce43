"""What the parts of one run share: its settings and mode, its ledger, client, guard and
outcomes, the rows on their way (``Job``), and the one way to stop it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from .client import ConvirzaClient
from .errors import AuthError, NotTheApi
from .events import StopReason
from .guard import RunGuard, Stop
from .ledger import FileFacts
from .modes import Mode
from .outcomes import Outcomes
from .records import UploadRecord
from .run_ledger import RunLedger
from .settings import Settings

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
    #: The refusal that stopped the run for good (raised once the ledger is consistent).
    fatal: AuthError | NotTheApi | None = None

    @property
    def sends(self) -> bool:
        return self.mode.sends and self.client is not None

    def stop(self, reason: StopReason = StopReason.INTERRUPTED,
             detail: str | None = None) -> None:
        """Finish what is in flight, start nothing new (the first Ctrl-C, a budget)."""
        if self.stopping.is_set():
            return
        # A broken manifest is told once, by the error line the run ends with.
        log.log(logging.DEBUG if reason is StopReason.MANIFEST else logging.WARNING,
                "stopping (%s): letting uploads in flight finish; rows not started stay "
                "pending for the next run", detail or reason.value)
        self.outcomes.summary.stop(reason, detail)
        self.stopping.set()

    def halt(self, stop: Stop) -> None:
        self.stop(stop.reason, stop.detail)

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
