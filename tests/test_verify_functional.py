"""``verify``: every succeeded row of a ledger looked up in the sandbox's calls, found once,
missing, or doubled; rows without an external_id listed as unverifiable. Real imports over
loopback HTTP, real ledgers; duplicates and losses are planted in the sandbox's own store."""

from __future__ import annotations

import csv
import logging
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import unquote

import pytest

from importer import run_import, verify_ledger
from importer.cli.commands import main

from .conftest import TOKEN, SandboxThread, distinct_copy, sample_files


def call_lookups(sandbox: SandboxThread) -> list[str]:
    """The call-list requests the sandbox received, filters decoded."""
    return [unquote(r) for r in sandbox.state.received_log if "/v2/call/list" in r]


def import_sample(workdir: Path, *extra: str) -> Path:
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger", str(ledger),
                 "--rate", "50", "--quiet", *extra]) == 0
    return ledger


def findings(path: Path) -> dict[str, list[dict[str, str]]]:
    by_verdict: dict[str, list[dict[str, str]]] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            by_verdict.setdefault(row["verdict"], []).append(row)
    return by_verdict


def test_a_clean_import_verifies_clean_listing_its_groups(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    ledger = import_sample(workdir)
    capsys.readouterr()
    before = len(call_lookups(sandbox))

    assert main(["verify", str(ledger), "--rate", "50"]) == 0

    out = capsys.readouterr().out
    assert "8 calls present once, 0 missing, 0 present more than once" in out
    assert "No row is unverifiable" in out
    # Groups 12 (five calls) and 14 (three): for each, one request sizes the group, and one
    # page lists it: 4 requests where one lookup per external_id takes 8.
    asked = call_lookups(sandbox)[before:]
    assert len(asked) == 4
    assert sum("offset=299" in r for r in asked) == 1  # group 12: fewer than 300 calls?
    assert sum("offset=99" in r for r in asked) == 1   # group 14: fewer than 100?
    assert not any("external_id=" in r for r in asked)


def test_a_planted_duplicate_and_a_lost_call_are_found(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    ledger = import_sample(workdir)
    [first] = sandbox.store.calls(external_id="PBX-2024-000102")
    doubled = sandbox.store.add("planted", dict(first.fields), first.file_name,
                                first.file_size, first.file_sha256)
    [lost] = sandbox.store.calls(external_id="PBX-2024-000105")
    assert sandbox.store.delete(lost.call_id)
    report = workdir / "discrepancies.csv"
    capsys.readouterr()

    assert main(["verify", str(ledger), "--output", str(report)]) == 1

    out = capsys.readouterr().out
    assert "6 calls present once, 1 missing, 1 present more than once" in out
    found = findings(report)
    assert set(found) == {"duplicated", "missing"}
    [dup] = found["duplicated"]
    assert (dup["external_id"], dup["found"], dup["key"]) == \
        ("PBX-2024-000102", "2", "ext:PBX-2024-000102")
    assert dup["call_ids"] == f"{first.call_id} {doubled}"
    [missing] = found["missing"]
    assert (missing["external_id"], missing["found"], missing["group_id"]) == \
        ("PBX-2024-000105", "0", "14")
    assert missing["row_number"] == "6"


def test_rows_without_an_external_id_are_listed_as_unverifiable(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    ledger = import_sample(workdir, "--no-auto-external-id")
    report = workdir / "v.csv"

    result = verify_ledger(ledger, output=report)

    assert result.exit_code == 0  # every row that can be verified is there once
    assert result.rows == {"present": 5, "unverifiable": 3}
    unverifiable = findings(report)["unverifiable"]
    assert len(unverifiable) == 3
    assert all(r["key"].startswith("file:") and r["external_id"] == "" for r in unverifiable)
    assert {r["detail"] for r in unverifiable} == {"imported without an external_id"}


def test_a_busy_group_is_looked_up_one_by_one(workdir: Path, sandbox: SandboxThread,
                                             token_env: str) -> None:
    ledger = import_sample(workdir)
    for n in range(300):  # calls of group 12 that are not ours: listing them costs 4 pages
        sandbox.store.add(f"other-{n}", {"external_id": f"LIVE-{n}", "group_id": "12"},
                          None, None, None)
    before = len(call_lookups(sandbox))

    result = verify_ledger(ledger, rate=50.0)

    assert result.exit_code == 0 and result.calls == {"present": 8}
    asked = call_lookups(sandbox)[before:]
    # Group 12: the sizing request finds a 300th call, so its 5 calls are looked up one by
    # one; group 14 is still sized and listed.
    assert sum("external_id=" in r for r in asked) == 5
    assert len(asked) == result.requests == 2 + 5 + 1


def test_many_rows_in_one_group_take_two_requests(tmp_path: Path, sandbox: SandboxThread,
                                                  token_env: str) -> None:
    rows = ["external_id,recording_file,call_date,group_id,caller_id"]
    source = next(p for p in sample_files() if p.suffix == ".wav")
    for n in range(30):
        copy = distinct_copy(source, tmp_path / f"call-{n}.wav", n)
        rows.append(f"NIGHT-{n:03d},{copy.name},2025-03-04T09:15:22-05:00,12,6175550142")
    # An external_id with a comma, which no filter can carry: found among group 16's calls.
    comma = distinct_copy(source, tmp_path / "comma.wav", 99)
    rows.append(f'"NIGHT,99",{comma.name},2025-03-04T09:15:22-05:00,16,6175550143')
    manifest = tmp_path / "night.csv"
    manifest.write_text("\n".join(rows) + "\n")
    ledger = tmp_path / "night.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger), "--rate", "100",
                 "--quiet"]) == 0
    before = len(call_lookups(sandbox))

    result = verify_ledger(ledger, rate=100.0)

    assert result.exit_code == 0 and result.calls == {"present": 31}
    asked = call_lookups(sandbox)[before:]
    # Group 12: sized, then one page of its 30 calls (one lookup each would take 30).
    # Group 16's one call is looked up alone, by its group and caller (no comma allowed).
    assert len(asked) == result.requests == 3
    assert any("filter=group_id=16,caller_id=6175550143" in r for r in asked)


def test_rows_found_already_imported_stand_for_their_call(
        tmp_path: Path, sandbox: SandboxThread, token_env: str) -> None:
    source = sample_files()[0]
    shutil.copy(source, tmp_path / "a.wav")
    shutil.copy(source, tmp_path / "same-audio.wav")
    manifest = tmp_path / "m.csv"
    # One call exported twice, once by name only: no two explicit ids tell them apart.
    manifest.write_text("external_id,recording_file,call_date,group_id,caller_id\n"
                        "A-1,a.wav,2025-03-04T09:15:22-05:00,12,6175550142\n"
                        ",same-audio.wav,2025-03-04T09:15:22-05:00,12,6175550142\n")
    ledger = tmp_path / "l.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger), "--quiet"]) == 0
    # One row was sent (whichever a worker took first); the other is recorded as already
    # imported under its key (same_as).
    [call_id] = [c.call_id for c in sandbox.store.calls()]
    keys = {"ext:A-1", f"file:{(tmp_path / 'same-audio.wav').resolve()}"}
    with sqlite3.connect(ledger) as conn:
        sent = conn.execute("SELECT key FROM recordings WHERE same_as IS NULL").fetchone()[0]
    conn.close()

    result = verify_ledger(ledger, api_url=sandbox.url, token=TOKEN, environ={})

    assert result.exit_code == 0
    assert result.rows == {"present": 2} and result.calls == {"present": 1}
    sandbox.store.delete(call_id)
    lost = verify_ledger(ledger, api_url=sandbox.url, token=TOKEN, environ={})
    assert lost.exit_code == 1 and lost.rows == {"missing": 2}
    assert {f.key for f in lost.findings} == keys
    assert {f.same_as for f in lost.findings} == {None, sent}


def test_progress_is_logged_as_a_run_logs_it(workdir: Path, sandbox: SandboxThread,
                                            token_env: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    ledger = workdir / "l.sqlite"
    assert run_import(workdir / "manifests" / "sample.csv", ledger=ledger, rate=50.0,
                      quiet=True).exit_code == 0

    with caplog.at_level(logging.INFO, logger="importer.verify"):
        verify_ledger(ledger, progress_interval=1e-6)

    lines = [r.getMessage() for r in caplog.records if r.name == "importer.verify"]
    assert lines and lines[-1].startswith("verify: 8/8 rows (100%): present 8;")


def test_verify_refuses_to_write_over_its_ledger(workdir: Path, sandbox: SandboxThread,
                                                 token_env: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ledger = import_sample(workdir)
    capsys.readouterr()
    assert main(["verify", str(ledger), "--output", str(ledger) + "-wal"]) == 2
    assert "an output never overwrites an input" in capsys.readouterr().err
    assert main(["verify"]) == 2
