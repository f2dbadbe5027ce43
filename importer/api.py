"""The importer as functions, for schedulers that call Python (an Airflow ``PythonOperator``,
a Dagster op, a cron wrapper) rather than a command::

    from importer import run_import

    result = run_import(job="/etc/convirza/nightly.toml", rate=2)
    if result.exit_code:
        raise RuntimeError(f"import ended with {result.exit_code}: {result.counts}")

Each function takes a job file, keyword settings named as ``Settings``' fields
(``concurrency=8``, ``api_url=...``, ``token=...``, ``max_file_size="50MB"``), and the
``CONVIRZA_*`` variables of ``environ`` (default: this process's environment), in that order
of precedence: keyword > environment > job file > default, as flags are on the command line.

A command that runs to its end returns a typed result whose ``exit_code`` is the command
line's (0 all done, 1 some rows failed, 4 stopped by a budget, ...), with ``stop_reason`` as a
``StopReason``. What the command line reports as an error line is raised instead, from
``importer.errors``: ``UsageError`` (settings, no manifest), ``ManifestError`` (a job's only
manifest cannot be read), ``LedgerError``/``LedgerBusy``, ``AuthError`` (credentials refused),
``NotTheApi`` (a redirect or an HTML page answered), ``ApiUnavailable`` (no API before the
first row). ``events.stop_reason_for(exc)`` maps each to the exit code the command line gives.

The host owns the process: these functions install no signal handler and set up no logging
(their records go to the ``importer`` logger, progress to ``importer.progress`` when not
quiet). They run their own event loop; from async code (a notebook, an async scheduler),
await their twins, which run in the caller's loop and stop cleanly when cancelled::

    result = await run_import_async("calls.csv", token=token, rate=2)

(``run_import`` called there raises ``UsageError`` naming its twin.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ImporterError, UsageError
from .events import StopReason
from .ledger.states import Status
from .observers import Observer
from .run.findings import VerifyResult, check_outputs, findings_file
from .run.jobs import (
    ImportJob,
    ImportResult,
    Plan,
    default_observer,
    plan,
    refuse_overwriting_inputs,
    retry_selection,
    with_output_lost,
    write_summary_json,
)
from .run.verify import Verifier

PathLike = str | os.PathLike[str]


def run_import(manifest: PathLike | None = None, *, job: PathLike | None = None,
               errors_out: PathLike | None = None, observer: Observer | None = None,
               environ: Mapping[str, str] | None = None, **settings: Any) -> ImportResult:
    """Import ``manifest`` (or the job file's manifest: a path, or a glob whose matches run in
    turn through one ledger), as ``convirza-import run`` does; running it again resumes.
    ``errors_out`` receives the invalid rows, to fix and run again."""
    _not_in_a_loop("run_import")
    return _execute(*_import(manifest, job, errors_out, observer, environ, settings))


async def run_import_async(manifest: PathLike | None = None, *, job: PathLike | None = None,
                           errors_out: PathLike | None = None, observer: Observer | None = None,
                           environ: Mapping[str, str] | None = None,
                           **settings: Any) -> ImportResult:
    """``run_import`` in the caller's event loop (a notebook, an async scheduler). Cancelled,
    it stops as a first Ctrl-C does: the uploads in flight end and are recorded (for at most
    ``stop_grace`` seconds), no row is left ``uploading``, and ``CancelledError`` goes on."""
    return await _execute_async(*_import(manifest, job, errors_out, observer, environ,
                                         settings))


def validate_manifest(manifest: PathLike | None = None, *, job: PathLike | None = None,
                      errors_out: PathLike | None = None, observer: Observer | None = None,
                      environ: Mapping[str, str] | None = None,
                      **settings: Any) -> ImportResult:
    """Everything ``run_import`` does before sending, as ``convirza-import validate`` does:
    nothing is uploaded and no ledger written; ``errors_out`` receives the invalid rows."""
    _not_in_a_loop("validate_manifest")
    return _execute(*_import(manifest, job, errors_out, observer, environ, settings,
                             upload=False))


async def validate_manifest_async(manifest: PathLike | None = None, *,
                                  job: PathLike | None = None,
                                  errors_out: PathLike | None = None,
                                  observer: Observer | None = None,
                                  environ: Mapping[str, str] | None = None,
                                  **settings: Any) -> ImportResult:
    """``validate_manifest`` in the caller's event loop."""
    return await _execute_async(*_import(manifest, job, errors_out, observer, environ,
                                         settings, upload=False))


def retry_ledger(ledger: PathLike | None = None, *, job: PathLike | None = None,
                 statuses: Sequence[str] = (), include_rejected: bool = False,
                 since: str | None = None, observer: Observer | None = None,
                 environ: Mapping[str, str] | None = None, **settings: Any) -> ImportResult:
    """Send again the rows of ``ledger`` (default: the job file's) that failed or are still
    pending (by default), or whose outcome is unknown (``statuses=("uploading",)``), as
    ``convirza-import retry`` does."""
    _not_in_a_loop("retry_ledger")
    return _execute(*_retry(ledger, job, statuses, include_rejected, since, observer,
                            environ, settings))


async def retry_ledger_async(ledger: PathLike | None = None, *, job: PathLike | None = None,
                             statuses: Sequence[str] = (), include_rejected: bool = False,
                             since: str | None = None, observer: Observer | None = None,
                             environ: Mapping[str, str] | None = None,
                             **settings: Any) -> ImportResult:
    """``retry_ledger`` in the caller's event loop, stopping as ``run_import_async`` does."""
    return await _execute_async(*_retry(ledger, job, statuses, include_rejected, since,
                                        observer, environ, settings))


def verify_ledger(*ledgers: PathLike, job: PathLike | None = None,
                  output: PathLike | None = None, requeue_missing: bool = False,
                  environ: Mapping[str, str] | None = None, **settings: Any) -> VerifyResult:
    """Look every succeeded row of ``ledgers`` (default: the job file's) up in Convirza, as
    ``convirza-import verify`` does; ``output`` receives the discrepancies as CSV, and
    ``requeue_missing`` puts the rows whose call is missing back to pending (``retry``
    sends them). The result's ``exit_code`` is 0 when every row that can be verified is there
    exactly once."""
    _not_in_a_loop("verify_ledger")
    return asyncio.run(verify_ledger_async(*ledgers, job=job, output=output,
                                           requeue_missing=requeue_missing, environ=environ,
                                           **settings))


async def verify_ledger_async(*ledgers: PathLike, job: PathLike | None = None,
                              output: PathLike | None = None, requeue_missing: bool = False,
                              environ: Mapping[str, str] | None = None,
                              **settings: Any) -> VerifyResult:
    """``verify_ledger`` in the caller's event loop (it only reads: a cancel just stops it)."""
    chosen = _plan(settings, job, None, environ)
    paths = [Path(p) for p in ledgers]
    if not paths and chosen.settings.ledger is not None:
        paths = [chosen.settings.ledger]
    if not paths:
        raise UsageError("verify needs a ledger: give one, or a job file")
    out_path = Path(output) if output is not None else None
    check_outputs(out_path, paths, chosen.job.path if chosen.job else None)
    with findings_file(out_path) as out:
        verifier = Verifier(chosen.settings, paths, on_finding=out.write if out else None,
                            requeue_missing=requeue_missing)
        return await verifier.execute()


def _not_in_a_loop(name: str) -> None:
    """A plain function called from a running event loop cannot run one of its own: say
    which twin to await, before anything is started (no coroutine left never awaited)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise UsageError(f"{name}() runs an event loop of its own and was called inside a running "
                     f"one (a notebook, async code): use `await {name}_async(...)` there")


def _import(manifest: PathLike | None, job: PathLike | None, errors_out: PathLike | None,
            observer: Observer | None, environ: Mapping[str, str] | None,
            settings: dict[str, Any], *, upload: bool = True) -> tuple[Plan, ImportJob]:
    chosen = _plan(settings, job, manifest, environ, reads=True)
    return chosen, ImportJob(
        chosen.settings, chosen.manifests, upload=upload, observer=_observer(chosen, observer),
        errors_out=Path(errors_out) if errors_out is not None else None)


def _retry(ledger: PathLike | None, job: PathLike | None, statuses: Sequence[str],
           include_rejected: bool, since: str | None, observer: Observer | None,
           environ: Mapping[str, str] | None,
           settings: dict[str, Any]) -> tuple[Plan, ImportJob]:
    if ledger is not None:
        settings["ledger"] = ledger
    chosen = _plan(settings, job, None, environ)
    if chosen.settings.ledger is None:
        raise UsageError("retry needs a ledger: give it, or a job file")
    selection = retry_selection(_statuses(statuses), include_rejected, since)
    return chosen, ImportJob(chosen.settings, (), retry=selection,
                             observer=_observer(chosen, observer))


async def _stopping_when_cancelled(job: ImportJob, grace: float) -> ImportResult:
    """``job`` run in a task of its own, so that a cancel of the caller stops it gently, as
    a first Ctrl-C does (in-flight uploads end and are recorded, nothing new starts), and the
    cancel goes on once it has; past ``grace`` seconds, or at a second cancel, it aborts,
    leaving the rows in flight ``uploading`` for the next run to reconcile (as a second
    Ctrl-C does). The ledger is consistent either way."""
    running = asyncio.ensure_future(job.execute())
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        job.stop(StopReason.INTERRUPTED)
        try:
            await asyncio.wait_for(asyncio.shield(running), grace)
        except (TimeoutError, asyncio.CancelledError):
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError, ImporterError):
                await running
        except ImporterError:
            pass  # the cancel is what the caller hears of; the ledger has the rest
        raise


def _statuses(statuses: Sequence[str]) -> tuple[str, ...]:
    """``retry_ledger``'s statuses: a plain string is one status (``statuses="failed"``, as a
    caller naturally writes it, is not the statuses "f", "a", ...), and a value that is no
    ledger status at all is a ``UsageError``, as the command line's choices refuse it."""
    chosen = (statuses,) if isinstance(statuses, str) else tuple(statuses)
    known = [s.value for s in Status]
    for status in chosen:
        if status not in known:
            raise UsageError(f"retry takes rows by ledger status ({', '.join(known)}), got "
                             f"{status!r}")
    return chosen


def _plan(settings: dict[str, Any], job: PathLike | None, manifest: PathLike | None,
          environ: Mapping[str, str] | None, *, reads: bool = False) -> Plan:
    return plan(settings, job=Path(job) if job is not None else None,
                manifest=Path(manifest) if manifest is not None else None, environ=environ,
                given_as="keyword", reads=reads)


def _observer(chosen: Plan, observer: Observer | None) -> Observer:
    return observer if observer is not None else default_observer(chosen.settings)


def _execute(chosen: Plan, job: ImportJob) -> ImportResult:
    """Run ``job`` to its end in an event loop of its own."""
    return asyncio.run(_execute_async(chosen, job))


async def _execute_async(chosen: Plan, job: ImportJob) -> ImportResult:
    """Run ``job`` to its end, writing ``summary_json`` if asked, also when the run ends with
    an error; a summary that could not be written makes a run that otherwise succeeded exit
    ``OUTPUT_LOST`` (5), as on the command line."""
    refuse_overwriting_inputs(job, [("the job file", chosen.job.path if chosen.job else None)])
    written = True
    try:
        result = await _stopping_when_cancelled(job, chosen.settings.stop_grace)
    finally:
        if chosen.settings.summary_json is not None:
            written = write_summary_json(chosen.settings.summary_json, job.result().as_dict(),
                                         chosen.settings.secrets())
    return result if written else with_output_lost(result)
