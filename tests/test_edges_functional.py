"""What an operator's machine does to a run, and what a run must then still do (issue 18):
a ledger of a newer version refused untouched, output that fails (a reader that exits, a full
disk, a closed stderr, a terminal that cannot show a name) never ending the work, every
setting's domain checked where it is declared, an observer that fails detached, controls
escaped in every report format, and the smaller items. Real commands (in-process, or in a
subprocess where the streams or signals are the point), the sandbox over loopback, real
ledgers and recordings."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

import pytest

from importer.cli import main
from importer.ledger import MIGRATIONS

from .conftest import SandboxThread
from .helpers import good_row, write_manifest

# --- item 4: a ledger of a newer version ---------------------------------------------------


def imported_ledger(workdir: Path) -> tuple[Path, Path]:
    """A manifest of two rows and the ledger of its run: one row succeeded, one failed (the
    API refuses campaign 777), so that ``retry`` and ``verify`` have work to do."""
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="N-1"),
        good_row(external_id="N-2", campaign_id="777",
                 recording_file="../sample_data/call-0002-ulaw8k.wav")])
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger), "--quiet"]) == 1
    return manifest, ledger


def from_the_future(ledger: Path, how: str) -> None:
    """Make ``ledger`` look written by a newer version: a migration this one does not know,
    or a ``user_version`` above this one's layout."""
    with sqlite3.connect(ledger) as conn:
        if how == "migration":
            conn.execute("INSERT INTO migrations VALUES ('9999_from_the_future', 't')")
        else:
            conn.execute("PRAGMA user_version = 99")
    conn.close()


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("how", ["migration", "user_version"])
@pytest.mark.parametrize("command", ["run", "retry", "report", "verify"])
def test_a_ledger_of_a_newer_version_is_refused_untouched_by_every_command(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str], command: str, how: str) -> None:
    manifest, ledger = imported_ledger(workdir)
    from_the_future(ledger, how)
    before, calls = fingerprint(ledger), sandbox.store.count()
    requests = len(sandbox.state.received_log)
    capsys.readouterr()

    argv = {"run": ["run", str(manifest), "--ledger", str(ledger)],
            "retry": ["retry", str(ledger)], "report": ["report", str(ledger)],
            "verify": ["verify", str(ledger)]}[command]
    assert main(argv) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(ledger) in err and "newer version" in err
    ours, theirs = len(MIGRATIONS), 99 if how == "user_version" else len(MIGRATIONS) + 1
    assert re.search(rf"layout {theirs}\b", err) and re.search(rf"up to {ours}\b", err), err
    if how == "migration":
        assert "9999_from_the_future" in err
    assert fingerprint(ledger) == before                  # never written
    assert sandbox.store.count() == calls                 # nothing sent
    assert len(sandbox.state.received_log) == requests    # nor even looked up


def test_a_ledger_records_its_layout_as_user_version(workdir: Path, sandbox: SandboxThread,
                                                       token_env: str) -> None:
    _, ledger = imported_ledger(workdir)

    with sqlite3.connect(ledger) as conn:
        stamped = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    assert stamped == len(MIGRATIONS)
