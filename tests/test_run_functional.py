"""End to end: the command line imports real files into the sandbox over loopback HTTP, with
a real SQLite ledger. Nothing of ours is mocked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from importer.cli.commands import main
from importer.ledger.states import Status
from importer.ledger.store import Ledger

from .conftest import TOKEN, SandboxThread, sample_files, sha256_of
from .helpers import good_row, status_of, write_manifest


def test_import_sends_exactly_the_sample_files(workdir: Path, sandbox: SandboxThread,
                                               token_env: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = workdir / "manifests" / "sample.csv"
    ledger = workdir / "ledger.sqlite"

    code = main(["run", str(manifest), "--ledger", str(ledger)])

    assert code == 0
    received = sorted(c.file_sha256 or "" for c in sandbox.store.calls())
    assert received == sorted(sha256_of(p) for p in sample_files())
    assert set(status_of(ledger).values()) == {"succeeded"}
    assert len(status_of(ledger)) == len(sample_files())
    out = capsys.readouterr().out
    assert f"{len(sample_files())} succeeded" in out


def test_fields_arrive_normalized(workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger",
          str(workdir / "l.sqlite")])

    by_id = {c.external_id: c.fields for c in sandbox.store.calls()}
    first = by_id["PBX-2024-000101"]
    assert first["caller_id"] == "6175550142"          # from "(617) 555-0142"
    assert first["call_date"] == "2025-03-04T09:15:22-05:00"
    assert by_id["PBX-2024-000102"]["caller_id"] == "7815550187"  # from "+1 781-555-0187"
    assert by_id["PBX-2024-000103"]["zip_code"] == "02458"        # from "2458"
    # Rows without an external_id get a derived one, so the call can be found again.
    derived = [e for e in by_id if e and e.startswith("cvzimp-")]
    assert len(derived) == 3
    # A date without a zone is read in --timezone (America/New_York, EST in March).
    busy = next(f for f in by_id.values() if f.get("disposition") == "BUSY")
    assert busy["call_date"] == "2025-03-06T19:12:00-05:00"


def test_rerun_uploads_nothing(workdir: Path, sandbox: SandboxThread, token_env: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = workdir / "manifests" / "sample.csv"
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 0
    uploads = sandbox.store.count()
    capsys.readouterr()

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 0

    assert sandbox.store.count() == uploads
    assert "Nothing to upload" in capsys.readouterr().out


def test_default_ledger_sits_beside_the_manifest(workdir: Path, sandbox: SandboxThread,
                                                 token_env: str) -> None:
    manifest = workdir / "manifests" / "sample.csv"
    assert main(["run", str(manifest)]) == 0
    assert (workdir / "manifests" / "sample.csv.ledger.sqlite").is_file()


def test_wrong_token_exits_3_and_marks_nothing_succeeded(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CONVIRZA_TOKEN", "not-the-token")
    ledger = workdir / "ledger.sqlite"

    code = main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger", str(ledger),
                 "--concurrency", "2"])

    assert code == 3
    assert sandbox.store.count() == 0
    states = status_of(ledger)
    assert "succeeded" not in states.values()
    assert "uploading" not in states.values()   # refused requests imported nothing
    # At most `concurrency` requests saw the refusal before the run stopped.
    assert sandbox.state.unauthorized <= 2
    assert "CONVIRZA_TOKEN" in capsys.readouterr().err

    # With the right token, the same command finishes the job.
    monkeypatch.setenv("CONVIRZA_TOKEN", TOKEN)
    assert main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger", str(ledger)]) == 0
    assert sandbox.store.count() == len(sample_files())


def test_password_login(workdir: Path, sandbox: SandboxThread, token_env: str,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVIRZA_TOKEN")
    monkeypatch.setenv("CONVIRZA_USERNAME", "demo@example.com")
    monkeypatch.setenv("CONVIRZA_PASSWORD", "demo-password")

    code = main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger",
                 str(workdir / "l.sqlite")])

    assert code == 0
    assert sandbox.state.logins == 1
    assert sandbox.store.count() == len(sample_files())


def test_refused_login_exits_3(workdir: Path, sandbox: SandboxThread, token_env: str,
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CONVIRZA_TOKEN")
    monkeypatch.setenv("CONVIRZA_USERNAME", "demo@example.com")
    monkeypatch.setenv("CONVIRZA_PASSWORD", "wrong-password-123")

    code = main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger",
                 str(workdir / "l.sqlite")])

    assert code == 3
    err = capsys.readouterr().err
    assert "demo@example.com" in err and "wrong-password-123" not in err
    assert sandbox.state.refused_logins == 1


def test_missing_file_row_is_invalid_and_named(workdir: Path, sandbox: SandboxThread,
                                               token_env: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(),
        good_row(external_id="X-2", recording_file="../sample_data/no-such-call.wav"),
        good_row(external_id="X-3", recording_file="../sample_data/call-0005-cbr.mp3"),
    ])
    ledger = workdir / "ledger.sqlite"

    code = main(["run", str(manifest), "--ledger", str(ledger)])

    assert code == 1
    assert status_of(ledger) == {"ext:X-1": "succeeded", "ext:X-2": "invalid",
                                "ext:X-3": "succeeded"}
    opened = Ledger.open(ledger)
    [bad] = list(opened.rows([Status.INVALID]))
    opened.close()
    assert bad.row_number == 3
    assert bad.error is not None
    assert "row 3" in bad.error and "no-such-call.wav" in bad.error and "not found" in bad.error
    assert "row 3" in capsys.readouterr().err
    assert sandbox.store.count() == 2


def test_bad_cells_are_invalid_with_row_and_column(workdir: Path, sandbox: SandboxThread,
                                                   token_env: str) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(caller_id="call me", call_date="yesterday"),
        good_row(external_id="X-2", disposition="MAYBE",
                 recording_file="../sample_data/call-0005-cbr.mp3"),
    ])
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1

    opened = Ledger.open(ledger)
    errors = {r.row_number: r.error or "" for r in opened.rows([Status.INVALID])}
    opened.close()
    assert "caller_id" in errors[2] and "call_date" in errors[2] and "'yesterday'" in errors[2]
    assert "disposition" in errors[3] and "ANSWERED" in errors[3]
    assert sandbox.store.count() == 0


def test_a_fixed_row_is_sent_on_the_next_run(workdir: Path, sandbox: SandboxThread,
                                             token_env: str) -> None:
    path = workdir / "manifests" / "m.csv"
    ledger = workdir / "ledger.sqlite"
    write_manifest(path, [good_row(caller_id="n/a")])
    assert main(["run", str(path), "--ledger", str(ledger)]) == 1
    write_manifest(path, [good_row()])

    assert main(["run", str(path), "--ledger", str(ledger)]) == 0

    assert status_of(ledger) == {"ext:X-1": "succeeded"}
    assert sandbox.store.count() == 1


def test_duplicate_external_id_makes_the_later_row_invalid(workdir: Path, sandbox: SandboxThread,
                                                           token_env: str) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(), good_row(recording_file="../sample_data/call-0005-cbr.mp3")])
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1
    assert sandbox.store.count() == 1
    assert sandbox.store.calls()[0].file_name == "call-0001-pcm8k.wav"


def test_missing_required_column_exits_2(workdir: Path, token_env: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    manifest = workdir / "manifests" / "m.csv"
    manifest.write_text("recording_file,call_date\n../sample_data/a.wav,2025-01-01T00:00:00Z\n")

    assert main(["run", str(manifest), "--ledger", str(workdir / "l.sqlite")]) == 2
    err = capsys.readouterr().err
    assert "group_id" in err and "caller_id" in err and "Traceback" not in err


def test_unreadable_manifest_exits_2(tmp_path: Path, token_env: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "absent.csv")]) == 2
    assert "absent.csv" in capsys.readouterr().err
    (tmp_path / "m.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    assert main(["run", str(tmp_path / "m.xls")]) == 2
    assert "CSV" in capsys.readouterr().err


def test_token_never_leaks(workdir: Path, sandbox: SandboxThread, token_env: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(), good_row(external_id="X-2", recording_file="../sample_data/none.wav")])
    ledger = workdir / "ledger.sqlite"

    main(["run", str(manifest), "--ledger", str(ledger), "--verbose", "--log-format", "json"])
    for fmt in ("summary", "table", "csv", "json"):
        main(["report", str(ledger), "--format", fmt])
    captured = capsys.readouterr()

    assert TOKEN not in captured.out + captured.err
    for path in ledger.parent.glob("ledger.sqlite*"):
        assert TOKEN.encode() not in path.read_bytes()
    # The JSON log really is JSON lines.
    for line in captured.err.splitlines():
        if line.startswith("{"):
            json.loads(line)


@pytest.mark.parametrize("command", [["validate"], ["run", "--dry-run"]])
def test_validate_sends_nothing_and_writes_no_ledger(workdir: Path, sandbox: SandboxThread,
                                                     token_env: str, command: list[str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    manifest = workdir / "manifests" / "sample.csv"

    assert main([command[0], str(manifest), *command[1:]]) == 0

    assert sandbox.store.count() == 0
    assert not list(workdir.rglob("*.sqlite"))
    assert f"{len(sample_files())} valid" in capsys.readouterr().out
