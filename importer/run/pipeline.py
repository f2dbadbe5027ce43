"""The run: reader -> validate -> bounded queue -> workers -> ledger.

``ImportRun`` opens what a run needs (lock, manifest, ledger, a client that checks the API
answers), then runs one reader task (``intake``: manifest chunks, or a retry's rows, admitted
by the ledger) feeding a bounded queue, never more than ``queue_size`` rows ahead of the
uploads, and N worker tasks (``worker``: each row checked, claimed, sent, settled). Every
outcome goes to ``outcomes``, hence to an ``Observer``; nothing here prints. ``run``,
``validate`` and ``retry`` differ by their mode (``modes``).

Stopping: ``stop()`` (the first Ctrl-C) stops taking new rows and lets requests in flight
finish; rows not started stay ``pending`` for the next run. A budget, a refused credential or an
answer that is not the API's stops the run the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from ..client.limits import Clock
from ..client.session import ConvirzaClient, require_credentials
from ..errors import LedgerError, UsageError, plain_errors
from ..events import RunSummary, StopReason, run_stop_reason
from ..ledger.lock import LedgerLock
from ..ledger.queries import refuse_if_newer
from ..ledger.store import Ledger
from ..manifest.call_dates import RowContext, resolve_zone
from ..manifest.identity import fresh_paths
from ..manifest.opening import Manifest, open_manifest
from ..observers import NullObserver, Observer
from ..redact import Redactor
from ..reports.exports import InvalidRowsCsv
from ..settings.resolve import Settings
from .asking import ask_first, summary_line
from .context import Job, RunContext
from .guard import RunGuard
from .intake import Intake
from .modes import Mode, Retry, RetrySelection, Upload, Validate, ledger_path, manifest_of, origin
from .names import asks_names, row_values, with_names
from .outcomes import Outcomes
from .preflight import Preflight
from .preparing import RowPreparer
from .run_ledger import RunLedger
from .sending import Sender
from .vetting import Vetting
from .worker import work

__all__ = ["ImportRun", "Retry", "RetrySelection", "Upload", "Validate"]

log = logging.getLogger("importer.pipeline")

#: Threads that probe and hash bigger files (small ones are probed on the event loop): hashing
#: is bound by the CPU and the disk, and more threads only contend with the loop for the GIL.
PROBE_THREADS = 4


class ImportRun:
    """One ``run``, ``validate`` or ``retry`` (``mode``); ``clock`` times its budgets."""

    def __init__(self, settings: Settings, mode: Mode, *, observer: Observer | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.settings, self.mode = settings, mode
        self.observer = observer or NullObserver()
        self.clock = clock
        self.origin = origin(mode, settings)
        try:
            zone, self._zone_name = resolve_zone(settings.timezone)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        paths = fresh_paths(settings.recordings_root, settings.path_map)
        self._rows = RowContext(base_dir=self.origin.resolve().parent, zone=zone,
                                dayfirst=settings.dayfirst, on_naive_date=self._naive_once,
                                dst=settings.dst_times, paths=paths, values=row_values(settings))
        self._naive_warned = False
        self.summary = RunSummary(manifest=str(self.origin), ledger=None, started=clock())
        self._stopping = asyncio.Event()
        self._ctx: RunContext | None = None

    @property
    def errors_out(self) -> Path | None:
        return self.mode.errors_out

    def ledger_path(self) -> Path:
        return ledger_path(self.mode, self.settings)

    def stop(self, reason: StopReason = StopReason.INTERRUPTED, detail: str | None = None) -> None:
        """Finish what is in flight, start nothing new (the first Ctrl-C)."""
        if self._ctx is not None:
            self._ctx.stop(reason, detail)
        else:
            self.summary.stop(reason, detail)
            self._stopping.set()

    def _naive_once(self) -> None:
        """Said once, and only when the zone was not chosen: then it is news (TZ included)."""
        if not self._naive_warned and not self.settings.zone_chosen:
            self._naive_warned = True
            log.warning("call dates without a time zone are read as %s (this machine's zone; "
                        "set --timezone to choose)", self._zone_name)

    async def execute(self) -> RunSummary:
        """Run to the end (or to a stop) and return the summary; ``AuthError`` or ``NotTheApi``
        once the ledger is consistent, if the run stopped on one. A run or retry holds the
        ledger's lock throughout: another writer is refused or waits (--wait-for-ledger)."""
        lock = None
        if self.mode.sends:
            lock = LedgerLock(self._writable_ledger())
            wait = self.settings.wait_for_ledger
            await lock.acquire(f"{self.mode.name} {self.origin}", on_wait=log.warning,
                               wait=None if wait == float("inf") else wait or 0)
        try:
            return await self._open_and_run()
        finally:
            if lock is not None:
                lock.release()

    def _writable_ledger(self) -> Path:
        """The ledger a run or retry will write, after the checks that need no lock: there are
        credentials, its folder exists, a retry's ledger exists (a run creates its own)."""
        require_credentials(self.settings)  # no lock nor ledger made by a run that cannot send
        path = self.ledger_path()
        if not path.parent.is_dir():
            raise LedgerError(f"{path}: the folder {path.parent} does not exist")
        if isinstance(self.mode, Retry) and not path.is_file():
            raise LedgerError(f"{path}: no such ledger file")
        refuse_if_newer(path)  # before its lock is made beside it
        return path

    async def _open_and_run(self) -> RunSummary:
        s, manifest_path = self.settings, manifest_of(self.mode)
        manifest = None
        with contextlib.ExitStack() as files, \
                tempfile.TemporaryDirectory(prefix="convirza-validate-") as scratch:
            invalid_rows = None
            if manifest_path is not None:
                manifest = await asyncio.to_thread(
                    open_manifest, manifest_path, column_map=s.column_map, defaults=s.defaults,
                    chunk_rows=s.chunk_rows, sheet=s.sheet, encoding=s.encoding,
                    min_age=s.min_age)
                files.callback(manifest.close)  # before anything else can raise
                self.summary.expected = await asyncio.to_thread(manifest.estimate_rows)
                if self.mode.errors_out is not None:
                    invalid_rows = files.enter_context(InvalidRowsCsv.create(
                        self.mode.errors_out, manifest.fields(), self._rows.paths_beside_manifest))
            path = self.ledger_path() if self.mode.sends else Path(scratch) / "validate.sqlite"
            opened = await asyncio.to_thread(Ledger.open, path, create=manifest is not None,
                                             durable=self.mode.sends)
            opened.scrub = Redactor(s.secrets())
            ledger = RunLedger(opened, record=self.mode.sends, observer=self.observer)
            self.summary.ledger = str(path) if self.mode.sends else None
            ctx = self._context(ledger)
            ctx.outcomes.invalid_rows = invalid_rows
            try:
                with plain_errors():
                    intake = await self._run(ctx, manifest)
            finally:
                await ledger.close()
        if intake.broken is not None:
            raise intake.broken
        if ctx.fatal is not None:
            raise ctx.fatal
        return self.summary

    def _context(self, ledger: RunLedger) -> RunContext:
        guard = RunGuard(self.settings, self.clock)
        guard.started = self.summary.started
        where = ("`validate --errors-out FILE` writes them all" if not self.mode.sends else
                 f"`convirza-import report {self.ledger_path()} --status invalid --status "
                 "failed` lists them all")
        ctx = RunContext(self.settings, self.mode, ledger,
                         Outcomes(self.summary, self.observer, guard,
                                  lambda stop: ctx.halt(stop), where),
                         guard, str(self.origin.resolve()), stopping=self._stopping)
        self._ctx = ctx
        return ctx

    async def _run(self, ctx: RunContext, manifest: Manifest | None) -> Intake:
        s = self.settings
        await ctx.ledger.begin(self.mode.name, ctx.origin)
        queue: asyncio.Queue[Job | None] = asyncio.Queue(s.effective_queue_size)
        async with contextlib.AsyncExitStack() as stack:
            # Whatever ends the run from here on, the ledger records how it ended.
            stack.push_async_exit(functools.partial(self._finish, ctx))
            self.observer.started(self.summary)
            preflight = None
            if self.mode.sends or s.preflight or s.check_urls or s.fetch_urls or \
                    asks_names(manifest, s):
                ctx.client = await stack.enter_async_context(ConvirzaClient(s))
                ctx.client.observer = self.observer  # told of every request
                if self.mode.sends or s.preflight:
                    await ctx.client.check_api()  # no API, no row touched: fail in seconds
                if s.preflight:
                    preflight = Preflight(ctx.client)
            await ctx.start_pace()
            self._rows = await with_names(ctx, manifest, self._rows)
            await ask_first(ctx, manifest, self._rows)
            stack.push_async_callback(ctx.close_parts)
            probes = ThreadPoolExecutor(min(s.concurrency, PROBE_THREADS),
                                        thread_name_prefix="probe")
            stack.callback(probes.shutdown, wait=False, cancel_futures=True)
            intake = Intake(ctx, self._rows, preflight)
            vetting, sender = Vetting(ctx, probes), Sender(ctx)
            # A worker or reader that fails unexpectedly cancels the others (TaskGroup);
            # every ledger write is a transaction, so the ledger stays consistent.
            async with asyncio.TaskGroup() as tasks:
                for _ in range(s.concurrency):
                    tasks.create_task(work(ctx, queue, vetting, sender))
                tasks.create_task(intake.feed(queue, self._source(manifest), s.concurrency))
            if isinstance(self.mode, Retry):
                await intake.left_over()
        return intake

    def _source(self, manifest: Manifest | None) -> tuple[Manifest, RowPreparer] | None:
        if manifest is None:
            return None
        s, sends = self.settings, self.mode.sends
        return manifest, RowPreparer(
            manifest.path.name, str(self.origin.resolve()), self._rows, s.auto_external_id,
            keep_fields=sends, keep_cells=self.mode.errors_out is not None,
            keep_clean=sends or s.preflight, check_urls=s.check_urls or s.fetch_urls,
            files=s.max_file_size,
            shard=s.shard_of if s.shard is not None else None,
            ledger=self.ledger_path() if sends else None)

    async def _finish(self, ctx: RunContext, exc_type: type[BaseException] | None,
                      exc: BaseException | None, tb: TracebackType | None) -> bool:
        """Record how the run ended, also when an error ends it before its first row (a
        refused setting, an API that does not answer: not a run left looking "running or
        killed"); the error itself goes on."""
        self.summary.elapsed = self.clock() - self.summary.started
        self.summary.find_existing, self.summary.pace = summary_line(ctx), ctx.pace_found()
        if exc is not None:
            self.summary.stop(run_stop_reason(exc), str(exc) or type(exc).__name__)
        self.summary.left = await ctx.ledger.end(self.summary.exit_code, self.summary.as_dict())
        self.observer.finished(self.summary)
        return False
