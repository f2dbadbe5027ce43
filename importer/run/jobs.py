"""One command's work, as the command line and the Python API both run it: settings merged
from flags (or keywords), the environment and a job file (``plan``), then one or more
manifests run in turn through one ledger, or one retry of a ledger (``ImportJob``).

A job file's glob makes several manifests; each is its own run in the ledger, with its own
summary. A manifest that cannot be read is reported and the next one goes on; anything that
stops a run (a budget, Ctrl-C, refused credentials, an API that does not answer) ends the job,
since the next manifest would meet it too. The overall exit code is the worst of the runs', by
``SEVERITY``. ``--max-duration`` and ``--max-uploads`` count over the whole job.

Signals are not handled here: a scheduler that embeds the importer owns them; the command line
installs its own and calls ``stop``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ..errors import ManifestError, UsageError
from ..events import OUTPUT_LOST, PaceFound, RunSummary, StopReason
from ..ledger.states import Status
from ..observe.progress import ProgressObserver
from ..observers import NullObserver, Observer, guarded
from ..redact import Redactor
from ..reports.outputs import atomic_text, ledger_inputs, refuse_overwrites
from ..settings.jobfile import JobFile, manifests_of, read_job
from ..settings.resolve import Resolved, Settings, resolve
from .modes import Mode, Retry, RetrySelection, Upload, Validate
from .pipeline import ImportRun

log = logging.getLogger("importer.jobs")

#: Exit codes from the least to the most in need of a person: all done; some rows failed;
#: stopped early (run again to go on); a usage error or an unreadable manifest (fix it);
#: credentials refused (fix them); interrupted (someone stopped it).
SEVERITY: tuple[int, ...] = (0, 1, 4, 2, 3, 130)


def worst(codes: Sequence[int]) -> int:
    """The exit code of a job whose runs ended with ``codes``."""
    return max(codes, key=lambda c: SEVERITY.index(c) if c in SEVERITY else len(SEVERITY),
               default=0)


@dataclass(frozen=True)
class Plan:
    """What a command is asked to do: its settings, where each came from, its job file (if
    any) and the manifests to run."""

    resolved: Resolved
    job: JobFile | None
    manifests: tuple[Path, ...]

    @property
    def settings(self) -> Settings:
        return self.resolved.settings


def plan(given: Mapping[str, Any], *, job: Path | None = None, manifest: Path | None = None,
         environ: Mapping[str, str] | None = None,
         given_as: Literal["flag", "keyword"] = "flag", reads: bool = False) -> Plan:
    """Settings and manifests for one command: ``given`` (flags, or the API's keywords) over
    the environment over the job file over defaults; the manifest given wins over the job's.
    For a command that ``reads`` the manifests (run, validate), a job's glob that matches
    nothing is an error; for the others (retry, verify, config), it is no manifest."""
    job_file = read_job(job) if job is not None else None
    resolved = resolve(given, environ, job_file.values if job_file else None, given_as=given_as)
    manifests: list[Path] = []
    if manifest is not None:
        manifests = [manifest]
    elif job_file is not None and job_file.manifest is not None:
        manifests = manifests_of(job_file.manifest)
        if not manifests and reads:
            raise UsageError(f"the job's manifest {job_file.manifest} matches no file")
    return Plan(resolved, job_file, tuple(manifests))


def default_observer(settings: Settings) -> Observer:
    """Progress as a bar on a terminal, a log line every ``progress_interval`` otherwise;
    nothing when quiet."""
    if settings.quiet:
        return NullObserver()
    return ProgressObserver(interval=settings.progress_interval)


def retry_selection(statuses: Sequence[str] = (), include_rejected: bool = False,
                    since: str | None = None) -> RetrySelection:
    """Which ledger rows ``retry`` sends again: ``statuses`` (``failed``, ``pending``,
    ``uploading``; default failed and pending), refused ones too when ``include_rejected``,
    last tried at or after ``since`` (ISO 8601; UTC unless it says otherwise)."""
    chosen = tuple(Status(s) for s in dict.fromkeys(statuses or ["failed", "pending"]))
    if not set(chosen) <= {Status.FAILED, Status.PENDING, Status.UPLOADING}:
        raise UsageError("retry takes rows that failed, are pending, or are uploading "
                         "(unknown outcome)")
    return RetrySelection(chosen, include_rejected, _since(since))


def _since(text: str | None) -> str | None:
    """``since`` as the ledger's UTC ISO text, so that it compares as a string."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since {text!r}: expected an ISO 8601 date or time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ImportResult:
    """What an import (or a validate, or a retry) came to, for a scheduler: the exit code the
    command line would give, why it stopped early if it did, the ledger, and each manifest's
    summary (``summary`` adds them up)."""

    exit_code: int
    stop_reason: StopReason | None
    ledger: Path | None
    summaries: tuple[RunSummary, ...]
    #: Manifests of the job that a stop left for the next run, and why they were left.
    not_started: tuple[Path, ...] = ()
    stopped: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def counts(self) -> dict[str, int]:
        """Rows by outcome over every manifest (``succeeded``, ``failed``, ``invalid``, ...)."""
        return dict(self.summary.counts)

    @property
    def summary(self) -> RunSummary:
        """The one run's summary, or the runs' added up."""
        if len(self.summaries) == 1:
            return self.summaries[0]
        return combined(self.summaries)

    def as_dict(self) -> dict[str, Any]:
        """As ``--summary-json`` writes it: one run's summary as before; for several, their
        sum with each run under ``runs``."""
        if len(self.summaries) == 1 and not self.not_started:
            return {**self.summaries[0].as_dict(), "exit_code": self.exit_code}
        return {**self.summary.as_dict(), "exit_code": self.exit_code,
                "stop_reason": self.stop_reason.name.lower() if self.stop_reason else None,
                "runs": [{**s.as_dict(), "exit_code": s.exit_code} for s in self.summaries],
                "not_started": [str(p) for p in self.not_started]}


def combined(summaries: Sequence[RunSummary]) -> RunSummary:
    """Several runs' summaries added up; it stopped for the reason of the worst of them."""
    total = RunSummary(manifest=", ".join(s.manifest for s in summaries),
                       ledger=summaries[-1].ledger if summaries else None)
    total.counts = Counter()
    total.left = summaries[-1].left if summaries else None
    for s in summaries:
        total.counts.update(s.counts)
        total.errors.update(s.errors)
        total.bytes_sent += s.bytes_sent
        total.elapsed += s.elapsed
        total.same_audio += s.same_audio
        total.shared_audio += s.shared_audio
    paces = [s.pace for s in summaries if s.pace is not None]
    if paces:  # the last pace found, and every 429 of the job
        allowed = [p.allowed for p in paces if p.allowed is not None]
        total.pace = PaceFound(paces[-1].asked, allowed[-1] if allowed else None,
                               sum(p.refused for p in paces), sum(p.pauses for p in paces),
                               paces[0].started_from)
    code = worst([s.exit_code for s in summaries])
    for s in summaries:
        if s.exit_code == code and s.stop_reason is not None:
            total.stop(s.stop_reason, s.stopped)
            break
    return total


class ImportJob:
    """``manifests`` run in turn with ``settings`` (``upload`` False: validated), or, with
    ``retry``, the ledger's rows sent again. ``on_summary`` hears of each run as it ends (the
    command line prints it)."""

    def __init__(self, settings: Settings, manifests: Sequence[Path], *, upload: bool = True,
                 retry: RetrySelection | None = None, observer: Observer | None = None,
                 errors_out: Path | None = None,
                 on_summary: Callable[[RunSummary], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if retry is None and not manifests:
            raise UsageError("no manifest: give MANIFEST, or a job file with a manifest key")
        if errors_out is not None and len(manifests) > 1:
            raise UsageError(f"--errors-out writes one manifest's invalid rows, and the job "
                             f"names {len(manifests)}: validate them one at a time")
        self.settings = settings
        self.manifests = tuple(manifests)
        self.upload = upload
        self.retry = retry
        # Guarded once for the whole job: an observer that fails is detached for good.
        self.observer = observer if observer is None else guarded(observer)
        self.errors_out = errors_out
        # Built now, so that a setting that makes no sense stops the command before any run.
        self.runs = [self._run(settings, m) for m in self.manifests or (None,)]
        self.summaries: list[RunSummary] = []
        self._on_summary = on_summary
        self._clock = clock
        self._current: ImportRun | None = None
        self._stopping: StopReason | None = None
        self._last: ImportResult | None = None

    def result(self) -> ImportResult:
        """The job's result: as ``execute`` returned it, or as far as it got when it raised
        (what ``--summary-json`` writes either way)."""
        return self._last or self._result(())

    def _run(self, settings: Settings, manifest: Path | None) -> ImportRun:
        mode: Mode
        if manifest is None:
            if settings.ledger is None:
                raise UsageError("retry needs a LEDGER (or --job FILE naming one)")
            mode = Retry(settings.ledger, self.retry or RetrySelection())
        elif self.upload:
            mode = Upload(manifest, self.errors_out)
        else:
            mode = Validate(manifest, self.errors_out)
        return ImportRun(settings, mode, observer=self.observer)

    def ledger_paths(self) -> list[Path]:
        """The ledger each run writes (one, for a job: its ledger is a setting)."""
        return list(dict.fromkeys(run.ledger_path() for run in self.runs))

    def stop(self, reason: StopReason = StopReason.INTERRUPTED) -> None:
        """Let the run in progress finish what is in flight, and start no other."""
        self._stopping = self._stopping or reason
        if self._current is not None:
            self._current.stop(reason)

    async def execute(self) -> ImportResult:
        started = self._clock()
        for index, planned in enumerate(self.runs):
            if self._stopping is not None:
                return self._result(self.manifests[index:])
            run, budget = (planned, None) if index == 0 else \
                self._next(index, self._clock() - started)
            if run is None:
                return self._result(self.manifests[index:], budget)
            summary = await self._execute(run)
            if summary.stop_reason not in (None, StopReason.MANIFEST):
                return self._result(self.manifests[index + 1:])
        return self._result(())

    async def _execute(self, run: ImportRun) -> RunSummary:
        """One run; a manifest that cannot be read ends only its own run when others follow
        (it is the job's only one: its error, as for a plain ``run``)."""
        self._current = run
        try:
            summary = await run.execute()
        except ManifestError as exc:
            self.summaries.append(run.summary)
            if len(self.runs) == 1:
                raise
            log.error("%s", exc)
            run.summary.stop(StopReason.MANIFEST, f"{StopReason.MANIFEST.value}: {exc}")
            summary = run.summary
        except BaseException:
            self.summaries.append(run.summary)
            raise
        else:
            self.summaries.append(summary)
        finally:
            self._current = None
        if self._on_summary is not None:
            self._on_summary(summary)
        return summary

    def _next(self, index: int, elapsed: float) -> tuple[ImportRun | None, str | None]:
        """The run of manifest ``index`` with what the job's budgets leave it, or None (and
        why) when they leave nothing."""
        s = self.settings
        update: dict[str, Any] = {}
        if s.max_duration is not None:
            left = s.max_duration - elapsed
            if left <= 0:
                return None, f"--max-duration {s.max_duration:g}s reached"
            update["max_duration"] = left
        if s.max_uploads is not None:
            # Rows that succeeded or failed in the earlier runs: at least every upload they
            # started (a row refused earlier and unchanged counts too): never over the quota.
            used = sum(x.counts["succeeded"] + x.counts["failed"] for x in self.summaries)
            if used >= s.max_uploads:
                return None, f"--max-uploads {s.max_uploads} reached"
            update["max_uploads"] = s.max_uploads - used
        if not update:
            return self.runs[index], None
        return self._run(s.model_copy(update=update), self.manifests[index]), None

    def _result(self, left: Sequence[Path], budget: str | None = None) -> ImportResult:
        codes = [s.exit_code for s in self.summaries]
        stopped = None
        if left and (budget is not None or self._stopping is not None):
            reason = StopReason.BUDGET if budget is not None else self._stopping
            assert reason is not None
            codes.append(reason.exit_code)
            stopped = f"{budget or reason.value}: {len(left)} manifest(s) left for the next run"
            log.warning("stopping the job (%s)", stopped)
        code = worst(codes)
        found = [s.stop_reason for s in self.summaries if s.exit_code == code and s.stop_reason]
        if found:
            reason = found[0]
        elif stopped is not None and code != 0:
            reason = StopReason.BUDGET if budget is not None else self._stopping
        else:
            reason = None
        last = self.summaries[-1].ledger if self.summaries else None
        self._last = ImportResult(code, reason, Path(last) if last else None,
                                  tuple(self.summaries), tuple(left), stopped)
        return self._last


def job_text(result: ImportResult) -> str:
    """The last line of a job of several manifests (each run's summary came before it)."""
    runs = len(result.summaries)
    line = (f"Job: {runs} manifest{'s' * (runs != 1)} run, exit {result.exit_code} (the worst "
            f"of them): " + (", ".join(f"{n} {k}" for k, n in sorted(result.counts.items())
                                       if n and k not in ("retries", "other shards"))
                             or "no rows") + ".")
    if result.not_started:
        line += (f" Not started: {', '.join(str(p) for p in result.not_started)} "
                 f"({result.stopped}).")
    return line


def write_summary_json(path: Path, data: Mapping[str, Any], secrets: Sequence[str]) -> bool:
    """``--summary-json``: written whole or not at all, secrets blanked; whether it was. A
    failure is logged (one line) and must not pass for success: the caller gives a run that
    otherwise succeeded the exit code ``OUTPUT_LOST`` (not a usage error's: the run did
    happen), since a scheduler that reads the file would find none, or last night's."""
    try:
        with atomic_text(path, newline=None) as out:
            out.write(Redactor(secrets)(json.dumps(data, indent=2)) + "\n")
    except UsageError as exc:
        log.error("the summary was not written: %s", exc)
        return False
    return True


def with_output_lost(result: ImportResult) -> ImportResult:
    """``result`` of a job whose output (``--summary-json``) could not be written: a run that
    otherwise succeeded exits ``OUTPUT_LOST``; any other code stands, being weightier."""
    return replace(result, exit_code=OUTPUT_LOST) if result.exit_code == 0 else result


def quiet_line(result: ImportResult, job: ImportJob) -> str:
    """``--quiet``'s one line for a run or job that did not end with every row done: its
    counts, why it stopped if it did, and the command that lists the rows (cron mails what a
    job prints, so nothing is printed when all is well and this line when not)."""
    summary = result.summary
    c = summary.counts
    names = [m.name for m in job.manifests] or [str(summary.ledger)]
    what = names[0] if len(names) == 1 else f"{len(names)} manifests"
    left = summary.left if summary.left is not None else (summary.pending_left or 0) + sum(
        n or 0 for _, n, _ in summary.unread) + (result.stopped is not None) * max(
        0, (summary.expected or 0) - summary.rows)  # the ledger's count, when there is one
    line = (f"convirza-import: {what}: {c['invalid']} invalid, {c['failed']} failed, "
            f"{c['unresolved']} unresolved, {left} left")
    if result.stopped or summary.stopped:
        line += f"; stopped early ({result.stopped or summary.stopped}), exit {result.exit_code}"
    if summary.ledger is not None:
        line += (f"; `convirza-import report {summary.ledger} --status invalid --status "
                 "failed` lists them")
    elif job.manifests:  # validate: no ledger
        line += (f"; `convirza-import validate {job.manifests[0]} --errors-out FILE` writes "
                 "them")
    return line


def refuse_overwriting_inputs(job: ImportJob, extra: Sequence[tuple[str, Path | None]] = ()
                              ) -> None:
    """Stop before anything is read or written when an output of ``job`` (``--errors-out``,
    ``--summary-json``) is one of its inputs: a manifest, the ledger and its companions, the
    columns or token file, or ``extra`` (the job file). ``validate`` writes no ledger, but the
    one a run of its manifest keeps is protected too: a CSV written over it would lose every
    earlier night's outcomes."""
    s = job.settings
    inputs: list[tuple[str, Path | None]] = [("the manifest", m) for m in job.manifests]
    for ledger in job.ledger_paths():
        inputs.extend(ledger_inputs(ledger))
    inputs += [("the columns file", s.columns_file), ("the token file", s.token_file), *extra]
    refuse_overwrites({"--errors-out": job.errors_out, "--summary-json": s.summary_json,
                       "--metrics-textfile": s.metrics_textfile}, inputs)
