"""No output ever overwrites an input, and none is ever left half-written: the command line
refuses an output that is one of its inputs (under any spelling: relative, ``..``, a symlink, a
hard link) before it reads or writes anything, and writes every output through a temporary file
that replaces the old one only when complete. Real files, real SQLite, a real full disk (a
subprocess whose file size limit is small)."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from importer.cli.commands import main
from importer.ledger.store import Ledger

from .conftest import ROOT, TOKEN, SandboxThread
from .helpers import good_row, write_manifest


def one_error_line(err: str) -> str:
    """The one line the command printed, checked to be the only one."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.fixture
def manifest(workdir: Path) -> Path:
    return write_manifest(workdir / "manifests" / "m.csv", [
        good_row(), good_row(external_id="X-2", caller_id="call me")])


@pytest.fixture
def ledger(workdir: Path, manifest: Path, sandbox: SandboxThread, token_env: str) -> Path:
    """A ledger written by a real run: one row succeeded, one invalid."""
    path = workdir / "ledger.sqlite"
    assert main(["run", str(manifest), "--ledger", str(path), "--quiet"]) == 1
    return path


def test_errors_out_over_the_manifest_is_refused(manifest: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    before = manifest.read_bytes()

    assert main(["validate", str(manifest), "--errors-out", str(manifest)]) == 2

    line = one_error_line(capsys.readouterr().err)
    assert "--errors-out" in line and str(manifest) in line and "the manifest" in line
    assert manifest.read_bytes() == before


@pytest.mark.parametrize("option", ["--errors-out", "--summary-json", "--metrics-textfile"])
def test_an_output_over_another_runs_ledger_is_refused(
        option: str, workdir: Path, manifest: Path, ledger: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Not this command's input, but a database all the same: someone's ledger."""
    other = workdir / "other.ledger.sqlite"
    other.write_bytes(ledger.read_bytes())
    before = other.read_bytes()
    capsys.readouterr()

    command = ["validate"] if option == "--errors-out" else \
        ["run", "--ledger", str(workdir / "l2.sqlite")]
    assert main([*command, str(manifest), option, str(other)]) == 2

    line = one_error_line(capsys.readouterr().err)
    assert f"{option} {other}: that file is an SQLite database" in line
    assert other.read_bytes() == before


def test_report_output_over_a_workbook_is_refused(workdir: Path, ledger: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from openpyxl import Workbook

    book = workdir / "calls.xlsx"
    Workbook().save(book)
    legacy = workdir / "old.xls"  # the older binary format: an OLE2 compound file
    legacy.write_bytes(bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504))
    capsys.readouterr()

    for target in (book, legacy):
        before = target.read_bytes()
        assert main(["report", str(ledger), "--format", "csv", "--output", str(target)]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"--output {target}: that file is an Excel workbook" in line
        assert target.read_bytes() == before
    # A CSV or an earlier report may be replaced, as before.
    old = workdir / "old.csv"
    old.write_text("old\n")
    assert main(["report", str(ledger), "--format", "csv", "--output", str(old)]) == 0
    assert old.read_text() != "old\n"


@pytest.mark.parametrize("spelling", ["relative", "dotdot", "symlink", "hardlink"])
def test_the_manifest_under_another_name_is_refused(
        manifest: Path, spelling: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    before = manifest.read_bytes()
    folder = manifest.parent
    if spelling == "relative":
        monkeypatch.chdir(folder)
        other = Path("m.csv")
    elif spelling == "dotdot":
        other = folder / ".." / folder.name / "m.csv"
    elif spelling == "symlink":
        other = folder.parent / "link.csv"
        other.symlink_to(manifest)
    else:
        other = folder.parent / "hard.csv"
        os.link(manifest, other)

    assert main(["validate", str(manifest), "--errors-out", str(other)]) == 2

    line = one_error_line(capsys.readouterr().err)
    assert "--errors-out" in line and str(other) in line and "the manifest" in line
    assert manifest.read_bytes() == before
    assert other.is_symlink() == (spelling == "symlink")  # not replaced by a regular file


def test_every_input_of_validate_is_protected(workdir: Path, manifest: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    mapping = workdir / "mapping.toml"
    mapping.write_text('[defaults]\ngroup_id = 12\n')
    token = workdir / "token"
    token.write_text(TOKEN + "\n")
    beside = manifest.with_name("m.csv.ledger.sqlite")   # the ledger a run would keep
    Ledger.open(beside).close()
    common = ["validate", str(manifest), "--columns", str(mapping), "--token-file", str(token)]
    for path, what in [(mapping, "the columns file"), (token, "the token file"),
                       (beside, "the ledger")]:
        before = path.read_bytes()
        assert main([*common, "--errors-out", str(path)]) == 2
        assert what in one_error_line(capsys.readouterr().err)
        assert path.read_bytes() == before


def test_summary_json_over_the_ledger_is_refused(workdir: Path, manifest: Path, ledger: Path,
                                                 sandbox: SandboxThread,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    before = ledger.read_bytes()
    uploads = sandbox.store.count()

    assert main(["run", str(manifest), "--ledger", str(ledger),
                 "--summary-json", str(ledger)]) == 2

    line = one_error_line(capsys.readouterr().err)
    assert "--summary-json" in line and str(ledger) in line and "the ledger" in line
    assert ledger.read_bytes() == before
    assert sandbox.store.count() == uploads  # refused before anything was started
    with sqlite3.connect(ledger) as conn:
        assert conn.execute("SELECT COUNT(*) FROM recordings").fetchone()[0] == 2


def test_the_default_ledger_is_an_input_of_run(workdir: Path, manifest: Path,
                                               sandbox: SandboxThread, token_env: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(manifest), "--quiet"]) == 1
    beside = manifest.with_name("m.csv.ledger.sqlite")
    before = beside.read_bytes()
    capsys.readouterr()  # the quiet run's one line: a row is invalid

    assert main(["run", str(manifest), "--summary-json", str(beside)]) == 2

    assert "the ledger" in one_error_line(capsys.readouterr().err)
    assert beside.read_bytes() == before


#: Another process (a run going on) holding the ledger open, with a committed transaction
#: still in the write-ahead log only: truncating the -wal would lose it, and truncating the
#: -shm, which that process maps into memory, would crash it (SIGBUS).
HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint=0")
conn.execute("UPDATE recordings SET attempts = attempts + 1")
print("ready", flush=True)
sys.stdin.read()
conn.close()
"""


@contextlib.contextmanager
def held_open(ledger: Path) -> Iterator[subprocess.Popen[str]]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ledger)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        yield holder
    finally:
        holder.communicate(timeout=30)


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", ".lock"])
def test_report_output_over_the_ledger_or_its_companions_is_refused(
        ledger: Path, suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    target = ledger.with_name(ledger.name + suffix)
    if suffix == ".lock":
        target.write_text(f"pid {os.getpid()}\n")
    with held_open(ledger) as holder:
        before = target.read_bytes()
        assert before  # the file being protected holds something

        # In a process of its own: over the -shm it maps, a report would crash itself.
        report = subprocess.run([sys.executable, "-m", "importer", "report", str(ledger),
                                 "--format", "csv", "--output", str(target)],
                                env={**os.environ, "PYTHONPATH": str(ROOT)},
                                capture_output=True, text=True, timeout=60, check=False)

        assert report.returncode == 2, report.stderr
        line = one_error_line(report.stderr)
        assert "--output" in line and str(target) in line and "ledger" in line
        assert target.read_bytes() == before
    assert holder.returncode == 0
    assert main(["report", str(ledger), "--format", "csv"]) == 0  # still a good ledger
    out = capsys.readouterr().out
    assert "X-2" in out and ",2," in out  # the holder's transaction is there: attempts 1 -> 2


def test_report_of_several_ledgers_protects_each(workdir: Path, ledger: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    other = workdir / "other.sqlite"
    Ledger.open(other).close()
    before = other.read_bytes()
    assert main(["report", str(ledger), str(other), "--output", str(other)]) == 2
    assert str(other) in one_error_line(capsys.readouterr().err)
    assert other.read_bytes() == before


def test_two_outputs_in_one_file_are_refused(workdir: Path, manifest: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = workdir / "out.txt"
    out.write_text("yesterday's\n")

    assert main(["validate", str(manifest), "--errors-out", str(out),
                 "--summary-json", str(workdir / ".." / workdir.name / "out.txt")]) == 2

    line = one_error_line(capsys.readouterr().err)
    assert "--summary-json" in line and "--errors-out" in line
    assert out.read_text() == "yesterday's\n"


def test_an_output_name_too_long_for_the_file_system_is_one_line(
        workdir: Path, manifest: Path, capsys: pytest.CaptureFixture[str]) -> None:
    too_long = workdir / ("s" * 300 + ".json")

    assert main(["validate", str(manifest), "--summary-json", str(too_long)]) == 2

    line = one_error_line(capsys.readouterr().err)
    assert "--summary-json" in line and "name too long" in line.lower()


def test_lookup_output_over_the_token_file_is_refused(workdir: Path, sandbox: SandboxThread,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CONVIRZA_TOKEN", raising=False)
    token = workdir / "token"
    token.write_text(TOKEN + "\n")

    assert main(["lookup", "groups", "--api-url", sandbox.url, "--token-file", str(token),
                 "--output", str(token)]) == 2

    assert "the token file" in one_error_line(capsys.readouterr().err)
    assert token.read_text() == TOKEN + "\n"


def test_a_lookup_that_fails_leaves_the_previous_output(workdir: Path, sandbox: SandboxThread,
                                                       token_env: str,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    out = workdir / "calls.csv"
    out.write_text("last week's calls\n")
    before = listing(workdir)

    # The API refuses the filter (an unknown column): the lookup fails part-way.
    assert main(["lookup", "groups", "--filter", "colour=red", "--format", "csv",
                 "--output", str(out)]) == 2

    one_error_line(capsys.readouterr().err)
    assert out.read_text() == "last week's calls\n"
    assert listing(workdir) == before  # no temporary file left behind


def test_outputs_replace_old_files_whole_and_write_through_symlinks(
        workdir: Path, ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = workdir / "reports"
    reports.mkdir()
    real = reports / "today.csv"
    real.write_text("old\n" * 10_000)
    real.chmod(0o640)
    latest = workdir / "latest.csv"
    latest.symlink_to(real)

    assert main(["report", str(ledger), "--format", "csv", "--output", str(latest)]) == 0

    assert latest.is_symlink() and latest.resolve() == real
    text = real.read_text()
    assert text.startswith("key,external_id,") and "old\nold\n" not in text
    assert real.stat().st_mode & 0o777 == 0o640
    assert listing(reports) == {"today.csv"}


def test_errors_out_is_complete_when_it_appears(workdir: Path, manifest: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = workdir / "errors.csv"
    out.write_text("the previous errors\n")

    assert main(["validate", str(manifest), "--errors-out", str(out)]) == 1

    text = out.read_text(encoding="utf-8-sig")
    assert text.startswith("row,errors,") and "call me" in text
    assert listing(workdir) >= {"errors.csv"}
    assert not [p for p in workdir.iterdir() if p.name.endswith(".tmp")]


def small_files(limit: int) -> Callable[[], None]:
    """For ``preexec_fn``: in the child, before exec, writes past ``limit`` bytes of a file
    fail with EFBIG (SIGXFSZ, which would kill the process, ignored), as writes on a full disk
    fail with ENOSPC. The limit leaves room for the ledger the command opens (SQLite's 32 KiB
    shared-memory index; a validate's scratch ledger writes its schema to a write-ahead log)
    and is less than the output the command is asked to write."""
    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_file_size


def spreadsheet_with_long_bad_rows(workdir: Path, rows: int) -> Path:
    """Rows whose recording is missing (invalid, never sent), each some 4.5 KB long."""
    return write_manifest(workdir / "manifests" / "big.csv", [
        good_row(external_id=f"MISSING-{i:04d}", address="1 Long Street, " * 300,
                 recording_file=f"../sample_data/missing/recording-{i:04d}.wav")
        for i in range(rows)])


def test_a_full_disk_leaves_the_old_report_whole(workdir: Path, sandbox: SandboxThread,
                                                 token_env: str) -> None:
    manifest = spreadsheet_with_long_bad_rows(workdir, 600)
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger), "--quiet"]) == 1
    out = workdir / "existing.csv"
    out.write_text("yesterday's report, which must survive\n")
    before = listing(workdir)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}

    proc = subprocess.run([sys.executable, "-m", "importer", "report", str(ledger),
                           "--format", "json", "--output", str(out)],
                          env=env, capture_output=True, text=True, timeout=120, check=False,
                          preexec_fn=small_files(64 * 1024))

    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc.stderr)
    assert str(out) in line and "File too large" in line
    assert out.read_text() == "yesterday's report, which must survive\n"
    assert listing(workdir) == before  # no temporary file left behind
    # The same report fits without the limit: the limit, not the report, made it fail.
    assert main(["report", str(ledger), "--format", "json", "--output", str(out)]) == 0
    assert out.stat().st_size > 64 * 1024


def test_a_full_disk_during_validate_leaves_the_old_errors_file(workdir: Path) -> None:
    """The invalid rows stream into the temporary file as validate finds them; when the disk
    fills half-way, validate stops with one line and the previous errors file stays."""
    manifest = spreadsheet_with_long_bad_rows(workdir, 200)
    out = workdir / "errors.csv"
    out.write_text("the errors of last week's sheet\n")
    before = listing(workdir)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1",
           "CONVIRZA_TIMEZONE": "UTC"}

    proc = subprocess.run([sys.executable, "-m", "importer", "validate", str(manifest),
                           "--errors-out", str(out), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=120, check=False,
                          preexec_fn=small_files(512 * 1024))

    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc.stderr)
    assert str(out) in line and "File too large" in line
    assert out.read_text() == "the errors of last week's sheet\n"
    assert listing(workdir) == before
