"""The upload engine against a misbehaving sandbox: 5xx and dropped connections, 429s with
Retry-After, tokens that expire mid-run, budgets, Ctrl-C. Real HTTP, real files, real SQLite."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from importer.cli.commands import main
from importer.events import RunSummary
from importer.observe.progress import ProgressObserver

from .conftest import ROOT, TOKEN, SandboxThread
from .helpers import many_rows, received, status_counts, write_manifest


def test_every_row_arrives_once_through_5xx_and_dropped_connections(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    sandbox.set_faults(fail_rate=0.10, reset_rate=0.05, seed=11)
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 60))
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger), "--rate", "500",
                 "--backoff-base", "0.01", "--max-attempts", "8"]) == 0

    arrived = received(sandbox)
    assert len(arrived) == 60 and max(arrived.values()) == 1
    assert status_counts(ledger) == Counter({"succeeded": 60})
    with sqlite3.connect(ledger) as conn:
        failures = conn.execute("SELECT COUNT(*) FROM attempts WHERE outcome != 'succeeded'"
                                ).fetchone()[0]
    assert failures > 0  # the faults did happen, and were retried


def test_429s_are_honoured_by_every_worker(workdir: Path, sandbox: SandboxThread,
                                           token_env: str) -> None:
    sandbox.set_faults(rate_limit=10.0)
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 40))
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger), "--rate", "40",
                 "--concurrency", "6", "--max-attempts", "10"]) == 0

    assert sandbox.state.throttled > 0          # we did go too fast at first...
    assert sandbox.state.early == 0             # ...and nobody came back before Retry-After
    assert sum(received(sandbox).values()) == 40


def test_an_expiring_token_is_renewed_without_failures(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.set_config(token_ttl=1.0)
    sandbox.set_faults(latency=0.05)
    monkeypatch.delenv("CONVIRZA_TOKEN")
    monkeypatch.setenv("CONVIRZA_USERNAME", "demo@example.com")
    monkeypatch.setenv("CONVIRZA_PASSWORD", "demo-password")
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 40))
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger), "--rate", "25",
                 "--concurrency", "2"]) == 0

    assert status_counts(ledger) == Counter({"succeeded": 40})
    assert sandbox.state.logins >= 2            # the run outlived its first token
    assert sandbox.state.logins <= 10           # ...without a login storm


def test_an_api_outage_trips_the_circuit_breaker(workdir: Path, sandbox: SandboxThread,
                                                 token_env: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The API answers at first, then fails every upload: a few rows fail, then the run
    stops, instead of marking every row of the manifest failed."""
    sandbox.set_faults(fail_rate=1.0)
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 60))
    ledger = workdir / "ledger.sqlite"

    code = main(["run", str(manifest), "--ledger", str(ledger), "--max-attempts", "1",
                 "--concurrency", "2", "--max-consecutive-failures", "5", "--rate", "500"])

    assert code == 4
    counts = status_counts(ledger)
    assert 5 <= counts["failed"] <= 5 + 2 and counts["pending"] >= 50
    out = capsys.readouterr().out
    assert "--max-consecutive-failures 5 reached" in out and "Internal server error" in out


def test_error_budget_stops_the_run_with_exit_4(workdir: Path, sandbox: SandboxThread,
                                                token_env: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.set_faults(fail_rate=1.0)
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 50))
    ledger = workdir / "ledger.sqlite"

    code = main(["run", str(manifest), "--ledger", str(ledger), "--max-errors", "3",
                 "--max-attempts", "1", "--concurrency", "2", "--rate", "500"])

    assert code == 4
    counts = status_counts(ledger)
    assert 3 <= counts["failed"] <= 3 + 2      # at most the uploads in flight finish
    assert counts["pending"] >= 40             # the rest is untouched, for the next run
    assert "--max-errors 3 reached" in capsys.readouterr().out


def test_percent_error_budget(workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    sandbox.set_faults(fail_rate=0.5, seed=5)
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 80))
    code = main(["run", str(manifest), "--ledger", str(workdir / "l.sqlite"), "--max-errors",
                 "10%", "--max-attempts", "1", "--rate", "500", "--concurrency", "1"])
    assert code == 4
    assert 20 <= sum(status_counts(workdir / "l.sqlite").values()) - \
        status_counts(workdir / "l.sqlite")["pending"] < 80


def test_upload_budget_is_a_soft_daily_quota(workdir: Path, sandbox: SandboxThread,
                                             token_env: str) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 12))
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger), "--max-uploads", "5"]) == 4
    assert sandbox.store.count() == 5
    assert main(["run", str(manifest), "--ledger", str(ledger), "--max-uploads", "5"]) == 4
    assert main(["run", str(manifest), "--ledger", str(ledger), "--max-uploads", "5"]) == 0
    assert sum(received(sandbox).values()) == 12 and max(received(sandbox).values()) == 1


def test_max_uploads_one_at_concurrency_eight_starts_one_upload(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """The budget is reserved before a row is checked, not counted once it is sent: eight
    workers checking eight rows at once do not all start."""
    sandbox.set_faults(latency=0.2)
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 16))
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger), "--max-uploads", "1",
                 "-c", "8", "--rate", "500"]) == 4

    assert sandbox.store.count() == 1
    assert status_counts(ledger)["succeeded"] == 1
    assert status_counts(ledger)["uploading"] == 0


def test_duration_budget(workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    sandbox.set_faults(latency=0.2)
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 40))
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger), "--max-duration", "1s",
                 "--concurrency", "2", "--rate", "500",
                 "--find-existing", "never"]) == 4
    done = status_counts(ledger)["succeeded"]
    assert 0 < done < 40 and status_counts(ledger)["uploading"] == 0


def nobody_listens() -> str:
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize("login", [False, True])
def test_an_unreachable_api_stops_the_run_before_any_row(
        workdir: Path, token_env: str, monkeypatch: pytest.MonkeyPatch, login: bool,
        capsys: pytest.CaptureFixture[str]) -> None:
    """With a fixed token or a login, an API that refuses connections is found before the
    first row: one line naming the URL, exit 4, and no row failed for the API's absence."""
    url = nobody_listens()
    monkeypatch.setenv("CONVIRZA_API_URL", url)
    if login:
        monkeypatch.delenv("CONVIRZA_TOKEN")
        monkeypatch.setenv("CONVIRZA_USERNAME", "demo@example.com")
        monkeypatch.setenv("CONVIRZA_PASSWORD", "demo-password")
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 300))
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 4

    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"convirza-import: error: the API at {url} does not answer "
                              "(cannot connect to 127.0.0.1:")
    assert "3 tries): nothing was sent" in err[-1]
    with sqlite3.connect(ledger) as conn:
        assert conn.execute("SELECT COUNT(*) FROM recordings").fetchone() == (0,)
        assert conn.execute("SELECT exit_code FROM runs").fetchall() == [(4,)]
    conn.close()


def test_sigint_stops_cleanly_and_the_rerun_finishes(workdir: Path, sandbox: SandboxThread,
                                                     token_env: str) -> None:
    sandbox.set_faults(latency=0.1)
    rows = many_rows(workdir, 60)
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "ledger.sqlite"
    command = [sys.executable, "-m", "importer", "run", str(manifest), "--ledger",
               str(ledger), "--concurrency", "3", "--rate", "500"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 30
    while sandbox.store.count() < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err
    assert "Stopped early: interrupted" in out
    counts = status_counts(ledger)
    assert counts["uploading"] == 0            # in-flight uploads finished and were recorded
    assert 0 < counts["succeeded"] < 60 and counts["pending"] > 0
    assert counts["succeeded"] == sandbox.store.count()

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert received(sandbox) == Counter({r["external_id"]: 1 for r in rows})


def test_progress_line_for_logs() -> None:
    summary = RunSummary(manifest="m.csv", ledger=None, expected=200)
    summary.counts.update({"succeeded": 45, "failed": 3, "invalid": 2, "retries": 4})
    summary.bytes_sent = 9_000_000
    observer = ProgressObserver()
    observer.started(summary)
    line = observer.line(elapsed=10.0)
    assert line.startswith("50/200 rows (25%), ok 45, failed 3, invalid 2, retried 4")
    assert "4.5 files/s, 0.90 MB/s" in line and line.endswith("ETA 30s")


def test_token_is_not_in_the_process_list(workdir: Path, sandbox: SandboxThread) -> None:
    token_file = workdir / "token"
    token_file.write_text(TOKEN)
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 2))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVIRZA_")}
    env |= {"PYTHONPATH": str(ROOT), "CONVIRZA_API_URL": sandbox.url}
    proc = subprocess.Popen([sys.executable, "-m", "importer", "run", str(manifest),
                             "--token-file", str(token_file), "--ledger",
                             str(workdir / "l.sqlite")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert TOKEN.encode() not in cmdline and TOKEN not in out + err
