"""The run: reader -> validate -> bounded queue -> workers -> ledger.

One reader task streams the manifest in chunks (in a thread: parsing and the filesystem block),
validates each row, and lets the ledger decide which rows still need sending. It feeds a
bounded queue, so it never runs more than ``queue_size`` rows ahead of the uploads. N worker
tasks probe each file (in a thread), mark the row ``uploading`` durably, send it through the
client with retries, and record the outcome. Progress goes to an ``Observer``; nothing here
prints.

Stopping: ``stop()`` (first Ctrl-C) stops taking new rows and lets requests in flight finish;
rows not started stay ``pending`` for the next run. A refused credential stops the run the same
way, and the rows it touched go back to ``pending``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .audio import AudioInfo, probe
from .client import ConvirzaClient
from .errors import (
    ApiError,
    AudioError,
    AuthError,
    ImporterError,
    ManifestError,
    Problem,
    RateLimited,
    UsageError,
)
from .events import NullObserver, Observer, Outcome, RowEvent, RunSummary
from .ledger import AsyncLedger, AttemptRecord, Decision, Ledger, Status, Verdict
from .limits import Attempt, RetryPolicy
from .manifest import Manifest, open_manifest
from .reader import Prepared, RowPreparer, open_reader
from .records import RowContext, UploadRecord, build_record, resolve_zone
from .report import InvalidRowsCsv
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """A row on its way to a worker."""

    row: int
    key: str
    record: UploadRecord
    cells: dict[str, str] = field(default_factory=dict)  # as read, for ``--errors-out``


_GO_ON = frozenset({Verdict.SEND, Verdict.UNKNOWN})


def _reason(problem: Problem) -> str:
    """A problem without its row's value, so that alike problems count together."""
    return f"{problem.column}: {problem.expected}" if problem.column else problem.expected


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ImportRun:
    """One ``run`` (``upload=True``) or ``validate`` (``upload=False``) of one manifest.

    ``validate`` goes through the same steps with a throwaway ledger, which decides as in a
    ``run`` (duplicates included) but keeps nothing of the rows, so that what it calls valid
    is what ``run`` would send.
    """

    def __init__(self, settings: Settings, manifest: Path, *, upload: bool = True,
                 observer: Observer | None = None, errors_out: Path | None = None) -> None:
        self.settings = settings
        self.manifest = manifest
        self.upload = upload
        self.observer = observer or NullObserver()
        #: ``validate --errors-out``: the invalid rows, as a CSV to fix and feed back.
        self.errors_out = errors_out
        self._invalid_rows: InvalidRowsCsv | None = None
        self.policy = RetryPolicy(settings.max_attempts, settings.backoff_base,
                                  settings.backoff_cap)
        self._stopping = asyncio.Event()
        self._fatal: AuthError | None = None
        self._broken: ManifestError | None = None
        self._manifest_id = str(manifest.resolve())
        try:
            zone, self._zone_name = resolve_zone(settings.timezone)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        self._ctx = RowContext(base_dir=manifest.resolve().parent, zone=zone,
                               dayfirst=settings.dayfirst, on_naive_date=self._warn_naive_once)
        self._naive_warned = False
        self.summary = RunSummary(manifest=str(manifest), ledger=None)

    def stop(self) -> None:
        """Finish what is in flight, start nothing new (the first Ctrl-C)."""
        if not self._stopping.is_set():
            log.warning("stopping: letting uploads in flight finish; rows not started stay "
                        "pending for the next run")
            self.summary.stopped = self.summary.stopped or "interrupted"
            self._stopping.set()

    def _warn_naive_once(self) -> None:
        if not self._naive_warned:
            self._naive_warned = True
            log.warning("call dates without a time zone are read as %s%s", self._zone_name,
                        "" if self.settings.timezone else " (this machine's zone; set "
                        "--timezone to choose)")

    def ledger_path(self) -> Path:
        if self.settings.ledger is not None:
            return self.settings.ledger
        return self.manifest.with_name(self.manifest.name + ".ledger.sqlite")

    async def execute(self) -> RunSummary:
        """Run to the end (or to a stop) and return the summary; ``AuthError`` if the API
        refused our credentials, after the ledger is consistent."""
        s = self.settings
        manifest = await asyncio.to_thread(
            open_manifest, self.manifest, column_map=s.column_map, defaults=s.defaults,
            chunk_rows=s.chunk_rows, sheet=s.sheet, encoding=s.encoding)
        with contextlib.ExitStack() as files, \
                tempfile.TemporaryDirectory(prefix="convirza-validate-") as scratch:
            files.callback(manifest.close)
            if self.errors_out is not None:
                self._invalid_rows = files.enter_context(
                    InvalidRowsCsv.create(self.errors_out, manifest.fields(), self._ctx.base_dir))
            path = self.ledger_path() if self.upload else Path(scratch) / "validate.sqlite"
            ledger = AsyncLedger(await asyncio.to_thread(Ledger.open, path, durable=self.upload))
            self.summary.ledger = str(path) if self.upload else None
            try:
                await self._execute(ledger, manifest)
            except BaseExceptionGroup as group:
                # Raise our own error plainly; anything else is a bug and keeps its group.
                ours = [e for e in group.exceptions if isinstance(e, ImporterError)]
                if ours:
                    raise ours[0] from None
                raise
            finally:
                await ledger.close()
        if self._broken is not None:
            raise self._broken
        if self._fatal is not None:
            raise self._fatal
        return self.summary

    async def _execute(self, ledger: AsyncLedger, manifest: Manifest) -> None:
        command = "run" if self.upload else "validate"
        run_id = await ledger.call(ledger.ledger.begin_run, command, self._manifest_id)
        self.observer.started(self.summary)
        queue: asyncio.Queue[Job | None] = asyncio.Queue(self.settings.effective_queue_size)
        async with contextlib.AsyncExitStack() as stack:
            client = None
            if self.upload:
                client = await stack.enter_async_context(ConvirzaClient(self.settings))
            stack.push_async_callback(self._finish, ledger, run_id)
            # A worker or reader that fails unexpectedly cancels the others (TaskGroup);
            # every ledger write is a transaction, so the ledger stays consistent.
            async with asyncio.TaskGroup() as tasks:
                for _ in range(self.settings.concurrency):
                    tasks.create_task(self._work(queue, ledger, client))
                tasks.create_task(self._feed(queue, ledger, run_id, manifest))

    async def _finish(self, ledger: AsyncLedger, run_id: int) -> None:
        self.summary.elapsed = time.monotonic() - self.summary.started
        if self._fatal is not None:
            self.summary.stopped = "credentials refused"
        await ledger.call(ledger.ledger.end_run, run_id, self.summary.exit_code,
                          self.summary.as_dict())
        self.observer.finished(self.summary)

    # --- reader -------------------------------------------------------------------------

    async def _feed(self, queue: asyncio.Queue[Job | None], ledger: AsyncLedger,
                    run_id: int, manifest: Manifest) -> None:
        """Read the manifest into the queue, then one end-marker per worker. A manifest that
        breaks part-way stops the run like Ctrl-C would, then ``execute`` raises its error."""
        try:
            await self._read(queue, ledger, run_id, manifest)
        except ManifestError as exc:
            self._broken = exc
            self._stopping.set()
        for _ in range(self.settings.concurrency):
            await queue.put(None)

    async def _read(self, queue: asyncio.Queue[Job | None], ledger: AsyncLedger,
                    run_id: int, manifest: Manifest) -> None:
        preparer = RowPreparer(self.manifest.name, self._manifest_id, self._ctx,
                               self.settings.auto_external_id, keep_fields=self.upload,
                               keep_cells=self.errors_out is not None)
        reader = open_reader(manifest, preparer, self._warn_naive_once)
        ahead = asyncio.ensure_future(asyncio.to_thread(reader.next_chunk))
        try:
            while not self._stopping.is_set():
                prepared = await ahead
                if prepared is None:
                    return
                # Read and check the next chunk while the ledger admits this one: in another
                # process for a big CSV, else in a thread (SQLite lets go of the GIL).
                ahead = asyncio.ensure_future(asyncio.to_thread(reader.next_chunk))
                decisions = await ledger.call(ledger.ledger.admit, run_id,
                                              [p.admission for p in prepared],
                                              record=self.upload)
                await self._dispatch(queue, prepared, decisions)
        finally:
            with contextlib.suppress(Exception):
                await ahead  # let the reader finish its chunk; rows not admitted stay unread
            await asyncio.to_thread(reader.close)

    async def _dispatch(self, queue: asyncio.Queue[Job | None], prepared: list[Prepared],
                        decisions: list[Decision]) -> None:
        """Act on the ledger's decision for each row of a chunk: queue it, or say why not."""
        for item, decision in zip(prepared, decisions, strict=True):
            adm = item.admission
            if decision.verdict in _GO_ON and adm.status is Status.PENDING:
                if decision.verdict is Verdict.UNKNOWN:
                    log.warning("row %d (%s): left 'uploading' by an earlier run, outcome "
                                "unknown; sending again", adm.row_number, adm.key)
                if item.clean is None:  # validate, and no file to probe: nothing left to do
                    self._emit(RowEvent(adm.row_number, adm.key, Outcome.VALID))
                else:
                    await queue.put(Job(adm.row_number, adm.key, build_record(item.clean),
                                        item.cells))
            elif decision.verdict is Verdict.INVALID:
                reasons = tuple(_reason(p) for p in item.problems)
                self._emit(RowEvent(adm.row_number, adm.key, Outcome.INVALID, adm.error,
                                    "; ".join(reasons), reasons=reasons),
                           item.cells, "; ".join(str(p) for p in item.problems))
            elif decision.verdict is Verdict.DUPLICATE:
                same = f"external_id {adm.external_id}" if adm.key.startswith("ext:") \
                    and not decision.error else f"recording ({adm.source})"
                repeated = f"duplicate of row {decision.duplicate_of}: the same {same}"
                error = decision.error or (f"{adm.error}; {repeated}" if adm.error
                                           else f"row {adm.row_number}: {repeated}")
                reasons = (*(_reason(p) for p in item.problems), "duplicate of an earlier row")
                self._emit(RowEvent(adm.row_number, adm.key, Outcome.INVALID, error,
                                    "; ".join(reasons), reasons=reasons),
                           item.cells, "; ".join([*(str(p) for p in item.problems), repeated]))
            else:
                self._emit(RowEvent(adm.row_number, adm.key, Outcome.SKIPPED))
            if self._stopping.is_set():
                return

    # --- workers ------------------------------------------------------------------------

    async def _work(self, queue: asyncio.Queue[Job | None], ledger: AsyncLedger,
                    client: ConvirzaClient | None) -> None:
        while True:
            job = await queue.get()
            if job is None:
                return
            if self._stopping.is_set():
                continue  # drain: the row stays pending for the next run
            info: AudioInfo | None = None
            path = job.record.recording_file
            if path is not None:
                try:
                    info = await asyncio.to_thread(probe, path, self.settings.max_file_size)
                except AudioError as exc:
                    if self.upload:
                        await ledger.call(ledger.ledger.mark_invalid, job.key,
                                          f"row {job.row}: {exc}")
                    self._emit(RowEvent(job.row, job.key, Outcome.INVALID, f"row {job.row}: {exc}",
                                        exc.reason), job.cells, str(exc))
                    continue
            if client is None:
                self._emit(RowEvent(job.row, job.key, Outcome.VALID,
                                    size=info.size if info else 0))
                continue
            await ledger.call(ledger.ledger.mark_uploading, job.key, info.size if info else None)
            await self._send(job, info, client, ledger)

    async def _send(self, job: Job, info: AudioInfo | None, client: ConvirzaClient,
                    ledger: AsyncLedger) -> None:
        """Attempts until success, a final error, the attempt limit, or a stop."""
        number = 0
        while True:
            number += 1
            started_at, t0 = _now_iso(), time.monotonic()

            def took(t0: float = t0) -> float:
                return round(time.monotonic() - t0, 3)

            try:
                answer = await client.upload(job.record, info)
            except AuthError as exc:
                await self._auth_refused(job, exc, started_at, took(), ledger)
                return
            except AudioError as exc:
                error = f"row {job.row}: {exc}"
                await ledger.call(ledger.ledger.mark_invalid, job.key, error)
                self._emit(RowEvent(job.row, job.key, Outcome.INVALID, error, exc.reason))
                return
            except ApiError as exc:
                attempt = AttemptRecord(
                    job.key, started_at, took(),
                    "unknown" if exc.outcome_unknown else "error", exc.status, exc.message,
                    exc.request_id)
                delay = self.policy.decide(Attempt(number, exc))
                if delay is None or self._stopping.is_set():
                    await ledger.call(ledger.ledger.finish, job.key, Status.FAILED, attempt,
                                      retryable=exc.retryable)
                    reason = f"HTTP {exc.status}: {exc.message}" if exc.status else exc.message
                    self._emit(RowEvent(job.row, job.key, Outcome.FAILED, f"row {job.row}: {exc}",
                                        reason))
                    return
                await ledger.call(ledger.ledger.record_attempt, attempt)
                self._emit(RowEvent(job.row, job.key, Outcome.RETRYING, str(exc)))
                log.info("row %d: attempt %d failed (%s); retrying in %.1fs", job.row, number,
                         exc, delay)
                if isinstance(exc, RateLimited):
                    client.limiter.pause_until(asyncio.get_running_loop().time() + delay)
                await self._pause(delay)
                continue
            attempt = AttemptRecord(job.key, started_at, took(), "succeeded",
                                    answer.status, None, answer.request_id)
            await ledger.call(ledger.ledger.finish, job.key, Status.SUCCEEDED, attempt)
            self._emit(RowEvent(job.row, job.key, Outcome.SUCCEEDED, size=info.size if info else 0))
            return

    async def _auth_refused(self, job: Job, exc: AuthError, started_at: str, duration: float,
                            ledger: AsyncLedger) -> None:
        """The request was refused, so nothing was imported: the row goes back to pending and
        the whole run stops, since every further request would be refused too."""
        attempt = AttemptRecord(job.key, started_at, duration, "refused", exc.status,
                                exc.message, exc.request_id)
        await ledger.call(ledger.ledger.record_attempt, attempt)
        await ledger.call(ledger.ledger.mark_pending, job.key)
        if self._fatal is None:
            self._fatal = exc  # reported once, by the caller, when the run has stopped
            log.warning("credentials refused: stopping; uploads in flight finish first")
        self._stopping.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _emit(self, event: RowEvent, cells: dict[str, str] | None = None,
              detail: str = "") -> None:
        """Count, log and show one row's outcome; an invalid row also goes to ``--errors-out``
        (``cells`` as read, ``detail`` what is wrong with them)."""
        if self._invalid_rows is not None and event.outcome is Outcome.INVALID:
            self._invalid_rows.write(event.row, detail or event.error or "", cells or {})
        self.summary.add(event)
        if event.outcome in (Outcome.FAILED, Outcome.INVALID) and event.error:
            log.warning("%s", event.error)
        self.observer.row(event)
