"""A row's recording checked before anything is sent: its file probed and hashed, its audio
compared with what the ledger holds and with what this run's other workers are sending.

A call is imported once, and distinct calls are never folded into one. Rows with the same
audio bytes are the same call only when their call facts agree (``records.call_facts``: the
date to the second, the caller, the group) and no two explicit external_ids tell them apart;
short recordings of silence or a greeting are byte-identical across many calls, which are
each sent. A row of a call the ledger holds as imported, under any key, is not sent again: it
is recorded as already imported under that key. Of rows of this run of one call, one is sent
and the others wait for its outcome (a ``Claim`` per call on its way): imported, they are
recorded as already imported; not, the next one goes. A call whose upload elsewhere has an
unknown outcome is not sent either. ``--send-same-audio`` sends such rows, with a warning;
``validate`` names the rows of its manifest that are one call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ..audio.info import AudioInfo
from ..audio.objects import probe_object
from ..audio.probing import probe, sniff
from ..audio.urls import check_url_form, judge_url_answer
from ..client.fetching import UrlAuth, aiohttp_timeout, fetch_recording, shown
from ..client.objects import SignedReads
from ..errors import ApiError, AudioError, MachineError, StoreRefused
from ..events import Outcome, RowEvent, StopReason
from ..ledger.books import AttemptRecord
from ..ledger.facts import FileFacts
from ..ledger.schema import now
from ..ledger.states import Status
from ..ledger.store import SameAudio
from ..manifest.identity import call_facts
from ..sources.locations import ObjectURL
from .context import Job, RunContext

log = logging.getLogger("importer.pipeline")

#: Files up to this size are probed, hashed and read on the event loop (reading and hashing
#: 40 KB costs less than handing it to a thread and back), and sent from memory.
INLINE_PROBE_BYTES = 256 * 1024


#: What a call is known by in this run: its audio (sha256) and its facts (``call_facts``).
Slot = tuple[str, str]


@dataclass
class Claim:
    """A worker's hold on one call (its audio and facts: ``slot``) while its row is on its
    way: other rows of the run of the same call wait for ``done``, which gives the key the
    call was imported under, or None when it was not."""

    key: str
    row: int = 0
    slot: Slot | None = None
    imported: str | None = None
    claimed: bool = False  # the ledger marked the row uploading with its audio's facts
    sent: bool = False  # its request left: the upload budget it reserved is spent
    #: A recording fetched for the row (``--fetch-urls``), removed once its outcome is known.
    scratch: Path | None = None
    done: asyncio.Future[str | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class Vetting:
    """The checks of a row before it is sent, for the workers of one run."""

    def __init__(self, ctx: RunContext, probes: Executor) -> None:
        self.ctx = ctx
        self.probes = probes
        #: Calls on their way in this run (by audio and facts), and the claims that hold them:
        #: several, when explicit external_ids tell rows of the same audio and facts apart.
        self.claims: dict[Slot, list[Claim]] = {}
        if ctx.client is not None:  # objects read on the client's session, cheaper
            ctx.objects.signed = SignedReads(ctx.client.session, ctx.objects)
        #: Where fetched recordings wait for their upload (``--fetch-urls``), made on first use.
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    async def vet(self, job: Job, claim: Claim) -> tuple[bool, AudioInfo | None]:
        """Whether the row may go on (a refusal is recorded here), and its file's facts. In a
        run that sends, a file row that may go is claimed: ``uploading``, durably."""
        s, path, url = self.ctx.settings, job.record.recording_file, job.record.recording_url
        if isinstance(path, Path) and s.min_age and _modified_within(path, s.min_age):
            self.ctx.outcomes.summary.min_age = s.min_age
            self.ctx.outcomes.emit(RowEvent(job.row, job.key, Outcome.TOO_NEW))
            return False, None
        try:
            if isinstance(path, ObjectURL):
                info = await probe_object(
                    path, self.ctx.objects, s.max_file_size, max_duration=s.max_recording_duration,
                    keep=INLINE_PROBE_BYTES if self.ctx.mode.sends and not s.presign else 0)
                return await self._same_audio(job, info, claim), info
            if path is not None:
                info = await self._probe(path, job.known)
                return await self._same_audio(job, info, claim), info
            if url is not None and s.fetch_urls and self.ctx.client is not None:
                check_url_form(url)
                info = await self._fetched(job, url, claim)
                return await self._same_audio(job, info, claim), info
            if url is not None:
                check_url_form(url)
                if s.check_urls and self.ctx.client is not None:
                    judge_url_answer(url, await self.ctx.client.check_url(url), s.max_file_size)
        except AudioError as exc:
            await self.refuse(job, str(exc), exc.reason)
            return False, None
        except MachineError as exc:
            await self._short(job, exc)
            return False, None
        except StoreRefused as exc:  # every row from that store would be refused: stop
            self.ctx.stop(StopReason.CREDENTIALS, str(exc))
            self.ctx.fatal = self.ctx.fatal or exc
            return False, None
        except ApiError as exc:  # the URL's server could not be asked at all
            await self.refuse(job, f"{url}: cannot check the URL: {exc.message}",
                              "URL cannot be checked (--check-urls)")
            return False, None
        return True, None

    async def refuse(self, job: Job, detail: str, reason: str) -> None:
        """The row's recording is refused: ``detail`` says why, ``reason`` the same without
        the row's particulars (for counting)."""
        error = f"row {job.row}: {detail}"
        await self.ctx.ledger.invalid(job.key, error, reason)
        self.ctx.outcomes.emit(RowEvent(job.row, job.key, Outcome.INVALID, error, reason),
                               job.cells, detail)

    async def _short(self, job: Job, exc: MachineError) -> None:
        """This machine could not check the row (too many open files): the row is not at
        fault, so it is not invalid. It stays pending for the next run or retry, counts as
        failed in this run, and counts for the circuit breaker as a failure that is not the
        row's own (every row after it would meet the same shortage)."""
        error = f"row {job.row}: {exc}"
        if self.ctx.sends:
            await self.ctx.ledger.attempted(AttemptRecord(
                job.key, now(), 0.0, "not sent", None, str(exc)))
        self.ctx.outcomes.emit(RowEvent(job.row, job.key, Outcome.FAILED, error,
                                        "this machine ran short (open files, memory)"))
        stop = self.ctx.guard.after_failure(True, exc.reason)
        if stop is not None:
            self.ctx.halt(stop)

    def release(self, claim: Claim) -> None:
        """The row's outcome is known (or the run is stopping): rows waiting on the same audio
        learn whether it is imported."""
        held = self.claims.get(claim.slot) if claim.slot is not None else None
        if held is not None and claim in held:
            held.remove(claim)
            if not held:
                del self.claims[claim.slot]  # type: ignore[arg-type]
        if not claim.done.done():
            claim.done.set_result(claim.imported)
        if claim.scratch is not None:
            claim.scratch.unlink(missing_ok=True)

    async def _fetched(self, job: Job, url: str, claim: Claim) -> AudioInfo:
        """The recording ``url`` serves, fetched into this run's scratch folder with its
        host's credentials (``client.fetching``) and probed as a file is. Its name there is
        the row's, with the extension its content shows (a URL's path often has none)."""
        s, client = self.ctx.settings, self.ctx.client
        assert client is not None
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="convirza-fetched-")
        claim.scratch = Path(self._scratch.name) / f"row-{job.row}.part"
        header = s.url_header_value
        auth = UrlAuth((s.url_header.partition("=")[0], header.get_secret_value())
                       if s.url_header and header else None)
        timeout = aiohttp_timeout(s.connect_timeout, s.read_timeout)
        final = await fetch_recording(client.session, url, claim.scratch, auth,
                                      s.max_file_size, timeout)
        with open(claim.scratch, "rb") as handle:
            kind = sniff(handle.read(4096))
        name = PurePosixPath(urlsplit(final).path).name or f"row-{job.row}"
        if kind in ("wav", "mp3") and not name.lower().endswith("." + kind):
            name += "." + kind
        named = claim.scratch.with_name(f"row-{job.row}-{name}")
        claim.scratch = claim.scratch.rename(named)
        try:
            return replace(await self._probe(named, None), origin=shown(url))
        except AudioError as exc:
            raise AudioError(shown(url), exc.reason) from None

    async def _probe(self, path: Path, known: FileFacts | None) -> AudioInfo:
        """A small file here, on the event loop, read once and kept for the upload; a bigger
        one in the probe pool, beside the uploads."""
        s = self.ctx.settings
        check = functools.partial(probe, path, s.max_file_size,
                                  max_duration=s.max_recording_duration, known=known)
        try:
            small = os.stat(path).st_size <= INLINE_PROBE_BYTES
        except OSError:
            small = True  # the probe says why, at once
        if small:
            return check(keep=INLINE_PROBE_BYTES if self.ctx.mode.sends else 0)
        return await asyncio.get_running_loop().run_in_executor(self.probes, check)

    async def _same_audio(self, job: Job, info: AudioInfo, claim: Claim) -> bool:
        """Whether the row may be sent, given the other rows with the same audio (see the
        module docstring)."""
        ctx, sha, record = self.ctx, info.sha256, job.record
        call = call_facts(record.call_date, record.caller_id, record.group_id)
        if not ctx.sends:
            self._shared(job, info, await ctx.ledger.twin_in_run(job.key, job.row, info, call))
            return True
        if ctx.settings.send_same_audio or sha is None:
            same = await ctx.ledger.claim(job.key, record.external_id, info, call,
                                          send_twins=True)
            claim.claimed = True
            self._shared(job, info, same)
            return True
        slot, explicit = (sha, call), _explicit(job.key)
        while (owner := self._rival(slot, explicit)) is not None:
            imported_as = await asyncio.shield(owner.done)
            if imported_as is not None:
                await self._already(job, imported_as, f"row {owner.row} of this run")
                claim.imported = imported_as
                return False
        claim.slot, claim.row = slot, job.row
        self.claims.setdefault(slot, []).append(claim)
        same = await ctx.ledger.claim(job.key, record.external_id, info, call, send_twins=False)
        if same is None or not same.same_call:
            claim.claimed = True
            self._shared(job, info, same)
            return True
        if same.status is Status.SUCCEEDED:
            await self._already(job, same.key, self._where(same))
            claim.imported = same.key
            return False
        ctx.outcomes.emit(RowEvent(
            job.row, job.key, Outcome.UNRESOLVED,
            f"row {job.row}: {info.path}: {self._twin(same, sha)}: not sent, since it may be "
            "imported already; it is sent or found imported on a later run, once that upload "
            "is reconciled (--send-same-audio sends it now)",
            "same call as an upload of unknown outcome"))
        return False

    def _rival(self, slot: Slot, explicit: bool) -> Claim | None:
        """A claim of this run on the same call: the same audio and facts, and not two
        explicit external_ids (which make two calls)."""
        for owner in self.claims.get(slot, ()):
            if not (explicit and _explicit(owner.key)):
                return owner
        return None

    def _shared(self, job: Job, info: AudioInfo, same: SameAudio | None) -> None:
        """Count (and say) a row that goes on although another row holds its audio: another
        call (counted, said with --verbose), or the same call (--send-same-audio; validate)."""
        if same is None:
            return
        summary = self.ctx.outcomes.summary
        if not same.same_call:
            summary.shared_audio += 1
            log.debug("row %d: %s: the same audio as %s (%s), another call (its date, caller, "
                      "group or external_id differ): a call of its own", job.row, info.path,
                      self._where(same), same.key)
            return
        summary.same_audio += 1
        self.ctx.outcomes.problem(
            f"row {job.row}: {info.path}: {self._twin(same, info.sha256 or '')}; " +
            ("sending it anyway (--send-same-audio)" if self.ctx.sends else
             "run sends only one of them (--send-same-audio sends both)"))

    async def _already(self, job: Job, same_as: str, where: str) -> None:
        await self.ctx.ledger.already_imported(job.key, same_as)
        log.info("row %d: %s: the same call (the same audio, date, caller and group) is already "
                 "imported, as %s (%s); not sent again (--send-same-audio sends it)", job.row,
                 job.record.recording_file, same_as, where)
        self.ctx.outcomes.emit(RowEvent(job.row, job.key, Outcome.ALREADY_IMPORTED))

    def _where(self, same: SameAudio) -> str:
        where = f"row {same.row_number}"
        if same.manifest != self.ctx.origin and same.manifest:
            where += f" of {Path(same.manifest).name}"
        return where

    def _twin(self, same: SameAudio, sha256: str) -> str:
        state = {Status.SUCCEEDED: "already uploaded", Status.UPLOADING: "whose upload has an "
                 "unknown outcome", Status.FAILED: "whose upload failed"}.get(same.status,
                                                                               "not sent yet")
        return (f"same call as {self._where(same)} ({same.key}): the same audio (sha256 "
                f"{sha256[:12]}...), date, caller and group, {state}")


def _modified_within(path: Path, seconds: float, now: Callable[[], float] = time.time) -> bool:
    """Whether the file was modified within ``seconds`` (``--min-age``): maybe still being
    written. A file that cannot be looked at is not: its probe says why."""
    try:
        return now() - os.stat(path).st_mtime < seconds
    except OSError:
        return False


def _explicit(key: str) -> bool:
    """Whether a row's key is an external_id of the manifest's (not derived from its file)."""
    return key.startswith("ext:")
