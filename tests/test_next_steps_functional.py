"""What a command leaves undone is said, with the command that does it (issue 17, items 3-5):
``verify`` finds calls missing and can put their rows back for ``retry``; ``retry`` exits 0
only when nothing is left; ``--quiet`` prints nothing when all is well and one line when not,
which is what cron mails. Real HTTP to the sandbox, real SQLite, real audio."""

from __future__ import annotations

from pathlib import Path

import pytest

from importer.cli.commands import main

from .conftest import SandboxThread
from .helpers import good_row, many_rows, received, status_counts, write_manifest


def run(manifest: Path, ledger: Path, *flags: str) -> int:
    return main(["run", str(manifest), "--ledger", str(ledger), "--rate", "1000", *flags])


def test_calls_lost_in_convirza_are_requeued_by_verify_and_sent_by_retry(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 20))
    ledger = workdir / "l.sqlite"
    assert run(manifest, ledger) == 0
    lost = sorted(c.call_id for c in sandbox.store.calls())[3:8]
    for call_id in lost:
        sandbox.store.delete(call_id)
    capsys.readouterr()

    assert main(["verify", str(ledger)]) == 1
    out = capsys.readouterr().out
    assert "0 present more than once" in out and "5 missing" in out
    assert f"`convirza-import verify {ledger} --requeue-missing` puts their 5 rows back to " \
           f"pending; then `convirza-import retry {ledger}` sends them" in out

    assert main(["verify", str(ledger), "--requeue-missing"]) == 1
    out = capsys.readouterr().out
    assert f"5 rows put back to pending: `convirza-import retry {ledger}` sends them" in out
    assert status_counts(ledger) == {"succeeded": 15, "pending": 5}

    assert main(["retry", str(ledger), "--rate", "1000"]) == 0
    assert main(["verify", str(ledger)]) == 0
    assert sandbox.store.count() == 20
    assert set(received(sandbox).values()) == {1}


def test_verify_names_the_calls_to_remove_for_a_duplicate(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 3))
    ledger = workdir / "l.sqlite"
    assert run(manifest, ledger) == 0
    # The same call arrived twice (another tool, a by-hand upload).
    assert run(manifest, workdir / "elsewhere.sqlite", "--find-existing", "never") == 0
    twice = sorted(c.call_id for c in sandbox.store.calls() if c.external_id == "E-0001")
    capsys.readouterr()

    assert main(["verify", str(ledger)]) == 1

    out = capsys.readouterr().out
    assert f"remove call {twice[1]} (external_id E-0001; keep {twice[0]})" in out


def test_retry_says_what_a_stopped_run_left_and_exits_1(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget stopped the run: rows it queued are pending (retry sends them), rows it never
    read are not in the ledger (only run can send them)."""
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 12))
    ledger = workdir / "l.sqlite"
    monkeypatch.setenv("CONVIRZA_CHUNK_ROWS", "5")
    assert run(manifest, ledger, "--max-uploads", "3", "--concurrency", "1") == 4
    counts = status_counts(ledger)
    assert counts["succeeded"] == 3 and counts["pending"] >= 1
    unread = 12 - sum(counts.values())
    assert unread > 0
    capsys.readouterr()

    assert main(["retry", str(ledger), "--rate", "1000"]) == 1

    captured = capsys.readouterr()
    assert sandbox.store.count() == 12 - unread
    assert f"about {unread} rows of {manifest.resolve()} were never read (its last run " \
           "stopped early: budget: --max-uploads 3 reached): " \
           f"`convirza-import run {manifest.resolve()} --ledger {ledger}` sends them" \
           in captured.out

    assert run(manifest, ledger) == 0
    assert main(["retry", str(ledger), "--rate", "1000"]) == 0
    assert sandbox.store.count() == 12
    assert "Nothing to retry" in capsys.readouterr().out


def test_retry_of_failed_rows_only_says_pending_rows_are_left(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 6))
    ledger = workdir / "l.sqlite"
    assert run(manifest, ledger, "--max-uploads", "2", "--concurrency", "1") == 4
    pending = status_counts(ledger)["pending"]
    assert pending >= 1
    capsys.readouterr()

    assert main(["retry", str(ledger), "--status", "failed"]) == 1

    assert f"{pending} rows are still pending" in capsys.readouterr().out


def test_quiet_prints_nothing_when_every_row_is_done(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capfd: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 3))

    assert run(manifest, workdir / "l.sqlite", "--quiet") == 0

    assert capfd.readouterr() == ("", "")


def test_quiet_says_one_line_on_stderr_when_a_row_is_left(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capfd: pytest.CaptureFixture[str]) -> None:
    """A nightly job under cron: a missing recording must reach the mail."""
    rows = [*many_rows(workdir, 3),
            good_row(external_id="GONE", recording_file="../sample_data/gone.wav")]
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "l.sqlite"

    assert run(manifest, ledger, "--quiet") == 1

    out, err = capfd.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("convirza-import: m.csv: 1 invalid, 0 failed, 0 unresolved, 0 left")
    assert f"`convirza-import report {ledger} --status invalid --status failed`" in err


def test_a_quiet_job_file_says_one_line_too(workdir: Path, sandbox: SandboxThread,
                                            token_env: str,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    rows = [*many_rows(workdir, 2),
            good_row(external_id="GONE", recording_file="../sample_data/gone.wav")]
    write_manifest(workdir / "manifests" / "m.csv", rows)
    job = workdir / "nightly.toml"
    job.write_text(f'manifest = "{workdir / "manifests" / "m.csv"}"\n'
                   f'ledger = "{workdir / "l.sqlite"}"\nquiet = true\nrate = 1000\n')
    assert main(["run", "--job", str(job)]) == 1

    out, err = capfd.readouterr()
    assert out == "" and err.count("\n") == 1 and "1 invalid" in err
