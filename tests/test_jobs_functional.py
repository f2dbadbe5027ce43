"""Job files on the command line: ``run --job`` over a glob of nightly exports through one
ledger, each manifest a run with its own summary, the worst exit code overall; a stop ends
the job; ``validate``, ``retry`` and ``verify`` take the same file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from importer.cli.commands import main
from importer.ledger.store import Ledger

from .conftest import SandboxThread, distinct_copy, sample_files

HEADER = "external_id,recording_file,call_date,group_id,caller_id"


def export(folder: Path, name: str, ids: range, *, bad: int | None = None) -> Path:
    """A nightly export of distinct recordings; row ``bad`` has a caller_id that is not one."""
    folder.mkdir(exist_ok=True)
    source = next(p for p in sample_files() if p.suffix == ".wav")
    rows = [HEADER]
    for n in ids:
        audio = distinct_copy(source, folder / f"{name}-{n}.wav", n)
        caller = "not a phone" if n == bad else "6175550142"
        rows.append(f"N-{n},{audio.name},2025-03-04T09:15:22-05:00,12,{caller}")
    path = folder / f"{name}.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def write_job(folder: Path, text: str) -> Path:
    job = folder / "nightly.toml"
    job.write_text('manifest = "exports/calls-*.csv"\nrate = 50\n' + text)
    return job


def test_a_glob_of_exports_runs_in_turn_through_one_ledger(
        tmp_path: Path, sandbox: SandboxThread, token_env: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    export(tmp_path / "exports", "calls-2025-03-02", range(0, 3))
    export(tmp_path / "exports", "calls-2025-03-01", range(3, 5), bad=4)
    job = write_job(tmp_path, 'summary_json = "summary.json"\n')
    elsewhere = tmp_path / "cron-home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # cron runs from $HOME: paths are the job file's

    code = main(["run", "--job", str(job)])

    assert code == 1  # the worst: one row of the first export is invalid
    out = capsys.readouterr().out
    first, second = out.index("2 rows"), out.index("3 rows in")
    assert first < second  # sorted: the 1 March export first
    assert "Job: 2 manifests run, exit 1" in out
    assert sandbox.store.count() == 4
    ledger = Ledger.open_readonly(tmp_path / "nightly.ledger.sqlite")
    try:
        runs = ledger.runs()
    finally:
        ledger.close()
    assert [Path(r.manifest or "").name for r in runs] == \
        ["calls-2025-03-01.csv", "calls-2025-03-02.csv"]
    assert [r.exit_code for r in runs] == [1, 0]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["exit_code"] == 1 and summary["counts"]["succeeded"] == 4
    assert [r["exit_code"] for r in summary["runs"]] == [1, 0]

    assert main(["verify", "--job", str(job)]) == 0
    assert "4 calls present once" in capsys.readouterr().out


def test_an_unreadable_export_is_reported_and_the_next_goes_on(
        tmp_path: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    export(tmp_path / "exports", "calls-2", range(0, 2))
    (tmp_path / "exports" / "calls-1.csv").write_text("nothing,here\n1,2\n")
    job = write_job(tmp_path, "")

    assert main(["run", "--job", str(job)]) == 2

    captured = capsys.readouterr()
    assert "calls-1.csv" in captured.err
    assert "Job: 2 manifests run, exit 2" in captured.out
    assert sandbox.store.count() == 2


def test_a_budget_stop_ends_the_job(tmp_path: Path, sandbox: SandboxThread, token_env: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    export(tmp_path / "exports", "calls-1", range(0, 3))
    export(tmp_path / "exports", "calls-2", range(3, 5))
    job = write_job(tmp_path, "max_uploads = 1\nconcurrency = 1\n")
    summary = tmp_path / "s.json"

    assert main(["run", "--job", str(job), "--summary-json", str(summary)]) == 4

    assert sandbox.store.count() == 1
    data = json.loads(summary.read_text())
    assert data["stop_reason"] == "budget"
    assert [Path(p).name for p in data["not_started"]] == ["calls-2.csv"]
    assert "Not started" in capsys.readouterr().out

    # The next night goes on where this one stopped (the quota counts over the job).
    assert main(["run", "--job", str(job), "--max-uploads", "10"]) == 0
    assert sandbox.store.count() == 5


def test_validate_and_retry_take_the_job_file(tmp_path: Path, sandbox: SandboxThread,
                                              token_env: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    export(tmp_path / "exports", "calls-1", range(0, 2), bad=1)
    job = write_job(tmp_path, "")
    errors = tmp_path / "errors.csv"

    assert main(["validate", "--job", str(job), "--errors-out", str(errors)]) == 1
    assert "1 invalid rows written" in capsys.readouterr().out
    assert not (tmp_path / "nightly.ledger.sqlite").exists()  # validate writes no ledger
    assert main(["run", "--job", str(job)]) == 1
    capsys.readouterr()
    assert main(["retry", "--job", str(job)]) == 1  # nothing to send; the invalid row waits
    assert "1 row is invalid: retry does not send it" in capsys.readouterr().out


def test_a_job_file_with_a_typo_is_refused_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "nightly.toml"
    job.write_text('manifest = "a.csv"\nmax_upload = 10\n')

    assert main(["run", "--job", str(job)]) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown key 'max_upload' (did you mean 'max_uploads'?)" in err


def test_the_job_file_is_an_input_no_output_overwrites(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export(tmp_path / "exports", "calls-1", range(0, 1))
    job = write_job(tmp_path, "")

    assert main(["validate", "--job", str(job), "--summary-json", str(job)]) == 2
    assert "that file is the job file" in capsys.readouterr().err
    assert os.path.getsize(job) > 0


def test_a_night_without_its_export_fails_run_but_not_retry(
        tmp_path: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    export(tmp_path / "exports", "calls-1", range(0, 1))
    job = write_job(tmp_path, "")
    assert main(["run", "--job", str(job)]) == 0
    (tmp_path / "exports" / "calls-1.csv").unlink()
    capsys.readouterr()

    assert main(["run", "--job", str(job)]) == 2
    assert "calls-*.csv matches no file" in capsys.readouterr().err
    assert main(["retry", "--job", str(job)]) == 0
    assert main(["config", "--job", str(job)]) == 0
    assert "(0 files)" in capsys.readouterr().out
