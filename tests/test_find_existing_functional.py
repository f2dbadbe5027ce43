"""Convirza is asked before a new ledger sends (issue 17, item 2): a lost, copied or new ledger
doubles nothing that Convirza holds, and a first migration does not pay a lookup per row.
Real HTTP to the sandbox (which keeps what it received and answers the call lookups), real
SQLite, real audio."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import unquote

import pytest

from importer.cli.commands import main

from .conftest import SandboxThread
from .helpers import many_rows, received, status_counts, write_manifest


def run(manifest: Path, ledger: Path, *flags: str) -> int:
    return main(["run", str(manifest), "--ledger", str(ledger), "--rate", "1000", *flags])


def call_lookups(sandbox: SandboxThread) -> list[str]:
    return [unquote(r) for r in sandbox.state.received_log if "/v2/call/list" in r]


def outcomes(ledger: Path) -> dict[str, int]:
    with sqlite3.connect(ledger) as conn:
        found = dict(conn.execute("SELECT last_outcome, COUNT(*) FROM recordings GROUP BY 1"))
    conn.close()
    return found


@pytest.fixture
def imported(workdir: Path, sandbox: SandboxThread, token_env: str) -> Path:
    """A manifest of 60 rows (each its own recording), imported through a first ledger."""
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 60))
    assert run(manifest, workdir / "first.sqlite") == 0
    assert sandbox.store.count() == 60
    return manifest


def test_a_manifest_run_again_with_a_fresh_ledger_uploads_nothing(
        imported: Path, workdir: Path, sandbox: SandboxThread,
        capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    fresh = workdir / "lost-and-new.sqlite"

    assert run(imported, fresh) == 0

    assert sandbox.store.count() == 60
    assert set(received(sandbox).values()) == {1}
    assert status_counts(fresh) == {"succeeded": 60}
    assert outcomes(fresh) == {"found in Convirza": 60}
    out = capsys.readouterr().out
    assert "60 found in Convirza" in out
    assert "Convirza was asked first (a new ledger): every row new to the ledger was looked " \
           "up before it was sent; 60 found in Convirza, not sent" in out
    # One group of 60 rows: listed (a question and a page), not 60 lookups.
    assert len(call_lookups(sandbox)) < 60 + 20


def test_the_same_manifest_with_five_new_rows_uploads_five(
        imported: Path, workdir: Path, sandbox: SandboxThread) -> None:
    rows = many_rows(workdir, 65)
    write_manifest(imported, rows)

    assert run(imported, workdir / "fresh.sqlite") == 0

    assert sandbox.store.count() == 65
    assert set(received(sandbox).values()) == {1}
    assert outcomes(workdir / "fresh.sqlite") == {"found in Convirza": 60, "succeeded": 5}


def test_a_first_migration_pays_the_sample_only(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 60))
    ledger = workdir / "l.sqlite"

    assert run(manifest, ledger) == 0

    assert sandbox.store.count() == 60
    asked = [r for r in call_lookups(sandbox) if "external_id=" in r]
    assert len(asked) == 20  # ten first rows, ten spread across the rest
    assert {r.split("external_id=")[1].split(",")[0].split("&")[0] for r in asked} >= {
        f"E-{i:04d}" for i in range(10)}
    assert "none of 20 sample rows is in Convirza yet, so rows were sent without a lookup " \
           "each" in capsys.readouterr().out
    # The ledger is no longer new: its next run asks nothing.
    before = len(call_lookups(sandbox))
    assert run(manifest, ledger) == 0
    assert len(call_lookups(sandbox)) == before


def test_a_partial_earlier_import_is_found_by_its_first_rows(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    rows = many_rows(workdir, 40)
    first = write_manifest(workdir / "manifests" / "first.csv", rows[:4])
    assert run(first, workdir / "lost.sqlite") == 0
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)

    assert run(manifest, workdir / "new.sqlite") == 0

    assert sandbox.store.count() == 40
    assert set(received(sandbox).values()) == {1}
    assert outcomes(workdir / "new.sqlite") == {"found in Convirza": 4, "succeeded": 36}


def test_the_decision_outlives_a_stop(imported: Path, workdir: Path,
                                      sandbox: SandboxThread) -> None:
    """The first run on the new ledger stops after a few rows; the next looks up the rest
    too, although the ledger is no longer new."""
    rows = many_rows(workdir, 70)
    write_manifest(imported, rows)
    ledger = workdir / "fresh.sqlite"
    assert run(imported, ledger, "--max-uploads", "2", "--concurrency", "1") in (0, 4)

    assert run(imported, ledger) == 0

    assert sandbox.store.count() == 70
    assert set(received(sandbox).values()) == {1}


def test_a_lookup_that_fails_is_not_absent(imported: Path, workdir: Path,
                                           sandbox: SandboxThread,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.set_faults(call_list_fail_rate=1.0)
    capsys.readouterr()

    code = run(imported, workdir / "fresh.sqlite", "--max-attempts", "1")

    assert code == 4
    assert sandbox.store.count() == 60  # nothing sent on a guess
    err = capsys.readouterr().err
    assert "cannot ask Convirza whether this manifest is already imported" in err
    assert "--find-existing never" in err


def test_never_sends_without_asking_and_always_asks_on_any_ledger(
        imported: Path, workdir: Path, sandbox: SandboxThread) -> None:
    rows = many_rows(workdir, 62)
    write_manifest(imported, rows)
    before = len(call_lookups(sandbox))

    # The first ledger is not new: by default nothing is asked, and the two new rows go.
    assert run(imported, workdir / "first.sqlite", "--find-existing", "always") == 0
    assert len(call_lookups(sandbox)) > before
    assert sandbox.store.count() == 62

    assert run(imported, workdir / "careless.sqlite", "--find-existing", "never") == 0
    assert sandbox.store.count() == 62 + 62  # as asked: every row sent again


def test_retry_looks_up_the_pending_rows_of_a_manifest_looked_up_first(
        imported: Path, workdir: Path, sandbox: SandboxThread) -> None:
    """The lookups of a run on a new ledger failed after its sample (an outage): the run
    stopped, its rows pending, never looked up. Retry sends pending rows, and looks them up
    first, as the run would have."""
    ledger = workdir / "fresh.sqlite"
    sandbox.set_faults(call_list_fail_after=20 + len(call_lookups(sandbox)))
    assert run(imported, ledger, "--max-attempts", "1") == 4
    assert status_counts(ledger)["pending"] > 0
    assert sandbox.store.count() == 60
    sandbox.set_faults(call_list_fail_after=0)

    assert main(["retry", str(ledger), "--rate", "1000"]) == 0

    assert sandbox.store.count() == 60
    assert status_counts(ledger) == {"succeeded": 60}
