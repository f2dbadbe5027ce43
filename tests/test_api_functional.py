"""The Python API for schedulers, used as an Airflow task would use it: no command line, the
sandbox on loopback, typed results, and the exception tree for what the command line reports
as an error line."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from importer import (
    AuthError,
    ImportResult,
    StopReason,
    UsageError,
    retry_ledger,
    run_import,
    run_import_async,
    validate_manifest,
    verify_ledger,
)
from importer.errors import ApiUnavailable
from importer.events import stop_reason_for

from .conftest import TOKEN, SandboxThread, sample_files
from .helpers import status_counts


def settings_for(sandbox: SandboxThread) -> dict[str, object]:
    """What an Airflow connection would hand over; no CONVIRZA_* variable is read."""
    return {"api_url": sandbox.url, "token": TOKEN, "rate": 50.0, "quiet": True,
            "timezone": "America/New_York", "environ": {}}


def test_run_import_returns_a_typed_result(workdir: Path, sandbox: SandboxThread) -> None:
    manifest = workdir / "manifests" / "sample.csv"
    ledger = workdir / "l.sqlite"

    result = run_import(manifest, ledger=ledger, **settings_for(sandbox))

    assert isinstance(result, ImportResult)
    assert (result.exit_code, result.stop_reason, result.ok) == (0, None, True)
    assert result.counts == {"succeeded": len(sample_files())}
    assert result.ledger == ledger and result.summary.ledger == str(ledger)
    assert sandbox.store.count() == len(sample_files())

    again = run_import(manifest, ledger=ledger, **settings_for(sandbox))
    assert again.exit_code == 0 and again.counts == {"skipped": len(sample_files())}

    checked = verify_ledger(ledger, **settings_for(sandbox))
    assert checked.exit_code == 0 and checked.calls == {"present": len(sample_files())}


def test_a_budget_stop_is_a_result_not_an_error(workdir: Path, sandbox: SandboxThread) -> None:
    result = run_import(workdir / "manifests" / "sample.csv", ledger=workdir / "l.sqlite",
                        max_uploads=1, concurrency=1, **settings_for(sandbox))

    assert (result.exit_code, result.stop_reason) == (4, StopReason.BUDGET)
    assert sandbox.store.count() == 1


def test_refused_credentials_and_bad_settings_raise_the_documented_errors(
        workdir: Path, sandbox: SandboxThread) -> None:
    manifest = workdir / "manifests" / "sample.csv"
    settings = {**settings_for(sandbox), "token": "not-the-token"}
    with pytest.raises(AuthError) as refused:
        run_import(manifest, ledger=workdir / "l.sqlite", **settings)
    assert stop_reason_for(refused.value) is StopReason.CREDENTIALS
    assert stop_reason_for(refused.value).exit_code == 3
    assert "not-the-token" not in str(refused.value)

    with pytest.raises(UsageError, match="concurrency=: Input should be greater"):
        run_import(manifest, concurrency=0, **settings_for(sandbox))
    with pytest.raises(UsageError, match="did you mean 'max_uploads'"):
        run_import(manifest, max_upload=3, **settings_for(sandbox))
    with pytest.raises(UsageError, match="no manifest"):
        run_import(**settings_for(sandbox))
    with pytest.raises(ApiUnavailable):
        run_import(manifest, ledger=workdir / "l.sqlite",
                   **{**settings_for(sandbox), "api_url": "http://127.0.0.1:9",
                      "connect_timeout": 0.5})


def test_no_signal_handler_is_installed(workdir: Path, sandbox: SandboxThread) -> None:
    """A scheduler owns signals. Outside the main thread, installing a handler raises; the
    API runs there as in an Airflow worker's thread."""
    results: list[ImportResult] = []
    failures: list[BaseException] = []

    def task() -> None:
        try:
            results.append(run_import(workdir / "manifests" / "sample.csv",
                                      ledger=workdir / "l.sqlite", **settings_for(sandbox)))
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    worker = threading.Thread(target=task)
    worker.start()
    worker.join(timeout=60)
    assert not failures and results[0].exit_code == 0


def test_validate_and_retry_from_a_job_file(tmp_path: Path, workdir: Path,
                                             sandbox: SandboxThread) -> None:
    job = workdir / "nightly.toml"
    job.write_text('manifest = "manifests/sample.csv"\ntoken_env = "AIRFLOW_CONVIRZA_TOKEN"\n'
                   'timezone = "America/New_York"\nrate = 50\nquiet = true\n')
    environ = {"CONVIRZA_API_URL": sandbox.url, "AIRFLOW_CONVIRZA_TOKEN": TOKEN}
    errors = tmp_path / "errors.csv"

    checked = validate_manifest(job=job, errors_out=errors, environ=environ)
    assert checked.exit_code == 0 and checked.counts == {"valid": len(sample_files())}
    assert errors.read_text(encoding="utf-8-sig").startswith("row,errors")

    done = run_import(job=job, environ=environ)
    assert done.exit_code == 0 and done.ledger == workdir / "nightly.ledger.sqlite"
    retried = retry_ledger(job=job, environ=environ, statuses=["failed", "uploading"])
    assert retried.exit_code == 0 and retried.summary.rows == 0
    with pytest.raises(UsageError, match="--since"):
        retry_ledger(job=job, environ=environ, since="last tuesday")


async def test_the_async_twins_run_in_the_callers_loop_and_stop_cleanly_when_cancelled(
        workdir: Path, sandbox: SandboxThread) -> None:
    """As a notebook cell or an async scheduler calls it: awaited in the running loop; a
    cancel (the cell interrupted, the task killed) lets the uploads in flight end, records
    them, and leaves no row 'uploading'; the next call resumes and sends each row once."""
    manifest = workdir / "manifests" / "sample.csv"
    ledger = workdir / "l.sqlite"
    sandbox.set_faults(latency=0.3)  # uploads take a while: the cancel meets some in flight
    with pytest.raises(UsageError, match="run_import_async"):
        run_import(manifest, ledger=ledger, **settings_for(sandbox))  # in a running loop

    task = asyncio.create_task(run_import_async(manifest, ledger=ledger, concurrency=2,
                                                **settings_for(sandbox)))
    while not any("/v2/call/upload" in r for r in list(sandbox.state.received_log)) \
            and not task.done():
        await asyncio.sleep(0.01)  # until the sandbox has an upload in hand
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    states = status_counts(ledger)
    assert states["uploading"] == 0 and states["succeeded"] < 8
    assert states["succeeded"] == sandbox.store.count()  # what arrived is recorded so
    with sqlite3.connect(ledger) as conn:
        assert conn.execute("SELECT exit_code FROM runs").fetchall() == [(130,)]

    sandbox.set_faults(latency=0.0)
    result = await run_import_async(manifest, ledger=ledger, **settings_for(sandbox))
    assert result.exit_code == 0 and status_counts(ledger) == {"succeeded": 8}
    assert sandbox.store.count() == 8  # each once
