"""The run: reader -> validate -> bounded queue -> workers -> ledger.

One reader task streams the manifest in chunks (in a thread: parsing and the filesystem block),
validates each row, and lets the ledger decide which rows still need sending. It feeds a
bounded queue, so it never runs more than ``queue_size`` rows ahead of the uploads. N worker
tasks probe and hash each file (in a pool of N threads, so one worker's probe overlaps the
others' uploads), look its sha256 up in the ledger, mark the row ``uploading`` durably, send
it through the client with retries, and record the outcome. Progress goes to an
``Observer``; nothing here prints.

Stopping: ``stop()`` (first Ctrl-C) stops taking new rows and lets requests in flight finish;
rows not started stay ``pending`` for the next run. A refused credential stops the run the same
way, and the rows it touched go back to ``pending``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .audio import AudioInfo, check_url_form, judge_url_answer, probe
from .client import ConvirzaClient
from .errors import (
    ApiError,
    AudioError,
    AuthError,
    ImporterError,
    LedgerError,
    ManifestError,
    NotTheApi,
    Problem,
    RowError,
    UsageError,
    reason_of,
)
from .events import (
    NullObserver,
    Observer,
    Outcome,
    RowEvent,
    RunSummary,
    StopReason,
    stop_reason_for,
)
from .ledger import (
    DUPLICATE,
    AsyncLedger,
    AttemptRecord,
    Decision,
    FileFacts,
    Ledger,
    SameAudio,
    Status,
    Verdict,
)
from .limits import Attempt, RetryPolicy
from .lock import LedgerLock
from .manifest import Manifest, open_manifest
from .preflight import Preflight
from .reader import Prepared, RowPreparer, open_reader
from .records import (
    RowContext,
    RowInvalid,
    UploadRecord,
    build_record,
    resolve_zone,
    validate_row,
)
from .redact import Redactor
from .report import InvalidRowsCsv
from .settings import Settings

log = logging.getLogger(__name__)

#: A percentage error budget is judged only once this many rows have an outcome.
MIN_ROWS_FOR_PERCENT = 20
#: Rows whose problem is logged one by one; past this, a line says where the rest are (a
#: systematic error in a million-row manifest must not print a million lines). ``--verbose``
#: logs every one.
ROW_WARNINGS = 100


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


@dataclass(frozen=True)
class RetrySelection:
    """Which ledger rows ``retry`` sends again."""

    statuses: tuple[Status, ...] = (Status.FAILED,)
    include_rejected: bool = False
    since: str | None = None


_GO_ON = frozenset({Verdict.SEND, Verdict.UNKNOWN})


def _row_error(row: int, problems: list[Problem]) -> str:
    """The ledger's error text for an invalid row: its number as the sheet shows it, then every
    problem (column, value, what was expected)."""
    return RowError("", row, problems).detail


def _reason_for(exc: BaseException) -> StopReason:
    """The stop reason of an error that ends a run (its exit code, as ``cli`` maps it)."""
    if isinstance(exc, BaseExceptionGroup):
        ours = [e for e in exc.exceptions if isinstance(e, ImporterError)]
        return _reason_for(ours[0]) if ours else StopReason.SETUP
    return stop_reason_for(exc) or StopReason.SETUP


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class _Claim:
    """A worker's hold on one audio content (sha256) while its row is on its way: other rows
    of the run with the same audio wait for ``done``, which gives the key the audio was
    imported under, or None when it was not."""

    key: str
    row: int = 0
    sha256: str | None = None
    imported: str | None = None
    done: asyncio.Future[str | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    def take(self, sha256: str, row: int, claims: dict[str, _Claim]) -> None:
        self.sha256, self.row = sha256, row
        claims[sha256] = self


class ImportRun:
    """One ``run`` (``upload=True``) or ``validate`` (``upload=False``) of one manifest, or a
    ``retry`` of ledger rows (``manifest`` None, ``retry`` given).

    ``validate`` goes through the same steps with a throwaway ledger, which decides as in a
    ``run`` (duplicates included) but keeps nothing of the rows, so that what it calls valid
    is what ``run`` would send.
    """

    def __init__(self, settings: Settings, manifest: Path | None, *, upload: bool = True,
                 observer: Observer | None = None, retry: RetrySelection | None = None,
                 errors_out: Path | None = None) -> None:
        if manifest is None and (retry is None or settings.ledger is None):
            raise UsageError("a run needs a manifest, or a ledger to retry from")
        self.settings = settings
        self.manifest = manifest
        self.retry = retry
        self.upload = upload
        self.observer = observer or NullObserver()
        #: ``validate --errors-out``: the invalid rows, as a CSV to fix and feed back.
        self.errors_out = errors_out
        self._invalid_rows: InvalidRowsCsv | None = None
        self.policy = RetryPolicy(settings.max_attempts, settings.backoff_base,
                                  settings.backoff_cap)
        self._stopping = asyncio.Event()
        self._fatal: AuthError | NotTheApi | None = None
        self._broken: ManifestError | None = None
        self._preflight: Preflight | None = None
        self._run_id = 0
        self._uploads_started = 0
        self._row_warnings = 0
        self._failing = 0  # rows in a row failed for the API's sake (the circuit breaker)
        self._rows_read = 0  # rows the reader has handed over (for a percentage budget)
        #: Audio (sha256) on its way in this run, and the worker that holds it.
        self._claims: dict[str, _Claim] = {}
        origin = manifest if manifest is not None else self.ledger_path()
        self._manifest_id = str(origin.resolve())
        try:
            zone, self._zone_name = resolve_zone(settings.timezone)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        self._ctx = RowContext(base_dir=origin.resolve().parent, zone=zone,
                               dayfirst=settings.dayfirst, on_naive_date=self._warn_naive_once)
        self._naive_warned = False
        self.summary = RunSummary(manifest=str(origin), ledger=None)

    def stop(self, reason: StopReason = StopReason.INTERRUPTED,
             detail: str | None = None) -> None:
        """Finish what is in flight, start nothing new (the first Ctrl-C, or a budget)."""
        if not self._stopping.is_set():
            # A broken manifest is told once, by the error line the run ends with.
            log.log(logging.DEBUG if reason is StopReason.MANIFEST else logging.WARNING,
                    "stopping (%s): letting uploads in flight finish; rows not started stay "
                    "pending for the next run", detail or reason.value)
            self.summary.stop(reason, detail)
            self._stopping.set()

    def _over_budget(self) -> str | None:
        """The budget that forbids starting another upload, if one does."""
        s = self.settings
        if s.max_uploads is not None and self._uploads_started >= s.max_uploads:
            return f"--max-uploads {s.max_uploads} reached"
        if s.max_duration is not None and \
                time.monotonic() - self.summary.started >= s.max_duration:
            return f"--max-duration {s.max_duration:g}s reached"
        return None

    def _check_error_budget(self) -> None:
        budget = self.settings.error_budget
        if budget is None:
            return
        limit, percent = budget
        errors = self.summary.problems
        if percent:
            # Judged once enough rows have an outcome, against every row read so far: those
            # done before (a re-run re-checks the rows that were invalid, and must not judge
            # them against its new rows alone) and those still queued (an invalid row has its
            # outcome at once, a valid one only after its upload).
            if self.summary.rows < MIN_ROWS_FOR_PERCENT:
                return
            done = max(self._rows_read, self.summary.rows)
            if errors * 100 < limit * done:
                return
            reached = f"{errors} of {done} rows failed or invalid, over {limit:g}%"
        elif errors >= limit:
            reached = f"{errors} rows failed or invalid"
        else:
            return
        self.stop(StopReason.BUDGET,
                  f"budget: --max-errors {self.settings.max_errors} reached ({reached})")

    def _warn_naive_once(self) -> None:
        if not self._naive_warned:
            self._naive_warned = True
            log.warning("call dates without a time zone are read as %s%s", self._zone_name,
                        "" if self.settings.timezone else " (this machine's zone; set "
                        "--timezone to choose)")

    def ledger_path(self) -> Path:
        if self.settings.ledger is not None:
            return self.settings.ledger
        assert self.manifest is not None
        return self.manifest.with_name(self.manifest.name + ".ledger.sqlite")

    async def execute(self) -> RunSummary:
        """Run to the end (or to a stop) and return the summary; ``AuthError`` if the API
        refused our credentials, after the ledger is consistent. A run or retry holds the
        ledger's lock throughout: a second writer is refused (``LedgerBusy``) or waits."""
        lock = None
        if self.upload:
            lock = LedgerLock(self._writable_ledger())
            wait = self.settings.wait_for_ledger
            await lock.acquire(self._command, wait=None if wait == float("inf") else wait or 0,
                               on_wait=log.warning)
        try:
            return await self._execute_locked()
        finally:
            if lock is not None:
                lock.release()

    @property
    def _command(self) -> str:
        name = "retry" if self.manifest is None else "run" if self.upload else "validate"
        return f"{name} {self.manifest or self.ledger_path()}"

    def _writable_ledger(self) -> Path:
        """The ledger a run or retry will write, after the checks that need no lock: its
        folder exists, and a retry's ledger exists (a run creates its own)."""
        path = self.ledger_path()
        if not path.parent.is_dir():
            raise LedgerError(f"{path}: the folder {path.parent} does not exist")
        if self.manifest is None and not path.is_file():
            raise LedgerError(f"{path}: no such ledger file")
        return path

    async def _execute_locked(self) -> RunSummary:
        s = self.settings
        manifest = None
        if self.manifest is not None:
            manifest = await asyncio.to_thread(
                open_manifest, self.manifest, column_map=s.column_map, defaults=s.defaults,
                chunk_rows=s.chunk_rows, sheet=s.sheet, encoding=s.encoding)
            self.summary.expected = await asyncio.to_thread(manifest.estimate_rows)
        with contextlib.ExitStack() as files, \
                tempfile.TemporaryDirectory(prefix="convirza-validate-") as scratch:
            if manifest is not None:
                files.callback(manifest.close)
                if self.errors_out is not None:
                    self._invalid_rows = files.enter_context(InvalidRowsCsv.create(
                        self.errors_out, manifest.fields(), self._ctx.base_dir))
            path = self.ledger_path() if self.upload else Path(scratch) / "validate.sqlite"
            opened = await asyncio.to_thread(
                Ledger.open, path, create=manifest is not None, durable=self.upload)
            opened.scrub = Redactor(s.secrets())
            ledger = AsyncLedger(opened)
            ledger.observer = self.observer
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

    async def _execute(self, ledger: AsyncLedger, manifest: Manifest | None) -> None:
        command = "retry" if manifest is None else "run" if self.upload else "validate"
        run_id = await ledger.call(ledger.ledger.begin_run, command, self._manifest_id)
        self._run_id = run_id
        queue: asyncio.Queue[Job | None] = asyncio.Queue(self.settings.effective_queue_size)
        async with contextlib.AsyncExitStack() as stack:
            # Whatever ends the run from here on, the ledger records how it ended.
            stack.push_async_exit(functools.partial(self._finish, ledger, run_id))
            self.observer.started(self.summary)
            client = None
            if self.upload or self.settings.preflight or self.settings.check_urls:
                client = await stack.enter_async_context(ConvirzaClient(self.settings))
                client.observer = self.observer
                if self.upload or self.settings.preflight:
                    await client.check_api()  # no API, no row touched: fail in seconds
                if self.settings.preflight:
                    self._preflight = Preflight(client)
            # Probes get their own threads, one per worker, so that they never wait behind
            # the reader's, and a 50 MB hash never holds up another worker's upload.
            probes = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="probe")
            stack.callback(probes.shutdown, wait=False, cancel_futures=True)
            # A worker or reader that fails unexpectedly cancels the others (TaskGroup);
            # every ledger write is a transaction, so the ledger stays consistent.
            async with asyncio.TaskGroup() as tasks:
                for _ in range(self.settings.concurrency):
                    tasks.create_task(self._work(queue, ledger, client, probes))
                tasks.create_task(self._feed(queue, ledger, run_id, manifest))

    async def _finish(self, ledger: AsyncLedger, run_id: int, exc_type: type[BaseException] | None,
                      exc: BaseException | None, tb: object) -> bool:
        """Record how the run ended, also when an error ends it before its first row (a
        refused setting, no credentials: exit 2, not a run left looking "running or killed");
        the error itself goes on."""
        self.summary.elapsed = time.monotonic() - self.summary.started
        if exc is not None:
            self.summary.stop(_reason_for(exc), str(exc) or type(exc).__name__)
        await ledger.call(ledger.ledger.end_run, run_id, self.summary.exit_code,
                          self.summary.as_dict())
        self.observer.finished(self.summary)
        return False

    # --- reader -------------------------------------------------------------------------

    async def _feed(self, queue: asyncio.Queue[Job | None], ledger: AsyncLedger,
                    run_id: int, manifest: Manifest | None) -> None:
        """Read the manifest (or the ledger's rows to retry) into the queue, then one
        end-marker per worker. A manifest that breaks part-way stops the run like Ctrl-C
        would, then ``execute`` raises its error."""
        try:
            if manifest is None:
                await self._read_candidates(queue, ledger)
            else:
                await self._read(queue, ledger, run_id, manifest)
        except ManifestError as exc:
            self._broken = exc
            self.stop(StopReason.MANIFEST, f"{StopReason.MANIFEST.value}: {exc}")
        for _ in range(self.settings.concurrency):
            await queue.put(None)

    async def _read(self, queue: asyncio.Queue[Job | None], ledger: AsyncLedger,
                    run_id: int, manifest: Manifest) -> None:
        s = self.settings
        preparer = RowPreparer(
            self.manifest.name if self.manifest else "", self._manifest_id, self._ctx,
            s.auto_external_id, keep_fields=self.upload,
            keep_cells=self.errors_out is not None,
            keep_clean=self.upload or s.preflight, check_urls=s.check_urls,
            shard=s.shard_of if s.shard is not None else None,
            ledger=self.ledger_path() if self.upload else None)
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
                if self._preflight is not None:
                    prepared = await self._check_ids(prepared, self._preflight)
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
        """Act on the ledger's decision for each row of a chunk: queue it, or say why not.
        Rows with nothing to say (valid in ``validate``, done before, another shard's) are
        counted per chunk. After a stop no row is queued (it stays pending), but what the
        ledger recorded of the chunk's other rows is still reported."""
        self._rows_read += len(prepared)
        valid = skipped = elsewhere = already = 0
        try:
            for item, decision in zip(prepared, decisions, strict=True):
                adm, verdict = item.admission, decision.verdict
                if verdict in _GO_ON and adm.status is Status.PENDING:
                    if item.clean is None or (not self.upload and not item.needs_worker):
                        valid += 1  # validate, and nothing to probe or ask: nothing left to do
                    elif not self._stopping.is_set():
                        # UNKNOWN: left 'uploading' by a crash: looked up, or sent again.
                        await queue.put(Job(adm.row_number, adm.key, build_record(item.clean),
                                            item.cells, reconcile=verdict is Verdict.UNKNOWN,
                                            known=decision.known,
                                            sent_external_id=decision.sent_external_id))
                elif verdict is Verdict.INVALID:
                    self._invalid(item)
                elif verdict is Verdict.DUPLICATE:
                    self._duplicate(item, decision)
                elif verdict is Verdict.UNKNOWN:  # and the row is invalid now
                    self._unknown_and_invalid(item)
                elif verdict is Verdict.REJECTED:
                    self._emit(RowEvent(
                        adm.row_number, adm.key, Outcome.FAILED,
                        f"row {adm.row_number}: the API refused this row in an earlier run, and "
                        "it has not changed since (not sent again; `report` shows why; fix the "
                        "row, or `retry --include-rejected`)", "refused earlier, unchanged"))
                elif verdict is Verdict.ELSEWHERE:
                    elsewhere += 1
                elif verdict is Verdict.ALREADY:
                    already += 1
                elif verdict is Verdict.CHANGED:
                    self._changed(item)
                else:
                    skipped += 1
        finally:
            self._tally(Outcome.VALID, valid)
            self._tally(Outcome.SKIPPED, skipped)
            self._tally(Outcome.ALREADY_IMPORTED, already)
            self._tally(Outcome.OTHER_SHARD, elsewhere)
            self._rows_read -= elsewhere

    def _changed(self, item: Prepared) -> None:
        """A row known by its file's path alone, done before, whose file now holds other
        audio: another call saved under the same name (a nightly export that reuses names), or
        the same call re-encoded. Neither guess is safe: sent, it could import a call twice;
        passed over as done, a new call would be lost without a word. So say so."""
        adm = item.admission
        self._emit(RowEvent(
            adm.row_number, adm.key, Outcome.UNRESOLVED,
            f"row {adm.row_number}: {adm.source} holds other audio than when it was imported "
            f"(as {adm.key}): not sent; if it is another call, give the rows an external_id "
            "(each call its own) and run again", "file changed since it was imported"))

    def _unknown_and_invalid(self, item: Prepared) -> None:
        """An earlier upload of this row may have arrived (it was left ``uploading``), and the
        row as the manifest has it now cannot be sent: neither guess is safe, so say so."""
        adm = item.admission
        problems = "; ".join(str(p) for p in item.problems)
        self._emit(RowEvent(
            adm.row_number, adm.key, Outcome.UNRESOLVED,
            f"row {adm.row_number}: an earlier upload of this row has an unknown outcome, and "
            f"the row is invalid now ({problems}); fix it, or `retry LEDGER --status uploading` "
            "looks the call up with the data kept", "outcome unknown and row now invalid"),
            item.cells, problems)

    def _invalid(self, item: Prepared) -> None:
        adm = item.admission
        reasons = tuple(reason_of(p) for p in item.problems)
        self._emit(RowEvent(adm.row_number, adm.key, Outcome.INVALID, adm.error,
                            "; ".join(reasons), reasons=reasons),
                   item.cells, "; ".join(str(p) for p in item.problems))

    def _duplicate(self, item: Prepared, decision: Decision) -> None:
        adm = item.admission
        same = f"external_id {adm.external_id}" if adm.key.startswith("ext:") \
            and not decision.error else f"recording ({adm.source})"
        repeated = f"duplicate of row {decision.duplicate_of}: the same {same}"
        error = decision.error or (f"{adm.error}; {repeated}" if adm.error
                                   else f"row {adm.row_number}: {repeated}")
        reasons = (*(reason_of(p) for p in item.problems), DUPLICATE)
        self._emit(RowEvent(adm.row_number, adm.key, Outcome.INVALID, error,
                            "; ".join(reasons), reasons=reasons),
                   item.cells, "; ".join([*(str(p) for p in item.problems), repeated]))

    async def _read_candidates(self, queue: asyncio.Queue[Job | None],
                               ledger: AsyncLedger) -> None:
        """``retry``: the ledger's rows, re-validated from the metadata it kept."""
        assert self.retry is not None
        after = 0
        while not self._stopping.is_set():
            batch = await ledger.call(
                ledger.ledger.candidates, self.retry.statuses,
                include_rejected=self.retry.include_rejected, since=self.retry.since,
                after=after, limit=self.settings.chunk_rows)
            if not batch:
                return
            after = batch[-1].rowid
            for cand in batch:
                row = cand.row_number or 0
                try:
                    if not cand.fields:
                        raise RowInvalid([Problem("", "", "the ledger kept no metadata for "
                                                  "this row; run its manifest again")])
                    record = validate_row(cand.fields, self._ctx)
                except RowInvalid as exc:
                    error = _row_error(row, exc.problems)
                    reasons = tuple(reason_of(p) for p in exc.problems)
                    await ledger.call(ledger.ledger.mark_invalid, cand.key, error,
                                      "; ".join(reasons))
                    self._emit(RowEvent(row, cand.key, Outcome.INVALID, error,
                                        "; ".join(reasons), reasons=reasons))
                    continue
                unknown = cand.status is Status.UPLOADING or cand.last_outcome == "unknown"
                await queue.put(Job(row, cand.key, record, reconcile=unknown, known=cand.known,
                                    sent_external_id=cand.sent_external_id))
                if self._stopping.is_set():
                    return

    async def _check_ids(self, prepared: list[Prepared], preflight: Preflight) -> list[Prepared]:
        """Rows naming ids the API does not have become invalid before they are admitted."""
        found = await preflight.problems([p.clean for p in prepared])
        checked = []
        for item, problems in zip(prepared, found, strict=True):
            if problems:
                adm = item.admission
                item = item._replace(
                    admission=adm._replace(status=Status.INVALID, fields=None,
                                           fields_json=None,
                                           error=_row_error(adm.row_number, problems),
                                           reason="; ".join(map(reason_of, problems))),
                    clean=None, problems=tuple(problems))
            checked.append(item)
        return checked

    # --- workers ------------------------------------------------------------------------

    async def _work(self, queue: asyncio.Queue[Job | None], ledger: AsyncLedger,
                    client: ConvirzaClient | None, probes: ThreadPoolExecutor) -> None:
        while True:
            job = await queue.get()
            if job is None:
                return
            if self._stopping.is_set():
                continue  # drain: the row stays pending for the next run
            if job.reconcile and self.upload and client is not None \
                    and await self._reconcile(job, client, ledger):
                continue  # a lookup, not an upload: no budget spent
            if self.upload and (budget := self._over_budget()) is not None:
                self.stop(StopReason.BUDGET, f"budget: {budget}")
                continue
            claim = _Claim(job.key)
            try:
                fit, info = await self._vet(job, ledger, client, probes, claim)
                if not fit:
                    continue
                if not self.upload or client is None:
                    self._emit(RowEvent(job.row, job.key, Outcome.VALID,
                                        size=info.size if info else 0))
                    continue
                if self._stopping.is_set():
                    continue  # stopped while it was checked, or waited on its twin: pending
                self._uploads_started += 1
                if job.reconcile:  # looked up and not found (or --on-unknown=resend)
                    self._emit(RowEvent(job.row, job.key, Outcome.RESENDING))
                await ledger.call(ledger.ledger.mark_uploading, job.key,
                                  info.size if info else None, self._run_id,
                                  external_id=job.record.external_id)
                if await self._send(job, info, client, ledger):
                    claim.imported = job.key
            finally:
                self._release(claim)

    async def _lookup(self, job: Job, client: ConvirzaClient,
                      external_id: str | None = None) -> bool | None:
        """Whether Convirza has this row's call (found by ``external_id``: by default the one
        an earlier request carried, else the row's), or None when that cannot be known (no
        external_id, or the lookup failed)."""
        external_id = external_id or job.sent_external_id or job.record.external_id
        if external_id is None:
            return None
        # An id the API's filter cannot carry (a comma) is looked for among the row's group's
        # calls from its caller, and matched exactly.
        narrow = {"group_id": job.record.group_id, "caller_id": job.record.caller_id}
        try:
            return bool(await client.find_calls(external_id, narrow))
        except NotTheApi as exc:
            self._refused_for_good(exc)
            return None
        except (ApiError, UsageError) as exc:  # a refused token shows again on upload
            log.warning("row %d: cannot look the call up by external_id %r (%s)", job.row,
                        external_id, exc)
            return None

    async def _reconcile(self, job: Job, client: ConvirzaClient, ledger: AsyncLedger) -> bool:
        """For a row whose last attempt has an unknown outcome: True if it is settled here
        (found, so succeeded; or left unresolved by ``--on-unknown=skip``), False if it is
        to be sent (not found, or ``--on-unknown=resend``)."""
        started_at, t0 = _now_iso(), time.monotonic()
        found = await self._lookup(job, client)
        if found:
            attempt = AttemptRecord(job.key, started_at, round(time.monotonic() - t0, 3),
                                    "reconciled", None, None, None)
            await ledger.call(ledger.ledger.finish, job.key, Status.SUCCEEDED, attempt)
            self._emit(RowEvent(job.row, job.key, Outcome.RECONCILED))
            log.info("row %d: an earlier attempt did arrive (found by external_id %s)",
                     job.row, job.sent_external_id or job.record.external_id)
            return True
        if found is None and self.settings.on_unknown == "skip":
            error = (f"row {job.row}: outcome of an earlier upload unknown and the call cannot "
                     "be looked up; left 'uploading' (--on-unknown=resend sends it again)")
            self._emit(RowEvent(job.row, job.key, Outcome.UNRESOLVED, error,
                                "outcome unknown, not resent"))
            return True
        return False

    async def _vet(self, job: Job, ledger: AsyncLedger, client: ConvirzaClient | None,
                   probes: ThreadPoolExecutor, claim: _Claim) -> tuple[bool, AudioInfo | None]:
        """Check the row's recording before anything is sent, and say whether it may go.

        A file is probed and hashed in the probe pool (not hashed again when the ledger knows
        it unchanged); its audio may already be imported under another key (``_same_audio``).
        A URL has its form checked and, with ``--check-urls``, its server asked. A refusal
        marks the row invalid here.
        """
        s = self.settings
        path, url = job.record.recording_file, job.record.recording_url
        try:
            if path is not None:
                check = functools.partial(probe, path, s.max_file_size,
                                          max_duration=s.max_recording_duration, known=job.known)
                info = await asyncio.get_running_loop().run_in_executor(probes, check)
                return await self._same_audio(job, info, ledger, claim), info
            if url is not None:
                check_url_form(url)
                if s.check_urls and client is not None:
                    judge_url_answer(url, await client.check_url(url), s.max_file_size)
        except AudioError as exc:
            await self._refuse(job, ledger, str(exc), exc.reason)
            return False, None
        except ApiError as exc:  # the URL's server could not be asked at all
            await self._refuse(job, ledger, f"{url}: cannot check the URL: "
                               f"{exc.message}", "URL cannot be checked (--check-urls)")
            return False, None
        return True, None

    async def _same_audio(self, job: Job, info: AudioInfo, ledger: AsyncLedger,
                          claim: _Claim) -> bool:
        """Whether the row may be sent, given the other recordings with the same audio bytes.

        By default, audio imported before under another key is not sent again (the row is
        recorded as already imported under that key), and of rows of this run with the same
        audio one is sent while the others wait for its outcome. Audio whose upload elsewhere
        has an unknown outcome is not sent either: it may be there already. With
        ``--send-same-audio`` (two short calls of silence can be byte-identical) such rows are
        sent, with a warning; ``validate`` says which rows of its manifest share their audio.
        """
        sha = info.sha256
        record = functools.partial(ledger.ledger.record_audio, job.key, info.size, sha,
                                   run_id=self._run_id, row_number=job.row,
                                   path=str(info.path), mtime_ns=info.mtime_ns)
        if not self.upload or self.settings.send_same_audio or sha is None:
            same = await ledger.call(record, record=self.upload)
            if same is not None:
                self.summary.same_audio += 1
                self._log_row_problem(
                    f"row {job.row}: {info.path}: {self._twin(same, sha or '')}; "
                    + ("sending it anyway (--send-same-audio)" if self.upload else
                       "run sends only one of them (--send-same-audio sends both)"))
            return True
        while (owner := self._claims.get(sha)) is not None:
            imported_as = await asyncio.shield(owner.done)
            if imported_as is not None:
                await self._already(job, ledger, imported_as, f"row {owner.row} of this run")
                claim.imported = imported_as
                return False
        claim.take(sha, job.row, self._claims)
        same = await ledger.call(record)
        if same is None:
            return True
        if same.status is Status.SUCCEEDED:
            await self._already(job, ledger, same.key, self._where(same))
            claim.imported = same.key
            return False
        self._emit(RowEvent(
            job.row, job.key, Outcome.UNRESOLVED,
            f"row {job.row}: {info.path}: {self._twin(same, sha)}: not sent, since it may be "
            "imported already; it is sent or found imported on a later run, once that upload "
            "is reconciled (--send-same-audio sends it now)",
            "same audio as an upload of unknown outcome"))
        return False

    async def _already(self, job: Job, ledger: AsyncLedger, same_as: str, where: str) -> None:
        await ledger.call(ledger.ledger.mark_already_imported, job.key, same_as)
        log.info("row %d: %s: the same audio is already imported, as %s (%s); not sent again "
                 "(--send-same-audio sends it)", job.row, job.record.recording_file, same_as,
                 where)
        self._emit(RowEvent(job.row, job.key, Outcome.ALREADY_IMPORTED))

    def _release(self, claim: _Claim) -> None:
        """The row's outcome is known (or the run is stopping): rows waiting on the same audio
        learn whether it is imported."""
        if claim.sha256 is not None and self._claims.get(claim.sha256) is claim:
            del self._claims[claim.sha256]
        if not claim.done.done():
            claim.done.set_result(claim.imported)

    def _where(self, same: SameAudio) -> str:
        where = f"row {same.row_number}"
        if same.manifest != self._manifest_id and same.manifest:
            where += f" of {Path(same.manifest).name}"
        return where

    def _twin(self, same: SameAudio, sha256: str) -> str:
        state = {Status.SUCCEEDED: "already uploaded", Status.UPLOADING: "whose upload has an "
                 "unknown outcome", Status.FAILED: "whose upload failed"}.get(same.status,
                                                                               "not sent yet")
        return f"same audio (sha256 {sha256[:12]}...) as {self._where(same)} ({same.key}), {state}"

    async def _refuse(self, job: Job, ledger: AsyncLedger, detail: str, reason: str) -> None:
        """The row's recording is refused: ``detail`` says why, ``reason`` the same without
        the row's particulars (for counting)."""
        error = f"row {job.row}: {detail}"
        if self.upload:  # validate's ledger keeps no rows
            await ledger.call(ledger.ledger.mark_invalid, job.key, error, reason)
        self._emit(RowEvent(job.row, job.key, Outcome.INVALID, error, reason), job.cells, detail)

    async def _send(self, job: Job, info: AudioInfo | None, client: ConvirzaClient,
                    ledger: AsyncLedger) -> bool:
        """Attempts until success, a final error, the attempt limit, or a stop; True when the
        recording is now imported (sent, or found to have arrived)."""
        number = 0
        while True:
            number += 1
            started_at, t0 = _now_iso(), time.monotonic()

            def took(t0: float = t0) -> float:
                return round(time.monotonic() - t0, 3)

            try:
                answer = await client.upload(job.record, info)
            except (AuthError, NotTheApi) as exc:
                await self._not_sent(job, exc, started_at, took(), ledger)
                return False
            except AudioError as exc:  # changed or gone since it was checked: nothing sent
                attempt = AttemptRecord(job.key, started_at, took(), "not sent", None, str(exc))
                await ledger.call(ledger.ledger.finish, job.key, Status.FAILED, attempt)
                self._emit(RowEvent(job.row, job.key, Outcome.FAILED, f"row {job.row}: {exc}",
                                    exc.reason))
                return False
            except ApiError as exc:
                attempt = AttemptRecord(
                    job.key, started_at, took(),
                    "unknown" if exc.outcome_unknown else "error", exc.status, exc.message,
                    exc.request_id)
                found = await self._lookup(job, client, job.record.external_id) \
                    if exc.outcome_unknown else False
                if found:
                    # It arrived although we saw no success: done, and never sent twice.
                    await ledger.call(ledger.ledger.record_attempt, attempt)
                    found_at = AttemptRecord(job.key, _now_iso(), 0.0, "reconciled", None, None,
                                             None)
                    await ledger.call(ledger.ledger.finish, job.key, Status.SUCCEEDED, found_at)
                    self._emit(RowEvent(job.row, job.key, Outcome.RECONCILED,
                                        size=info.size if info else 0))
                    return True
                if found is None and self.settings.on_unknown == "skip":
                    # It may have arrived and cannot be looked up: sending it again could
                    # import it twice. The row stays 'uploading' for a later reconciliation.
                    await ledger.call(ledger.ledger.record_attempt, attempt)
                    self._emit(RowEvent(
                        job.row, job.key, Outcome.UNRESOLVED,
                        f"row {job.row}: {exc}; the upload may have arrived and the call cannot "
                        "be looked up (no external_id); left 'uploading' (--on-unknown=resend "
                        "sends it again)", "outcome unknown, not resent"))
                    return False
                delay = self.policy.decide(Attempt(number, exc))
                if delay is None or self._stopping.is_set():
                    await ledger.call(ledger.ledger.finish, job.key, Status.FAILED, attempt,
                                      retryable=exc.retryable)
                    reason = f"HTTP {exc.status}: {exc.message}" if exc.status else exc.message
                    self._emit(RowEvent(job.row, job.key, Outcome.FAILED, f"row {job.row}: {exc}",
                                        reason))
                    self._api_failed(exc.retryable, reason)
                    return False
                await ledger.call(ledger.ledger.record_attempt, attempt)
                self._emit(RowEvent(job.row, job.key, Outcome.RETRYING, str(exc)))
                log.info("row %d: attempt %d failed (%s); retrying in %.1fs", job.row, number,
                         exc, delay)
                await self._pause(delay)
                continue
            attempt = AttemptRecord(job.key, started_at, took(), "succeeded",
                                    answer.status, None, answer.request_id)
            await ledger.call(ledger.ledger.finish, job.key, Status.SUCCEEDED, attempt)
            self._emit(RowEvent(job.row, job.key, Outcome.SUCCEEDED, size=info.size if info else 0))
            self._failing = 0
            return True

    async def _not_sent(self, job: Job, exc: AuthError | NotTheApi, started_at: str,
                        duration: float, ledger: AsyncLedger) -> None:
        """The request was refused, or something other than the API answered it: nothing was
        imported, so the row goes back to pending, and the whole run stops, since every
        further request would meet the same."""
        outcome = "refused" if isinstance(exc, AuthError) else "not the API"
        attempt = AttemptRecord(job.key, started_at, duration, outcome, exc.status,
                                exc.message, exc.request_id)
        await ledger.call(ledger.ledger.record_attempt, attempt)
        await ledger.call(ledger.ledger.mark_pending, job.key)
        self._refused_for_good(exc)

    def _refused_for_good(self, exc: AuthError | NotTheApi) -> None:
        if self._fatal is None:
            self._fatal = exc  # reported once, by the caller, when the run has stopped
            if isinstance(exc, AuthError):
                self.summary.stop(StopReason.CREDENTIALS, "credentials refused")
            else:
                self.summary.stop(StopReason.NOT_THE_API, f"not the API: {exc.message}")
            log.warning("%s: stopping; uploads in flight finish first",
                        self.summary.stopped)
        self._stopping.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _api_failed(self, retryable: bool, reason: str) -> None:
        """The circuit breaker. A row that failed every attempt for a reason that is not its
        own (retryable: unreachable, 5xx, throttled) counts; any answer about the row itself
        (a success, a 4xx) shows the API is there and starts the count again. An outage thus
        stops the run after a few rows instead of burning through the manifest."""
        if not retryable:
            self._failing = 0
            return
        self._failing += 1
        limit = self.settings.max_consecutive_failures
        if limit and self._failing >= limit:
            self.stop(StopReason.FAILING,
                      f"budget: --max-consecutive-failures {limit} reached ({self._failing} "
                      f"rows in a row failed for the API's sake; last: {reason})")

    def _log_row_problem(self, error: str) -> None:
        self._row_warnings += 1
        if self._row_warnings <= ROW_WARNINGS or log.isEnabledFor(logging.DEBUG):
            log.warning("%s", error)
        elif self._row_warnings == ROW_WARNINGS + 1:
            where = ("`validate --errors-out FILE` writes them all" if not self.upload else
                     f"`convirza-import report {self.ledger_path()} --status invalid --status "
                     "failed` lists them all")
            log.warning("more rows have problems; they are not logged one by one (--verbose "
                        "logs every one); %s", where)

    def _tally(self, outcome: Outcome, n: int) -> None:
        """``n`` rows whose outcome carries nothing more: counted at once, not one by one."""
        if n:
            self.summary.add_many(outcome, n)
            self.observer.passed(outcome, n)

    def _emit(self, event: RowEvent, cells: dict[str, str] | None = None,
              detail: str = "") -> None:
        """Count, log and show one row's outcome; an invalid row also goes to ``--errors-out``
        (``cells`` as read, ``detail`` what is wrong with them)."""
        if self._invalid_rows is not None and event.outcome is Outcome.INVALID:
            self._invalid_rows.write(event.row, detail or event.error or "", cells or {})
        self.summary.add(event)
        if event.outcome in (Outcome.FAILED, Outcome.INVALID, Outcome.UNRESOLVED):
            if event.error:
                self._log_row_problem(event.error)
            self._check_error_budget()
        self.observer.row(event)
