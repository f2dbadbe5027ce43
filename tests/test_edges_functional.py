"""What an operator's machine does to a run, and what a run must then still do (issue 18):
a ledger of a newer version refused untouched, output that fails (a reader that exits, a full
disk, a closed stderr, a terminal that cannot show a name) never ending the work, every
setting's domain checked where it is declared, an observer that fails detached, controls
escaped in every report format, and the smaller items. Real commands (in-process, or in a
subprocess where the streams or signals are the point), the sandbox over loopback, real
ledgers and recordings."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar, cast

import pytest

from importer import retry_ledger, run_import
from importer.cli.commands import main
from importer.errors import LedgerError, UsageError, plain_errors
from importer.events import Outcome, RequestEvent, RowEvent, RunSummary
from importer.ledger.schema import MIGRATIONS
from importer.observers import NullObserver, Observer
from importer.settings.resolve import resolve

from .conftest import ROOT, SandboxThread
from .helpers import good_row, many_rows, received, status_counts, write_manifest

T = TypeVar("T")

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


@pytest.mark.parametrize("command", ["run", "retry"])
def test_a_newer_ledger_refused_by_a_writer_gets_no_lock_file_beside_it(
        workdir: Path, sandbox: SandboxThread, token_env: str, command: str) -> None:
    manifest, ledger = imported_ledger(workdir)
    from_the_future(ledger, "migration")
    lock = ledger.with_name(ledger.name + ".lock")
    lock.unlink(missing_ok=True)
    argv = ["run", str(manifest), "--ledger", str(ledger)] if command == "run" else \
        ["retry", str(ledger)]
    assert main(argv) == 2
    assert not lock.exists()


def test_a_ledger_records_its_layout_as_user_version(workdir: Path, sandbox: SandboxThread,
                                                       token_env: str) -> None:
    _, ledger = imported_ledger(workdir)

    with sqlite3.connect(ledger) as conn:
        stamped = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    assert stamped == len(MIGRATIONS)


# --- item 8: every setting's domain, where it is declared ------------------------------------

NOT_FINITE = ["inf", "nan", "-1", "Infinity", "1e400"]


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("value", NOT_FINITE)
def test_a_rate_that_is_not_a_finite_positive_number_is_one_line_exit_2_as_a_flag(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str], value: str) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [good_row()])

    assert main(["run", str(manifest), "--rate", value]) == 2

    assert "--rate" in one_error_line(capsys.readouterr().err)
    assert not (workdir / "manifests" / "m.csv.ledger.sqlite").exists()
    assert sandbox.store.count() == 0


@pytest.mark.parametrize("value", NOT_FINITE)
def test_a_rate_that_is_not_a_finite_positive_number_is_one_line_exit_2_as_a_variable(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        value: str) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [good_row()])
    monkeypatch.setenv("CONVIRZA_RATE", value)

    assert main(["run", str(manifest)]) == 2

    assert "CONVIRZA_RATE" in one_error_line(capsys.readouterr().err)
    assert sandbox.store.count() == 0


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "-2.5", "0"])
def test_a_rate_that_is_not_a_finite_positive_number_is_one_line_exit_2_in_a_job_file(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str], value: str) -> None:
    write_manifest(workdir / "manifests" / "m.csv", [good_row()])
    job = workdir / "manifests" / "nightly.toml"
    job.write_text(f'manifest = "m.csv"\nrate = {value}\n')  # TOML's own inf and nan

    assert main(["run", "--job", str(job)]) == 2

    assert f"rate in {job}" in one_error_line(capsys.readouterr().err)
    assert sandbox.store.count() == 0


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0, "inf"])
def test_a_rate_that_is_not_a_finite_positive_number_is_a_usage_error_in_the_python_api(
        workdir: Path, sandbox: SandboxThread, token_env: str, value: object) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [good_row()])

    with pytest.raises(UsageError, match=r"rate=") as raised:
        run_import(manifest, rate=value)
    assert "\n" not in str(raised.value)
    assert sandbox.store.count() == 0


@pytest.mark.parametrize("setting", ["read_timeout", "connect_timeout", "backoff_base",
                                     "backoff_cap", "max_duration",
                                     "max_recording_duration"])
def test_every_duration_is_finite_too(setting: str) -> None:
    """TOML and Python hand over inf and nan as floats, which no duration's text can say."""
    for value in (float("inf"), float("nan")):
        with pytest.raises(UsageError, match=rf"^invalid settings: {setting}="):
            resolve({setting: value}, {}, given_as="keyword")


def test_waiting_for_the_ledger_forever_is_still_allowed() -> None:
    assert resolve({"wait_for_ledger": "forever"}, {}).settings.wait_for_ledger == float("inf")


@pytest.mark.parametrize("url", ["http://user:s3cr3t-pw@127.0.0.1:9", "http://user@host",
                                 "https://:s3cr3t-pw@apicfa.convirza.com/"])
def test_an_api_url_with_a_user_or_password_is_refused_in_one_line_that_hides_it(
        workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        url: str) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [good_row()])
    monkeypatch.setenv("CONVIRZA_TOKEN", "tok-abcdef-123456")

    assert main(["run", str(manifest), "--api-url", url]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--api-url" in line and "CONVIRZA_TOKEN" in line and "s3cr3t" not in line

    monkeypatch.setenv("CONVIRZA_API_URL", url)
    for argv in (["config"], ["config", "--format", "json"], ["lookup", "groups"]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert "s3cr3t" not in captured.out + captured.err
        assert "CONVIRZA_API_URL" in one_error_line(captured.err)
    assert not (workdir / "manifests" / "m.csv.ledger.sqlite").exists()


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -3, "150%"])
def test_an_error_budget_is_a_finite_count_or_a_percentage_up_to_100(value: object) -> None:
    with pytest.raises(UsageError, match=r"^invalid settings: max_errors="):
        resolve({"max_errors": value}, {}, given_as="keyword")


# --- item 8: an observer that fails is detached ---------------------------------------------

OBSERVER_METHODS = ["started", "row", "passed", "finished", "committed", "request_started",
                    "request_finished"]


class FailingObserver(NullObserver):
    """Records every event; ``failing`` raises the first time it is called."""

    def __init__(self, failing: str) -> None:
        self.failing = failing
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()  # ``committed`` comes from the ledger's writer thread

    def _event(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1
        if name == self.failing:
            raise RuntimeError(f"observer bug in {name}")

    def started(self, summary: RunSummary) -> None:
        self._event("started")

    def row(self, event: RowEvent) -> None:
        self._event("row")

    def passed(self, outcome: Outcome, n: int) -> None:
        self._event("passed")

    def finished(self, summary: RunSummary) -> None:
        self._event("finished")

    def committed(self, seconds: float, calls: int) -> None:
        self._event("committed")

    def request_started(self, method: str, path: str) -> None:
        self._event("request_started")

    def request_finished(self, event: RequestEvent) -> None:
        self._event("request_finished")


def three_rows_one_done(workdir: Path) -> tuple[Path, Path]:
    """Three rows whose first was imported by an earlier run: a run of them skips one (an
    observer hears ``passed``) and uploads two (``row``, requests, commits)."""
    rows = [good_row(external_id="O-1"),
            good_row(external_id="O-2", recording_file="../sample_data/call-0002-ulaw8k.wav"),
            good_row(external_id="O-3", recording_file="../sample_data/call-0003-alaw8k.wav")]
    ledger = workdir / "ledger.sqlite"
    first = write_manifest(workdir / "manifests" / "first.csv", rows[:1])
    assert run_import(first, ledger=ledger, quiet=True).exit_code == 0
    return write_manifest(workdir / "manifests" / "m.csv", rows), ledger


def in_time(work: Callable[[], T]) -> T:
    """``work``'s result, or a failure if it takes longer than any run here may (a hung run
    fails the test instead of holding the suite)."""
    done: list[T] = []
    failed: list[BaseException] = []

    def call() -> None:
        try:
            done.append(work())
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout=60)
    if failed:
        raise failed[0]
    assert done, "the run hung"
    return done[0]


@pytest.mark.parametrize("method", OBSERVER_METHODS)
def test_an_observer_that_raises_is_logged_once_and_detached_and_the_run_goes_on(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        caplog: pytest.LogCaptureFixture, method: str) -> None:
    manifest, ledger = three_rows_one_done(workdir)
    observer = FailingObserver(method)

    with caplog.at_level(logging.WARNING, logger="importer"):
        result = in_time(lambda: run_import(manifest, ledger=ledger, observer=observer))

    assert result.exit_code == 0
    assert status_counts(ledger) == Counter({"succeeded": 3})   # nothing left 'uploading'
    assert sandbox.store.count() == 3
    assert observer.calls[method] == 1                           # detached at its failure
    said = [r.getMessage() for r in caplog.records if "observer" in r.getMessage()]
    assert len(said) == 1 and f"{method}()" in said[0] and "detached" in said[0], said
    assert f"observer bug in {method}" in said[0] and "\n" not in said[0]


class PartialObserver:
    """An observer written before ``committed`` and the request events existed: no base
    class, only three of the methods."""

    def __init__(self) -> None:
        self.rows: list[RowEvent] = []
        self.finished_with: RunSummary | None = None

    def started(self, summary: RunSummary) -> None:
        return None

    def row(self, event: RowEvent) -> None:
        self.rows.append(event)

    def finished(self, summary: RunSummary) -> None:
        self.finished_with = summary


def test_an_observer_without_some_methods_hears_the_events_it_has(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        caplog: pytest.LogCaptureFixture) -> None:
    manifest, ledger = three_rows_one_done(workdir)
    observer = PartialObserver()

    with caplog.at_level(logging.WARNING, logger="importer"):
        result = in_time(lambda: run_import(
            manifest, ledger=ledger, observer=cast(Observer, observer)))

    assert result.exit_code == 0 and status_counts(ledger) == Counter({"succeeded": 3})
    assert len(observer.rows) == 2 and observer.finished_with is not None
    said = [r.getMessage() for r in caplog.records if "observer" in r.getMessage()]
    assert sorted(m.split("()")[0].split()[-1] for m in said) == [
        "committed", "passed", "request_finished", "request_started"], said


def test_plain_errors_raises_the_first_of_ours_and_logs_each_other_error_of_the_group(
        caplog: pytest.LogCaptureFixture) -> None:
    group = ExceptionGroup("the run's tasks", [
        ValueError("a bug\nin two lines"), LedgerError("the ledger is gone"),
        LedgerError("the ledger is gone"), UsageError("a second error of ours"),
        UsageError("a second error of ours")])  # tasks that met the same: said once

    with caplog.at_level(logging.ERROR, logger="importer"), \
            pytest.raises(LedgerError, match="the ledger is gone"), plain_errors():
        raise group

    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2, said
    assert "ValueError: a bug" in said[0] and "a second error of ours" in said[1]
    assert all("\n" not in line for line in said)


# --- item 9: bidi and other controls escaped in every report format -------------------------

#: The bidirectional controls (embeddings, overrides, isolates, marks, the Arabic letter mark)
#: and some C0 and C1 controls: none may reach a report raw.
UNSAFE = ("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
          "\x1b\x07\x9b")
TRICK = "abc\u202egnp.exe.wav"


def ledger_of_tricky_names(workdir: Path) -> Path:
    """A ledger whose rows name files (which do not exist: the rows are invalid, kept with
    their source) and external_ids full of controls, one row for each."""
    rows = [good_row(external_id="TRICK-0", recording_file=TRICK)]
    rows += [good_row(external_id=f"T{c}-{i}", recording_file=f"x{c}y-{i}.wav")
             for i, c in enumerate(UNSAFE, 1)]
    manifest = write_manifest(workdir / "manifests" / "tricky.csv", rows)
    ledger = workdir / "tricky.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger), "--quiet"]) == 1
    with sqlite3.connect(ledger) as conn:
        stored = [s for (s,) in conn.execute("SELECT source FROM recordings")]
    conn.close()
    assert TRICK in stored  # the ledger keeps the name as it is; reports escape it
    return ledger


def assert_escaped(text: str) -> None:
    raw = sorted({f"U+{ord(c):04X}" for c in text if c in UNSAFE})
    assert raw == [], raw
    assert "\\u202e" in text  # shown as the table shows it, not dropped


def test_the_html_report_escapes_bidi_and_control_characters(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    ledger = ledger_of_tricky_names(workdir)
    page = workdir / "report.html"

    assert main(["report", str(ledger), "--format", "html", "--output", str(page)]) == 0

    text = page.read_text(encoding="utf-8")
    assert_escaped(text)
    assert "abc\\u202egnp.exe.wav" in text


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_report_rows_escape_bidi_and_control_characters_in_a_file_and_on_stdout(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    ledger = ledger_of_tricky_names(workdir)
    out = workdir / f"rows.{fmt}"
    capsys.readouterr()

    assert main(["report", str(ledger), "--format", fmt, "--output", str(out)]) == 0
    assert main(["report", str(ledger), "--format", fmt]) == 0   # to a pipe, not a terminal

    for text in (out.read_text(encoding="utf-8"), capsys.readouterr().out):
        assert_escaped(text)
        if fmt == "json":  # escaped the JSON way: the value reads back whole
            assert TRICK in {row["source"] for row in json.loads(text)}
        else:
            assert "abc\\u202egnp.exe.wav" in text


def test_the_report_summary_escapes_bidi_and_control_characters(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    ledger = ledger_of_tricky_names(workdir)
    capsys.readouterr()

    for fmt in ("summary", "json"):
        assert main(["report", str(ledger), "--summary", "--format", fmt]) == 0
        text = capsys.readouterr().out
        assert not {c for c in text if c in UNSAFE}, fmt


# --- item 7: output that fails never ends the work silently ----------------------------------

OUTPUT_LOST = 5  # docs/commands.md: the work was done, but its output could not be written


def child_env(**extra: str) -> dict[str, str]:
    """A child's environment: the test's (the sandbox's URL and token) and our code."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def importer_command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "importer", *argv]


def nightly_job(workdir: Path, manifests: int) -> tuple[Path, Path, list[str]]:
    """A job file whose glob matches ``manifests`` exports of two rows each, and its
    ledger's path; the external_ids of every row."""
    rows = many_rows(workdir, 2 * manifests, prefix="J")
    exports = workdir / "manifests" / "exports"
    exports.mkdir()
    for i in range(manifests):
        part = [dict(r, recording_file="../" + r["recording_file"])
                for r in rows[2 * i:2 * i + 2]]
        write_manifest(exports / f"calls-{i}.csv", part)
    job = workdir / "manifests" / "nightly.toml"
    job.write_text('manifest = "exports/calls-*.csv"\nrate = 100\n')
    return job, workdir / "manifests" / "nightly.ledger.sqlite", [r["external_id"] for r in rows]


def test_a_job_piped_to_head_runs_every_manifest_and_exits_5(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """``run --job ... | head -1``: head reads the first summary's first line and exits; the
    sandbox's latency keeps the next summary well after that. The job goes on to its end."""
    job, ledger, ids = nightly_job(workdir, 3)
    sandbox.set_faults(latency=0.3)

    done = subprocess.run(
        ["bash", "-c", '"$@" | head -1; exit "${PIPESTATUS[0]}"', "bash",
         *importer_command("run", "--job", str(job))],
        env=child_env(), capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == OUTPUT_LOST, done.stderr
    assert len(done.stdout.splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert "standard output" in done.stderr            # said on stderr, once
    assert done.stderr.count("standard output") == 1, done.stderr
    assert status_counts(ledger) == Counter({"succeeded": 6})   # all three manifests ran
    assert sorted(received(sandbox)) == sorted(ids)


def test_a_reader_gone_before_the_first_line_still_gets_the_job_done(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    job, ledger, _ = nightly_job(workdir, 2)
    proc = subprocess.Popen(importer_command("run", "--job", str(job)), env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone: every write to stdout fails

    _, err = proc.communicate(timeout=120)

    assert proc.returncode == OUTPUT_LOST, err
    assert "Traceback" not in err and "Broken pipe" in err
    assert status_counts(ledger) == Counter({"succeeded": 4})


def test_a_full_stdout_is_no_traceback_and_the_import_happens(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 3))
    ledger = workdir / "ledger.sqlite"

    with open("/dev/full", "w") as full:
        done = subprocess.run(importer_command("run", str(manifest), "--ledger", str(ledger)),
                              env=child_env(), stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=120, check=False)

    assert done.returncode == OUTPUT_LOST, done.stderr
    assert "Traceback" not in done.stderr and "No space left on device" in done.stderr
    assert status_counts(ledger) == Counter({"succeeded": 3})
    assert sandbox.store.count() == 3


@pytest.mark.parametrize("command", [["report", "--format", "csv"], ["report"], ["config"],
                                     ["config", "--format", "json"]])
def test_a_full_stdout_for_a_report_or_config_is_one_line_and_exit_5(
        workdir: Path, sandbox: SandboxThread, token_env: str, command: list[str]) -> None:
    _, ledger = imported_ledger(workdir)
    argv = [*command, str(ledger)] if command[0] == "report" else command

    with open("/dev/full", "w") as full:
        done = subprocess.run(importer_command(*argv), env=child_env(), stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)

    assert done.returncode == OUTPUT_LOST
    assert done.stderr.count("\n") == 1 and "No space left on device" in done.stderr


@pytest.mark.parametrize("stdout", ["pipe", "full"])
def test_a_closed_stderr_is_no_traceback_and_the_import_happens(
        workdir: Path, sandbox: SandboxThread, token_env: str, stdout: str) -> None:
    """``2>&-``: the process starts without file descriptor 2 (the ledger must not take it,
    and what is logged must not land in it)."""
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 3))
    ledger = workdir / "ledger.sqlite"
    command = ["sh", "-c", 'exec "$@" 2>&-', "sh",
               *importer_command("run", str(manifest), "--ledger", str(ledger), "--verbose")]

    with open("/dev/full" if stdout == "full" else os.devnull, "w") as sink:
        done = subprocess.run(command, env=child_env(), timeout=120, check=False, text=True,
                              stdout=subprocess.PIPE if stdout == "pipe" else sink)

    assert done.returncode == (0 if stdout == "pipe" else OUTPUT_LOST)
    if stdout == "pipe":
        assert "3 rows in" in done.stdout and "Traceback" not in done.stdout
    assert status_counts(ledger) == Counter({"succeeded": 3})
    with sqlite3.connect(ledger) as conn:   # a whole ledger, nothing written into it by logs
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_a_usage_error_with_stderr_closed_is_no_traceback(workdir: Path) -> None:
    done = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh",
                           *importer_command("run", str(workdir / "nothing.csv"), "--rate",
                                             "inf")],
                          env=child_env(), capture_output=True, text=True, timeout=60,
                          check=False)

    assert done.returncode == 2
    assert done.stdout == ""  # the error had nowhere to go; it does not go to stdout


@pytest.mark.parametrize("locale", [{"PYTHONIOENCODING": "ascii"},
                                    {"PYTHONIOENCODING": "latin-1"},
                                    {"LANG": "C", "LC_ALL": "C"}])
def test_a_terminal_that_cannot_show_a_name_gets_it_escaped_and_the_import_happens(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        locale: dict[str, str]) -> None:
    folder = workdir / "manifests" / "appels-été-通話"
    folder.mkdir()
    manifest = write_manifest(folder / "m.csv", [
        good_row(external_id="U-1", recording_file="../../sample_data/call-0001-pcm8k.wav"),
        good_row(external_id="U-2", caller_id="café",
                 recording_file="../../sample_data/call-0002-ulaw8k.wav")])

    done = subprocess.run(importer_command("run", str(manifest)), env=child_env(**locale),
                          capture_output=True, timeout=120, check=False)

    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 1, err                     # one row invalid, nothing else
    assert "Traceback" not in err and "UnicodeEncodeError" not in err
    out = done.stdout.decode("ascii" if "ascii" in str(locale) else "utf-8", "replace")
    assert "2 rows in" in out
    assert status_counts(folder / "m.csv.ledger.sqlite") == Counter(
        {"succeeded": 1, "invalid": 1})


# --- item 10: the smaller ones ---------------------------------------------------------------

def test_retry_ledger_takes_one_status_as_a_string(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 2))
    ledger = workdir / "ledger.sqlite"
    sandbox.set_faults(fail_rate=1.0)
    assert run_import(manifest, ledger=ledger, max_attempts=1, quiet=True).exit_code == 1
    sandbox.set_faults(fail_rate=0.0)

    result = retry_ledger(ledger, statuses="failed", quiet=True)

    assert result.exit_code == 0 and result.counts["succeeded"] == 2
    assert status_counts(ledger) == Counter({"succeeded": 2})


@pytest.mark.parametrize("statuses", ["succeeded", ["failed", "bogus"], "f"])
def test_retry_ledger_refuses_a_status_it_cannot_send_in_one_line(
        workdir: Path, statuses: object) -> None:
    with pytest.raises(UsageError, match="retry takes") as raised:
        retry_ledger(workdir / "ledger.sqlite", statuses=cast(Sequence[str], statuses))
    assert "\n" not in str(raised.value)


def test_a_run_without_credentials_creates_neither_the_ledger_nor_its_lock(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [good_row()])
    _, ledger = imported_ledger(workdir)
    before = sorted(p.name for p in workdir.iterdir())
    monkeypatch.delenv("CONVIRZA_TOKEN")
    capsys.readouterr()

    assert main(["run", str(manifest)]) == 2
    assert main(["run", str(manifest), "--ledger", str(workdir / "new.sqlite")]) == 2
    assert main(["retry", str(ledger)]) == 2

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all("no credentials" in line for line in lines), lines
    assert not list((workdir / "manifests").glob("m.csv.ledger.sqlite*"))
    assert sorted(p.name for p in workdir.iterdir()) == before  # no new.sqlite, no .lock


def test_a_summary_json_that_cannot_be_written_exits_non_zero_in_one_line(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [good_row()])
    unwritable = Path("/proc/summary.json")  # a folder where no file can be made, even by root

    assert main(["run", str(manifest), "--summary-json", str(unwritable)]) == OUTPUT_LOST

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(unwritable) in err, err
    assert sandbox.store.count() == 1   # the import itself happened
    result = run_import(manifest, summary_json=unwritable)
    assert result.exit_code == OUTPUT_LOST


def test_sighup_stops_a_run_gently_and_its_run_record_shows_its_counts(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """A terminal closed under a run (or ``kill -HUP``): the uploads in flight finish, the
    rest stay pending, and the ledger's run record says what the run did."""
    sandbox.set_faults(latency=0.2)
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 60))
    ledger = workdir / "ledger.sqlite"
    proc = subprocess.Popen(
        importer_command("run", str(manifest), "--ledger", str(ledger), "--rate", "500",
                         "--concurrency", "2"),
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while sandbox.store.count() < 3:  # some uploads done, more to come
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended first"
        time.sleep(0.02)

    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, err
    assert "SIGHUP received" in err and "Stopped early: interrupted" in out
    counts = status_counts(ledger)
    assert counts["uploading"] == 0 and counts["pending"] > 0
    assert counts["succeeded"] == sandbox.store.count()
    with sqlite3.connect(ledger) as conn:
        exit_code, summary = conn.execute("SELECT exit_code, summary FROM runs").fetchone()
    conn.close()
    assert exit_code == 130
    assert json.loads(summary)["counts"]["succeeded"] == counts["succeeded"]
