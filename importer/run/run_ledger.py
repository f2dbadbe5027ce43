"""What a run asks of its ledger, by name: admit a chunk, claim a row for upload, settle it.

Every call goes through the one writer thread (``ledger_writer``), which commits the calls that
wait together; the run never holds the ``Ledger`` or its connection. A row costs two round trips
on its way: one to claim it (its file's facts stored, its twin looked for, ``uploading`` made
durable before the request leaves) and one to settle it (the attempt and the final state,
together).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..audio.info import AudioInfo
from ..ledger.admission import Admission, Decision
from ..ledger.books import AttemptRecord
from ..ledger.figures import Unread
from ..ledger.queries import Candidate
from ..ledger.states import Status
from ..ledger.store import Ledger, SameAudio
from ..ledger.writer import AsyncLedger
from ..observers import Observer
from .modes import RetrySelection


class RunLedger:
    """One run's ledger. ``record=False`` (``validate``): decisions are made as in a run,
    but no row is written."""

    def __init__(self, ledger: Ledger, *, record: bool = True,
                 observer: Observer | None = None) -> None:
        self.path: Path = ledger.path
        self.record = record
        self.run_id = 0
        self._ledger = ledger
        self._writer = AsyncLedger(ledger)
        if observer is not None:
            self._writer.observer = observer  # told of every commit

    async def begin(self, command: str, manifest: str | None) -> int:
        self.run_id = await self._writer.call(self._ledger.begin_run, command, manifest)
        return self.run_id

    async def end(self, exit_code: int, summary: dict[str, Any]) -> int | None:
        """Record how the run ended; returns what is left to do in the ledger then, as
        ``report`` counts it (None for ``validate``, which leaves nothing in a ledger)."""
        await self._writer.call(self._ledger.end_run, self.run_id, exit_code, summary)
        return await self._writer.call(self._ledger.left_to_do) if self.record else None

    async def close(self) -> None:
        """Finish every call made so far, then close the file."""
        await self._writer.close()

    async def admit(self, rows: Sequence[Admission]) -> list[Decision]:
        return await self._writer.call(self._ledger.admit, self.run_id, rows,
                                       record=self.record)

    async def claim(self, key: str, external_id: str | None, info: AudioInfo, call: str, *,
                    send_twins: bool) -> SameAudio | None:
        """The row's file, probed, and the row ``uploading`` (durable: the request may now
        leave), unless a row of the same call (``call``: its facts) holds its audio, imported
        or in doubt: then that one (and the row stays pending), or, with ``send_twins``, that
        one and the claim. A row of another call with the same audio is returned too, and
        the row claimed."""
        return await self._writer.call(functools.partial(
            self._ledger.claim, key, self.run_id, external_id=external_id, size=info.size,
            sha256=info.sha256, path=info.origin or str(
                info.source.url if info.source else info.path),
            mtime_ns=info.mtime_ns, call=call,
            send_twins=send_twins))

    async def uploading(self, key: str, external_id: str | None) -> None:
        """A row with nothing to probe (a URL) about to be sent."""
        await self._writer.call(self._ledger.mark_uploading, key, None, self.run_id,
                                external_id=external_id)

    async def twin_in_run(self, key: str, row: int, info: AudioInfo,
                          call: str) -> SameAudio | None:
        """``validate``: the first row of this run with the same audio (of the same call if
        there is one), if any."""
        return await self._writer.call(functools.partial(
            self._ledger.record_audio, key, info.size, info.sha256, run_id=self.run_id,
            row_number=row, record=False, call=call))

    async def already_imported(self, key: str, same_as: str) -> None:
        await self._writer.call(self._ledger.mark_already_imported, key, same_as)

    async def found(self, key: str, external_id: str, attempt: AttemptRecord) -> None:
        """Found in Convirza before it was sent (``--find-existing``)."""
        await self._writer.call(self._ledger.mark_found, key, external_id, attempt)

    async def find_existing(self) -> dict[str, tuple[bool, str]]:
        return await self._writer.call(self._ledger.find_existing)

    async def decide_find_existing(self, manifest: str, look_first: bool, why: str) -> None:
        await self._writer.call(self._ledger.decide_find_existing, manifest, look_first, why)

    async def invalid(self, key: str, error: str, reason: str) -> None:
        if self.record:
            await self._writer.call(self._ledger.mark_invalid, key, error, reason)

    async def succeeded(self, attempt: AttemptRecord) -> None:
        """The API acknowledged it, or it was found there (a reconciling lookup)."""
        await self._writer.call(self._ledger.finish, attempt.key, Status.SUCCEEDED, attempt)

    async def failed(self, attempt: AttemptRecord, *, retryable: bool) -> None:
        await self._writer.call(functools.partial(
            self._ledger.finish, attempt.key, Status.FAILED, attempt, retryable=retryable))

    async def attempted(self, attempt: AttemptRecord) -> None:
        """An attempt after which the row stays ``uploading`` (another follows, or its
        outcome is unknown)."""
        await self._writer.call(self._ledger.record_attempt, attempt)

    async def unclaim(self, key: str) -> None:
        """A claimed row whose request never left (a stop ended its wait): pending again."""
        await self._writer.call(self._ledger.mark_pending, key)

    async def not_sent(self, attempt: AttemptRecord) -> None:
        """The request was refused before anything was imported: back to ``pending``."""
        await self._writer.call(self._ledger.record_attempt, attempt)
        await self._writer.call(self._ledger.mark_pending, attempt.key)

    async def remembered_pace(self) -> float | None:
        """The pace the API allowed on the latest run of this ledger that found one."""
        return await self._writer.call(self._ledger.remembered_pace)

    async def counts(self) -> dict[Status, int]:
        """Rows by state, over the whole ledger."""
        return await self._writer.call(self._ledger.counts)

    async def unread(self) -> list[Unread]:
        """Manifests whose last run stopped before reading every row."""
        return await self._writer.call(self._ledger.unread)

    async def candidates(self, selection: RetrySelection, *, after: int,
                         limit: int) -> list[Candidate]:
        return await self._writer.call(functools.partial(
            self._ledger.candidates, selection.statuses,
            include_rejected=selection.include_rejected, since=selection.since, after=after,
            limit=limit))
