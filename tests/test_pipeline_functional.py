"""The run engine driven directly, not through the command line: ``ImportRun`` with a mode and a
recording observer against the sandbox, asserting the events it reports and the ledger states
it leaves, rather than printed text. A fake clock drives ``--max-duration``."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from importer.events import Outcome, RowEvent, RunSummary, StopReason
from importer.observers import Observer
from importer.run.pipeline import ImportRun, Retry, RetrySelection, Upload, Validate
from importer.settings.resolve import Settings

from .conftest import TOKEN, SandboxThread
from .helpers import good_row, many_rows, status_counts, write_manifest


class Recorder(Observer):
    """Every event a run reports, as it reports them."""

    def __init__(self) -> None:
        self.rows: list[RowEvent] = []
        self.counted: Counter[Outcome] = Counter()
        self.summaries: list[RunSummary] = []

    def started(self, summary: RunSummary) -> None:
        self.summaries.append(summary)

    def row(self, event: RowEvent) -> None:
        self.rows.append(event)

    def passed(self, outcome: Outcome, n: int) -> None:
        self.counted[outcome] += n

    def finished(self, summary: RunSummary) -> None:
        self.summaries.append(summary)

    def outcomes(self) -> Counter[Outcome]:
        return Counter(e.outcome for e in self.rows) + self.counted


def settings(sandbox: SandboxThread, ledger: Path, **more: object) -> Settings:
    return Settings.load({"api_url": sandbox.url, "token": TOKEN, "timezone": "UTC",
                          "rate": 1000.0, "ledger": ledger, **more}, environ={})


async def test_a_run_reports_every_row_and_leaves_every_row_done(
        workdir: Path, sandbox: SandboxThread) -> None:
    ledger = workdir / "ledger.sqlite"
    recorder = Recorder()
    run = ImportRun(settings(sandbox, ledger), Upload(workdir / "manifests" / "sample.csv"),
                    observer=recorder)

    summary = await run.execute()

    assert recorder.outcomes() == Counter({Outcome.SUCCEEDED: 8})
    assert {e.row for e in recorder.rows} == set(range(2, 10))
    assert recorder.summaries == [summary, summary] and summary.exit_code == 0
    assert status_counts(ledger) == Counter({"succeeded": 8})
    assert sandbox.store.count() == 8

    again = Recorder()
    await ImportRun(settings(sandbox, ledger), Upload(workdir / "manifests" / "sample.csv"),
                    observer=again).execute()
    assert again.rows == [] and again.counted == Counter({Outcome.SKIPPED: 8})


async def test_validate_reports_what_a_run_would_do_and_writes_no_ledger(
        workdir: Path, sandbox: SandboxThread) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="V1"), good_row(external_id="V2", caller_id="call me"),
        good_row(external_id="V1", recording_file="../sample_data/call-0005-cbr.mp3")])
    ledger = workdir / "ledger.sqlite"
    recorder = Recorder()

    summary = await ImportRun(settings(sandbox, ledger), Validate(manifest),
                              observer=recorder).execute()

    assert recorder.outcomes() == Counter({Outcome.VALID: 1, Outcome.INVALID: 2})
    invalid = {e.row: e.reasons for e in recorder.rows if e.outcome is Outcome.INVALID}
    assert "duplicate of an earlier row" in invalid[4]
    assert any(r.startswith("caller_id:") for r in invalid[3])
    assert summary.exit_code == 1 and not ledger.exists() and sandbox.store.count() == 0


async def test_max_duration_stops_starting_uploads_on_the_runs_clock(
        workdir: Path, sandbox: SandboxThread) -> None:
    """Each upload moves a fake clock ten seconds on: with 25 s allowed, the third upload is
    the last one started, and the rest stay pending for the next run."""
    clock = [0.0]

    class Ticking(Recorder):
        def row(self, event: RowEvent) -> None:
            super().row(event)
            if event.outcome is Outcome.SUCCEEDED:
                clock[0] += 10.0

    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 8))
    ledger = workdir / "ledger.sqlite"
    recorder = Ticking()
    run = ImportRun(settings(sandbox, ledger, concurrency=1, max_duration="25s"),
                    Upload(manifest), observer=recorder, clock=lambda: clock[0])

    summary = await run.execute()

    assert summary.stop_reason is StopReason.BUDGET and summary.exit_code == 4
    assert summary.stopped == "budget: --max-duration 25s reached"
    assert recorder.outcomes() == Counter({Outcome.SUCCEEDED: 3})
    assert status_counts(ledger) == Counter({"succeeded": 3, "pending": 5})
    assert summary.elapsed == 30.0


async def test_retry_sends_again_what_failed_from_the_ledger_alone(
        workdir: Path, sandbox: SandboxThread) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 4))
    ledger = workdir / "ledger.sqlite"
    sandbox.set_faults(fail_rate=1.0)
    failing = await ImportRun(settings(sandbox, ledger, max_attempts=1),
                              Upload(manifest)).execute()
    assert failing.exit_code == 1 and status_counts(ledger) == Counter({"failed": 4})
    manifest.unlink()
    sandbox.set_faults(fail_rate=0.0)
    recorder = Recorder()

    summary = await ImportRun(settings(sandbox, ledger), Retry(ledger, RetrySelection()),
                              observer=recorder).execute()

    assert summary.exit_code == 0
    # A 500 after the body was sent left each outcome unknown: looked up, not found, resent.
    assert recorder.outcomes() == Counter({Outcome.RESENDING: 4, Outcome.SUCCEEDED: 4})
    assert status_counts(ledger) == Counter({"succeeded": 4})
    with sqlite3.connect(ledger) as conn:
        commands = [c for (c,) in conn.execute("SELECT command FROM runs ORDER BY id")]
    conn.close()
    assert commands == ["run", "retry"]
