"""Rows into a run's queue: the manifest read chunk by chunk (in a thread, or for a big CSV in a
second process), each chunk admitted by the ledger and acted on; or, for ``retry``, the rows the
ledger kept, checked again from the metadata it kept. What is not queued is reported here:
invalid rows, duplicates, rows done before or another shard's, rows refused earlier.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from ..errors import ManifestError, Problem, RowError, reason_of
from ..events import Outcome, RowEvent, StopReason
from ..ledger.admission import DUPLICATE, Decision, Verdict, duplicate_error
from ..ledger.states import Status
from ..manifest.call_dates import RowContext
from ..manifest.opening import Manifest
from ..manifest.records import build_record, validate_row
from .context import Job, RunContext
from .preflight import Preflight
from .preparing import Prepared, RowPreparer
from .reader import open_reader

_GO_ON = frozenset({Verdict.SEND, Verdict.UNKNOWN})
#: Verdicts whose rows have nothing to say one by one, counted per chunk.
_COUNTED = {Verdict.DONE: Outcome.SKIPPED, Verdict.ELSEWHERE: Outcome.OTHER_SHARD,
            Verdict.ALREADY: Outcome.ALREADY_IMPORTED}


class Intake:
    """The reading half of a run."""

    def __init__(self, ctx: RunContext, row_context: RowContext,
                 preflight: Preflight | None = None) -> None:
        self.ctx = ctx
        self.rows = row_context
        self.preflight = preflight
        #: A manifest that broke part-way (the run stops, then raises it).
        self.broken: ManifestError | None = None

    async def feed(self, queue: asyncio.Queue[Job | None],
                   source: tuple[Manifest, RowPreparer] | None, workers: int) -> None:
        """Fill the queue from the manifest (``source``: the manifest and its preparer) or
        the ledger (None), then one end-marker per worker. A manifest that breaks part-way
        stops the run like Ctrl-C would."""
        try:
            if source is not None:
                await self._manifest(queue, *source)
            else:
                await self._candidates(queue)
        except ManifestError as exc:
            self.broken = exc
            self.ctx.stop(StopReason.MANIFEST, f"{StopReason.MANIFEST.value}: {exc}")
        for _ in range(workers):
            await queue.put(None)

    async def _manifest(self, queue: asyncio.Queue[Job | None], manifest: Manifest,
                        preparer: RowPreparer) -> None:
        # Off the loop: it may start a process and write it the manifest and the preparer.
        reader = await asyncio.to_thread(open_reader, manifest, preparer,
                                         preparer.ctx.on_naive_date)
        ahead = asyncio.ensure_future(asyncio.to_thread(reader.next_chunk))
        try:
            while not self.ctx.stopping.is_set():
                prepared = await ahead
                if prepared is None:
                    return
                # Read and check the next chunk while the ledger admits this one: in another
                # process for a big CSV, else in a thread (SQLite lets go of the GIL).
                ahead = asyncio.ensure_future(asyncio.to_thread(reader.next_chunk))
                if self.preflight is not None:
                    prepared = await self._check_ids(prepared, self.preflight)
                decisions = await self.ctx.ledger.admit([p.admission for p in prepared])
                await self._dispatch(queue, prepared, decisions)
        finally:
            with contextlib.suppress(Exception):
                await ahead  # let the reader finish its chunk; rows not admitted stay unread
            await asyncio.to_thread(reader.close)

    async def _dispatch(self, queue: asyncio.Queue[Job | None], prepared: list[Prepared],
                        decisions: list[Decision]) -> None:
        """Act on the ledger's decision for each row of a chunk: queue it, or say why not.
        After a stop no row is queued (it stays pending), but what the ledger recorded of
        the chunk's other rows is still reported."""
        outcomes = self.ctx.outcomes
        outcomes.rows_read += len(prepared)
        # The chunk's rows with nothing to say (done before, another shard's, imported under
        # another key) are counted before any of its rows waits for room in the queue: a
        # resumed run's progress starts from the rows already done, not from nought.
        counted = Counter(_COUNTED[d.verdict] for d in decisions if d.verdict in _COUNTED)
        for outcome in _COUNTED.values():
            outcomes.tally(outcome, counted[outcome])
        outcomes.rows_read -= counted[Outcome.OTHER_SHARD]
        valid = 0
        try:
            for item, decision in zip(prepared, decisions, strict=True):
                adm, verdict = item.admission, decision.verdict
                if verdict in _GO_ON and adm.status is Status.PENDING:
                    if item.clean is None or (not self.ctx.sends and not item.needs_worker):
                        valid += 1  # nothing to probe or ask: done
                    elif not self.ctx.stopping.is_set():
                        # UNKNOWN: its last request's outcome is unknown: looked up first.
                        record = build_record(item.clean, self.rows)
                        look = self.ctx.destination is not None and verdict is Verdict.SEND \
                            and decision.previous in (None, Status.PENDING)
                        await queue.put(Job(adm.row_number, adm.key, record,
                                            item.cells, reconcile=verdict is Verdict.UNKNOWN,
                                            known=decision.known,
                                            sent_external_id=decision.sent_external_id,
                                            look_first=look))
                elif verdict not in _COUNTED:
                    self._report(item, decision)
        finally:
            outcomes.tally(Outcome.VALID, valid)

    def _report(self, item: Prepared, decision: Decision) -> None:
        """A row not queued, with something to say of it."""
        adm, verdict = item.admission, decision.verdict
        problems = tuple(reason_of(p) for p in item.problems)
        detail = "; ".join(str(p) for p in item.problems)
        row = adm.row_number
        if verdict is Verdict.INVALID:
            event = RowEvent(row, adm.key, Outcome.INVALID, adm.error, "; ".join(problems),
                             reasons=problems)
        elif verdict is Verdict.DUPLICATE:
            error = duplicate_error(adm, decision)
            repeated = error.rpartition("; ")[2].removeprefix(f"row {row}: ")
            detail = "; ".join(filter(None, (detail, repeated)))
            reasons = (*problems, DUPLICATE)
            event = RowEvent(row, adm.key, Outcome.INVALID, error, "; ".join(reasons),
                             reasons=reasons)
        elif verdict is Verdict.UNKNOWN:  # and the row is invalid now: neither guess is safe
            event = RowEvent(
                row, adm.key, Outcome.UNRESOLVED,
                f"row {row}: an earlier upload of this row has an unknown outcome, and the row "
                f"is invalid now ({detail}); fix it, or `retry LEDGER --status uploading` "
                "looks the call up with the data kept", "outcome unknown and row now invalid")
        elif verdict is Verdict.REJECTED:
            event = RowEvent(
                row, adm.key, Outcome.FAILED,
                f"row {row}: the API refused this row in an earlier run, and it has not "
                "changed since (not sent again; `report` shows why; fix the row, or `retry "
                "--include-rejected`)", "refused earlier, unchanged")
        else:  # CHANGED: another call under a done name, or the same one re-encoded
            event = RowEvent(
                row, adm.key, Outcome.UNRESOLVED,
                f"row {row}: {adm.source} holds other audio than when it was imported (as "
                f"{adm.key}): not sent; if it is another call, give the rows an external_id "
                "(each call its own) and run again", "file changed since it was imported")
        self.ctx.outcomes.emit(event, item.cells, detail)

    async def _candidates(self, queue: asyncio.Queue[Job | None]) -> None:
        """``retry``: the ledger's rows, checked again from the metadata it kept."""
        selection = getattr(self.ctx.mode, "selection", None)
        assert selection is not None
        after = 0
        while not self.ctx.stopping.is_set():
            batch = await self.ctx.ledger.candidates(
                selection, after=after, limit=self.ctx.settings.chunk_rows)
            if not batch:
                return
            after = batch[-1].rowid
            for cand in batch:
                row = cand.row_number or 0
                try:
                    if not cand.fields:
                        raise RowError([Problem("", "", "the ledger kept no metadata for "
                                                        "this row; run its manifest again")])
                    record = validate_row(cand.fields, self.rows)
                except RowError as exc:
                    error, reasons = exc.at(row).detail, tuple(map(reason_of, exc.problems))
                    await self.ctx.ledger.invalid(cand.key, error, "; ".join(reasons))
                    self.ctx.outcomes.emit(RowEvent(row, cand.key, Outcome.INVALID, error,
                                                    "; ".join(reasons), reasons=reasons))
                    continue
                unknown = cand.status is Status.UPLOADING or cand.last_outcome == "unknown"
                # A row never sent, of a manifest whose rows are looked up first.
                look = self.ctx.destination is not None and cand.status is Status.PENDING and \
                    cand.last_outcome is None and (self.ctx.settings.find_existing == "always"
                                                   or cand.manifest in self.ctx.look_first)
                await queue.put(Job(row, cand.key, record, reconcile=unknown, known=cand.known,
                                    sent_external_id=cand.sent_external_id, look_first=look))
                if self.ctx.stopping.is_set():
                    return

    async def left_over(self) -> None:
        """After a retry, what it leaves is said, not passed over (and makes its exit code 1):
        invalid rows (fixed in the manifest, sent by run), rows still pending, and rows of
        manifests whose last run stopped before reading them (only run can send those)."""
        summary = self.ctx.outcomes.summary
        counts = await self.ctx.ledger.counts()
        summary.invalid_left = counts[Status.INVALID]
        summary.pending_left = counts[Status.PENDING]
        summary.unread = [(u.manifest, u.about, u.why) for u in await self.ctx.ledger.unread()]

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
                                           error=RowError(problems, adm.row_number).detail,
                                           reason="; ".join(map(reason_of, problems))),
                    clean=None, problems=tuple(problems))
            checked.append(item)
        return checked
