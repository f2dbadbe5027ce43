"""Stopping a run from outside, as schedulers do: ``timeout`` (the program, then its process
group: SIGTERM twice within milliseconds), systemd (every process of the unit at once),
Kubernetes (one SIGTERM). Signals that arrive together are one request to stop: the uploads in
flight finish, the summary is printed, exit 130. Only a signal well after the first (a
person's second Ctrl-C) aborts. Real processes, real signals, the sandbox over loopback, the
ledger read as the run writes it. When things happen is learned by polling, never assumed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from importer.cli.stopping import SIGNAL_WINDOW

from .conftest import ROOT, SandboxThread
from .helpers import many_rows, received, status_counts, write_manifest

#: Longest wait for something the run is sure to do; only a hung run takes this long.
PATIENCE = 60.0


def ledger_statuses(ledger: Path) -> Counter[str]:
    """The ledger's rows by status as the run has committed them so far (read-only, so that
    it neither creates the file nor gets in the writer's way); empty until it exists."""
    try:
        conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return Counter()
    try:
        return Counter(s for (s,) in conn.execute("SELECT status FROM recordings"))
    except sqlite3.Error:
        return Counter()
    finally:
        conn.close()


def wait_for(what: str, condition: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {PATIENCE:.0f}s"
        time.sleep(0.02)


class Run:
    """``python -m importer run`` in a subprocess, its stderr collected as it comes (so that
    the test can wait for a line, and a full pipe never blocks the run)."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.err_lines: list[str] = []
        self._stderr = threading.Thread(target=self._collect, daemon=True)
        self._stderr.start()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err_lines.append(line)

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.err_lines))

    def finish(self) -> tuple[int, str, str]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        code = self.proc.wait(timeout=PATIENCE)
        self._stderr.join(timeout=PATIENCE)
        return code, out, "".join(self.err_lines)


def run_command(workdir: Path, rows: int, *extra: str) -> tuple[list[str], Path, Path]:
    """The run's command. Its new ledger would ask Convirza about a sample of rows first,
    each answer as slow as the sandbox's latency makes it: these tests are about signals
    during uploads, so it asks nothing (``--find-existing never``)."""
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, rows))
    ledger = workdir / "ledger.sqlite"
    return ([sys.executable, "-m", "importer", "run", str(manifest), "--ledger", str(ledger),
             "--rate", "500", "--find-existing", "never", *extra], manifest, ledger)


def assert_stopped_gently(code: int, out: str, err: str, ledger: Path,
                          sandbox: SandboxThread, rows: int) -> None:
    assert code == 130, err
    assert "Stopped early: interrupted" in out, err   # the summary was printed
    assert "aborting" not in err
    counts = status_counts(ledger)
    assert counts["uploading"] == 0                   # every upload in flight was recorded
    assert counts["pending"] > 0 and sum(counts.values()) == rows
    assert counts["succeeded"] == sandbox.store.count()
    assert max(received(sandbox).values(), default=1) == 1


def test_timeout_stops_a_run_gently(workdir: Path, sandbox: SandboxThread,
                                    token_env: str) -> None:
    """The cron line of issue 11: ``timeout`` signals the run and then its process group.
    200 rows at 0.2 s each over 2 connections need 20 s; the run is stopped after 6."""
    sandbox.set_faults(latency=0.2)
    command, _, ledger = run_command(workdir, 200, "--concurrency", "2")

    proc = subprocess.run(["timeout", "-s", "TERM", "--preserve-status", "6", *command],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=120, check=False)

    assert_stopped_gently(proc.returncode, proc.stdout, proc.stderr, ledger, sandbox, 200)


def test_two_signals_together_are_one_request_to_stop(workdir: Path, sandbox: SandboxThread,
                                                      token_env: str) -> None:
    sandbox.set_faults(latency=0.3)
    command, _, ledger = run_command(workdir, 100, "--concurrency", "3", "--verbose")
    run = Run(command)
    wait_for("upload in flight", lambda: ledger_statuses(ledger)["uploading"] > 0, run.proc)

    os.kill(run.proc.pid, signal.SIGTERM)
    time.sleep(0.001)
    os.kill(run.proc.pid, signal.SIGTERM)

    code, out, err = run.finish()
    assert_stopped_gently(code, out, err, ledger, sandbox, 100)
    assert "a second Ctrl-C or SIGTERM" in err   # said once how to abort
    assert err.count("a second Ctrl-C") == 1


def test_ctrl_c_with_a_sigterm_is_one_request_to_stop(workdir: Path, sandbox: SandboxThread,
                                                      token_env: str) -> None:
    """Two different signals are never merged by the kernel, so the second surely reaches
    the program: it is seen, and ignored."""
    sandbox.set_faults(latency=0.3)
    command, _, ledger = run_command(workdir, 100, "--concurrency", "3", "--verbose")
    run = Run(command)
    wait_for("upload in flight", lambda: ledger_statuses(ledger)["uploading"] > 0, run.proc)

    os.kill(run.proc.pid, signal.SIGINT)
    time.sleep(0.001)
    os.kill(run.proc.pid, signal.SIGTERM)

    code, out, err = run.finish()
    assert_stopped_gently(code, out, err, ledger, sandbox, 100)
    assert "SIGTERM" in err and "the same request to stop" in err


def test_a_second_signal_after_a_moment_aborts(workdir: Path, sandbox: SandboxThread,
                                               token_env: str) -> None:
    """A person's second Ctrl-C: uploads in flight are abandoned, their rows stay
    'uploading' (for the next run to reconcile), and there is no summary."""
    sandbox.set_faults(latency=8.0)   # uploads stay in flight through both signals
    command, _, ledger = run_command(workdir, 20, "--concurrency", "2")
    run = Run(command)
    wait_for("upload in flight", lambda: ledger_statuses(ledger)["uploading"] > 0, run.proc)

    os.kill(run.proc.pid, signal.SIGTERM)
    wait_for("word of the first signal", lambda: run.said("a second Ctrl-C"), run.proc)
    time.sleep(SIGNAL_WINDOW * 1.5)   # the window runs from when the first was handled
    os.kill(run.proc.pid, signal.SIGTERM)

    code, out, err = run.finish()
    assert code == 130, err
    assert "aborting" in err and "interrupted" in err
    assert "Stopped early" not in out
    counts = status_counts(ledger)
    assert counts["uploading"] > 0 and counts["succeeded"] == 0


def test_the_first_signal_ends_the_wait_for_the_rate_limiter(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """Three rows at one request every 20 s (two back to back: the check before the first
    row, and the first row): the others wait for the limiter. A SIGTERM ends their wait:
    they stay pending, never sent after the stop."""
    command, _, ledger = run_command(workdir, 3, "--rate", "0.05", "--burst", "2",
                                     "--concurrency", "3")
    run = Run(command)
    wait_for("the first upload", lambda: ledger_statuses(ledger)["succeeded"] == 1, run.proc)

    os.kill(run.proc.pid, signal.SIGTERM)

    code, out, err = run.finish()
    assert code == 130, err
    assert sandbox.store.count() == 1
    assert status_counts(ledger) == {"succeeded": 1, "pending": 2}
    assert "Stopped early: interrupted" in out


def test_the_first_signal_ends_a_retry_after_pause(workdir: Path, sandbox: SandboxThread,
                                                   token_env: str) -> None:
    """The API throttles with Retry-After 20 s; a SIGTERM during that pause ends it: the
    rows it held stay pending."""
    sandbox.set_faults(rate_limit=0.05, rate_burst=2)
    command, _, ledger = run_command(workdir, 3, "--concurrency", "1")
    run = Run(command)
    wait_for("a 429", lambda: sandbox.state.throttled > 0, run.proc)

    os.kill(run.proc.pid, signal.SIGTERM)

    code, _, err = run.finish()
    assert code == 130, err
    counts = status_counts(ledger)
    assert counts["uploading"] == 0 and counts["pending"] == 3 - sandbox.store.count()


def test_uploads_in_flight_are_awaited_only_for_the_stop_grace(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """An upload that does not end within --stop-grace of the first signal is abandoned, as
    a second signal would: its row stays 'uploading', reconciled by the next run."""
    sandbox.set_faults(latency=3.0)
    command, _, ledger = run_command(workdir, 4, "--concurrency", "2", "--stop-grace", "1s")
    run = Run(command)
    wait_for("upload in flight", lambda: ledger_statuses(ledger)["uploading"] > 0, run.proc)

    os.kill(run.proc.pid, signal.SIGTERM)

    code, _, err = run.finish()
    assert code == 130, err
    assert "did not end within --stop-grace 1s" in err
    assert status_counts(ledger)["uploading"] > 0


@pytest.mark.parametrize("phase", ["asking Convirza first", "listing the names"])
def test_a_stop_before_the_first_row_is_a_gentle_stop_not_an_error(
        workdir: Path, sandbox: SandboxThread, token_env: str, phase: str) -> None:
    """A stop while the run looks things up before its first row (a new ledger's sample, a
    manifest's names) ends those waits like any other: exit 130, the summary, no error."""
    burst = "1" if phase == "listing the names" else "2"  # the check, and one lookup
    command, _, _ = run_command(workdir, 3, "--rate", "0.05", "--burst", burst)
    command.remove("never")
    command[command.index("--find-existing") + 1:command.index("--find-existing") + 1] = \
        ["never" if phase == "listing the names" else "auto"]
    if phase == "listing the names":  # its group_id column read as names, listed first
        command += ["--map", "group_id=group_name"]
    seen = len(sandbox.state.received_log)
    run = Run(command)
    wait_for("the check", lambda: len(sandbox.state.received_log) >= seen + int(burst), run.proc)
    os.kill(run.proc.pid, signal.SIGTERM)

    code, out, err = run.finish()
    assert code == 130, err
    assert "Stopped early: interrupted" in out, err
    assert "error:" not in err, err
    assert sandbox.store.count() == 0
