"""One run per ledger (issue 11, item 2): a second run, or a retry, on a ledger that a live run
writes stops at once naming the holder, or waits with --wait-for-ledger; a holder that died does
not lock it; report reads a ledger in use, and one on read-only media. Real processes, real
SQLite files, real HTTP to the sandbox."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from importer.cli.commands import main
from importer.ledger.lock import LedgerLock

from .conftest import ROOT, SandboxThread
from .helpers import many_rows, received, write_manifest


def env() -> dict[str, str]:
    """The environment for a child: the test's (the sandbox's URL and token) and our code."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run_command(manifest: Path, ledger: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "importer", "run", str(manifest), "--ledger", str(ledger),
            "--rate", "1000", "--quiet", *flags]


def test_two_runs_started_at_once_store_every_recording_once(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    sandbox.set_faults(latency=0.1)
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 12))
    ledger = workdir / "ledger.sqlite"

    both = [subprocess.Popen(run_command(manifest, ledger, "--concurrency", "2"), env=env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in both]

    assert received(sandbox) == Counter({f"E-{i:04d}": 1 for i in range(12)})
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    holder = next(p.pid for p, (code, _) in zip(both, results, strict=True) if code == 0)
    assert f"the ledger {ledger} is in use by pid {holder} on host {socket.gethostname()}" \
        in refused
    assert "--wait-for-ledger" in refused
    assert len(refused.strip().splitlines()) == 1  # one line, no traceback


@pytest.fixture
def held(workdir: Path) -> Iterator[LedgerLock]:
    """The ledger's lock, held by this test as another run would hold it."""
    lock = LedgerLock(workdir / "ledger.sqlite")
    assert lock.try_acquire("run elsewhere.csv") is None
    yield lock
    lock.release()


def test_a_run_and_a_retry_on_a_held_ledger_stop_at_once_naming_the_holder(
        workdir: Path, sandbox: SandboxThread, token_env: str, held: LedgerLock,
        capsys: pytest.CaptureFixture[str]) -> None:
    ledger = workdir / "ledger.sqlite"
    manifest = workdir / "manifests" / "sample.csv"

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 2
    err = capsys.readouterr().err
    assert f"in use by pid {os.getpid()} on host {socket.gethostname()} since " in err
    assert "(run elsewhere.csv)" in err
    assert sandbox.store.count() == 0

    ledger.touch()  # as if the holder had begun to write it
    assert main(["retry", str(ledger)]) == 2
    assert main(["retry", str(ledger), "--wait-for-ledger", "0.2"]) == 2
    assert "still held when --wait-for-ledger ran out" in capsys.readouterr().err


def test_wait_for_ledger_waits_for_the_holder_to_finish(
        workdir: Path, sandbox: SandboxThread, token_env: str, held: LedgerLock,
        capsys: pytest.CaptureFixture[str]) -> None:
    timer = threading.Timer(1.0, held.release)
    timer.start()
    try:
        code = main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger",
                     str(workdir / "ledger.sqlite"), "--wait-for-ledger"])
    finally:
        timer.cancel()

    assert code == 0
    assert sandbox.store.count() == 8
    assert "waiting for the ledger" in capsys.readouterr().err


def test_a_holder_that_died_does_not_lock_the_ledger(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    ledger = workdir / "ledger.sqlite"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from importer.ledger.lock import LedgerLock; "
         "assert LedgerLock(Path(sys.argv[1])).try_acquire('run x') is None; "
         "print('held', flush=True); time.sleep(60)", str(ledger)],
        env=env(), stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    assert main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger",
                 str(ledger)]) == 2

    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)

    assert main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger",
                 str(ledger)]) == 0
    assert sandbox.store.count() == 8


def test_the_same_ledger_through_a_symlink_is_the_same_lock(
        workdir: Path, sandbox: SandboxThread, token_env: str, held: LedgerLock) -> None:
    ledger = workdir / "ledger.sqlite"
    ledger.touch()
    (workdir / "alias.sqlite").symlink_to(ledger)

    assert main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger",
                 str(workdir / "alias.sqlite")]) == 2


def test_report_reads_a_ledger_while_a_run_writes_it(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.set_faults(latency=0.2)
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 20))
    ledger = workdir / "ledger.sqlite"
    writer = subprocess.Popen(run_command(manifest, ledger, "--concurrency", "1"), env=env())
    try:
        deadline = time.monotonic() + 60
        while sandbox.store.count() < 2:  # the run is under way, its lock and ledger open
            assert time.monotonic() < deadline and writer.poll() is None
            time.sleep(0.05)
        capsys.readouterr()
        assert main(["report", str(ledger), "--summary"]) == 0
        out = capsys.readouterr().out
        assert "succeeded" in out
        assert writer.poll() is None  # and the run went on
    finally:
        assert writer.wait(timeout=120) == 0
    assert sandbox.store.count() == 20


# The child imports everything as root (the interpreter's own files may be private to root),
# then becomes the unprivileged user nobody.
NOBODY_REPORT = """
import os, sys
from importer.cli.commands import main
os.setgroups([]); os.setgid(65534); os.setuid(65534)
sys.exit(main(["report", sys.argv[1], "--summary"]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_report_reads_a_ledger_on_read_only_media(workdir: Path, sandbox: SandboxThread,
                                                  token_env: str) -> None:
    """A folder its reader cannot write stands in for read-only media: SQLite cannot create
    the WAL's shared-memory file there."""
    assert main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger",
                 str(workdir / "ledger.sqlite")]) == 0
    folder = Path(tempfile.mkdtemp(prefix="convirza-ro-"))
    try:
        shutil.copy(workdir / "ledger.sqlite", folder / "ledger.sqlite")
        folder.chmod(0o755)
        (folder / "ledger.sqlite").chmod(0o644)
        done = subprocess.run([sys.executable, "-c", NOBODY_REPORT, str(folder / "ledger.sqlite")],
                              env={**env(), "HOME": "/"}, capture_output=True, text=True,
                              timeout=60, cwd="/")
        assert done.returncode == 0, done.stderr
        assert re.search(r"succeeded\s+8\n", done.stdout), done.stdout
        assert sorted(p.name for p in folder.iterdir()) == ["ledger.sqlite"]
    finally:
        shutil.rmtree(folder)


NOBODY_RUN = """
import os, sys
from importer.cli.commands import main
os.setgroups([]); os.setgid(65534); os.setuid(65534)
sys.exit(main(["run", sys.argv[1], "--ledger", sys.argv[2]]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_a_run_on_a_read_only_ledger_is_one_line_and_exit_2(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="convirza-ro-"))
    try:
        shutil.copytree(workdir / "sample_data", folder / "sample_data")
        shutil.copytree(workdir / "manifests", folder / "manifests")
        with sqlite3.connect(folder / "ledger.sqlite") as conn:
            conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        conn.close()
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        done = subprocess.run(
            [sys.executable, "-c", NOBODY_RUN, str(folder / "manifests" / "sample.csv"),
             str(folder / "ledger.sqlite")], env={**env(), "HOME": "/"}, capture_output=True,
            text=True, timeout=60, cwd="/")
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert str(folder / "ledger.sqlite") in done.stderr
        assert sandbox.store.count() == 0
    finally:
        shutil.rmtree(folder)
