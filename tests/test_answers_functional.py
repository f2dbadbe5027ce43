"""Only the API's own answer counts (issue 11, items 3, 6, 7, 8, 9, 11): a redirect or an HTML
page is never a success and nothing follows a redirect; a failed login is not an upload of
unknown outcome; an external_id with a comma is still found again; answers are read whole,
however many pieces they come in; file names arrive as they are; an API that is not there stops
the run before its first row. Real HTTP to the sandbox (and to a second sandbox standing as a
redirect's target), real SQLite, real audio files."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from importer.cli.commands import main
from importer.sandbox import SandboxConfig

from .conftest import TOKEN, SandboxThread
from .helpers import crash_leftovers, good_row, many_rows, write_manifest


def states(ledger: Path) -> Counter[str]:
    with sqlite3.connect(ledger) as conn:
        found = Counter(s for (s,) in conn.execute("SELECT status FROM recordings"))
    conn.close()
    return found


@pytest.fixture
def elsewhere() -> Iterator[SandboxThread]:
    """Another host, where a redirect points: it counts every request it receives."""
    with SandboxThread(SandboxConfig(static_tokens=frozenset({TOKEN}))) as server:
        yield server


def when(condition: Callable[[], bool], then: Callable[[], None]) -> threading.Thread:
    """Do ``then`` once ``condition`` holds (polled from a thread, while the run goes on in
    this one: the command line handles signals, so it runs in the main thread)."""
    def wait() -> None:
        deadline = time.monotonic() + 60
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        then()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


FOREIGN: dict[str, dict[str, Any]] = {
    "302": {"redirect_status": 302}, "307": {"redirect_status": 307}, "html": {"html_200": True},
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_a_redirect_or_a_page_mid_run_marks_nothing_done_and_stops(
        workdir: Path, sandbox: SandboxThread, token_env: str, elsewhere: SandboxThread,
        kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.set_faults(latency=0.05)
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 40))
    ledger = workdir / "ledger.sqlite"

    def turn() -> None:
        sandbox.set_faults(**FOREIGN[kind], redirect_to=None if kind == "html" else
                           elsewhere.url)

    flip = when(lambda: sandbox.store.count() >= 3, turn)
    code = main(["run", str(manifest), "--ledger", str(ledger), "--concurrency", "2",
                 "--rate", "1000"])
    flip.join()

    assert code == 2
    assert elsewhere.state.received == 0  # nothing followed the redirect
    found = states(ledger)
    assert found["succeeded"] == sandbox.store.count()  # only what the API itself stored
    assert found["uploading"] == 0 and found["failed"] == 0
    assert found["pending"] == 40 - found["succeeded"]
    err = capsys.readouterr().err.strip().splitlines()[-1]
    what = "text/html ('Welcome to nginx!'), not an answer of the API" if kind == "html" \
        else f"a redirect to {elsewhere.url}/v2/call/upload, never followed"
    assert err.startswith(f"convirza-import: error: HTTP {'200' if kind == 'html' else kind} "
                          f"POST {sandbox.url}/v2/call/upload was answered with {what}")


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_a_redirect_or_a_page_from_the_start_stops_before_the_first_row(
        workdir: Path, sandbox: SandboxThread, token_env: str, elsewhere: SandboxThread,
        kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.set_faults(**FOREIGN[kind], redirect_to=None if kind == "html" else elsewhere.url)
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger",
                 str(ledger)]) == 2

    assert elsewhere.state.received == 0 and sandbox.store.count() == 0
    assert states(ledger) == Counter()
    assert run_exit_codes(ledger) == [2]  # recorded, not left looking unfinished
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    what = "text/html ('Welcome to nginx!')" if kind == "html" else \
        f"a redirect to {elsewhere.url}/v2/group/list?limit=1, never followed"
    assert f"GET {sandbox.url}/v2/group/list was answered with {what}" in err


def run_exit_codes(ledger: Path) -> list[int | None]:
    with sqlite3.connect(ledger) as conn:
        codes = [c for (c,) in conn.execute("SELECT exit_code FROM runs ORDER BY id")]
    conn.close()
    return codes


def test_a_run_without_credentials_leaves_no_run_looking_unfinished(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before the ledger is touched (issue 18): the ledger keeps the runs it had, none
    left looking "running or killed". (A run that can start and then cannot go on is recorded
    with its exit code: the redirect and the page above.)"""
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger", str(ledger),
                 "--quiet"]) == 0
    monkeypatch.delenv("CONVIRZA_TOKEN")  # no credentials at all

    assert main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger",
                 str(ledger)]) == 2

    assert "no credentials" in capsys.readouterr().err
    assert run_exit_codes(ledger) == [0]


def test_a_login_that_fails_mid_run_leaves_no_upload_in_doubt(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The token endpoint answers 500 once the first token runs out: no request with a body
    left, so no row is 'uploading' and no attempt's outcome is unknown."""
    monkeypatch.delenv("CONVIRZA_TOKEN")
    monkeypatch.setenv("CONVIRZA_USERNAME", "demo@example.com")
    monkeypatch.setenv("CONVIRZA_PASSWORD", "demo-password")
    sandbox.set_config(token_ttl=3.0)  # the importer renews it after 1.5 s
    sandbox.set_faults(latency=0.1)
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 60))
    ledger = workdir / "ledger.sqlite"

    def fail_logins() -> None:
        sandbox.set_faults(login_error=500)

    flip = when(lambda: sandbox.store.count() >= 2, fail_logins)
    code = main(["run", str(manifest), "--ledger", str(ledger), "--concurrency", "1",
                 "--rate", "1000", "--max-attempts", "1", "--max-consecutive-failures", "3"])
    flip.join()

    assert code == 4  # the breaker: the API kept failing
    found = states(ledger)
    assert found["uploading"] == 0 and found["failed"] == 3
    assert found["succeeded"] == sandbox.store.count()
    with sqlite3.connect(ledger) as conn:
        outcomes = Counter(o for (o,) in conn.execute("SELECT outcome FROM attempts"))
        errors = [e for (e,) in conn.execute(
            "SELECT error FROM recordings WHERE status = 'failed'")]
    conn.close()
    assert outcomes["unknown"] == 0
    assert all("Login failed" in e or "Internal server error" in e for e in errors), errors


def test_an_external_id_with_a_comma_is_found_again_and_blocks_nothing(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    rows = [good_row(external_id="INV-7,2024"),
            good_row(external_id="PLAIN", recording_file="../sample_data/call-0005-cbr.mp3")]
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "ledger.sqlite"
    crash_leftovers(ledger, manifest, rows, ["ext:INV-7,2024"])
    # It did arrive before the crash; a call of the same caller with another id did too.
    for external_id in ("INV-7,2024", "INV-7"):
        sandbox.store.add("before-crash", {"external_id": external_id, "group_id": "12",
                                           "caller_id": "6175550142"}, "a.wav", 1, "0" * 64)

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 0

    assert Counter(c.external_id for c in sandbox.store.calls()) == Counter(
        {"INV-7,2024": 1, "INV-7": 1, "PLAIN": 1})
    assert states(ledger) == Counter({"succeeded": 2})


def test_an_external_id_with_a_comma_not_found_is_sent_again(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    rows = [good_row(external_id="INV-8,2024")]
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "ledger.sqlite"
    crash_leftovers(ledger, manifest, rows, ["ext:INV-8,2024"])

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 0

    assert [c.external_id for c in sandbox.store.calls()] == ["INV-8,2024"]


def test_lookups_read_answers_that_arrive_in_pieces(
        sandbox: SandboxThread, token_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Pages of 100 calls (some 40 KB each) written in three pieces."""
    for n in range(250):
        sandbox.store.add(f"r{n}", {"external_id": f"E-{n:03d}", "group_id": "12",
                                    "caller_name": "x" * 300}, "a.wav", 1, "0" * 64)
    sandbox.set_faults(split_answers=3)

    assert main(["lookup", "calls", "--format", "json"]) == 0

    calls = json.loads(capsys.readouterr().out)
    assert sorted(c["external_id"] for c in calls) == [f"E-{n:03d}" for n in range(250)]


def test_a_run_reads_answers_that_arrive_in_pieces(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """The check before the first row, the uploads and a reconciling lookup, all in pieces."""
    sandbox.set_faults(split_answers=4)
    rows = many_rows(workdir, 5)
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "ledger.sqlite"
    crash_leftovers(ledger, manifest, rows, ["ext:E-0000"])
    sandbox.store.add("before-crash", {"external_id": "E-0000", "group_id": "12"}, "a.wav", 1,
                      "0" * 64)

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 0

    assert sandbox.store.count() == 5 and states(ledger) == Counter({"succeeded": 5})


NAMES = ("Llamada José ñ.wav", "call recording 2024-05-01 0930.wav", 'quote " and \\ back.wav',
         "100% done.wav")


def test_file_names_arrive_as_they_are(workdir: Path, sandbox: SandboxThread,
                                       token_env: str) -> None:
    rows = []
    samples = ("call-0001-pcm8k.wav", "call-0002-ulaw8k.wav", "call-0003-alaw8k.wav",
               "call-0004-stereo16k.wav")
    for n, name in enumerate(NAMES):
        shutil.copy(workdir / "sample_data" / samples[n], workdir / "sample_data" / name)
        rows.append(good_row(external_id=f"N{n}", recording_file=f"../sample_data/{name}"))
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)

    assert main(["run", str(manifest), "--ledger", str(workdir / "l.sqlite")]) == 0

    assert {c.external_id: c.file_name for c in sandbox.store.calls()} == {
        f"N{n}": name for n, name in enumerate(NAMES)}
