"""The ledger's promises end to end: kill -9 at random moments loses and doubles nothing;
ambiguous failures are reconciled, not resent; one ledger serves many manifests; retry works
from the ledger alone; shards split the rows exactly; reports add ledgers up."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from importer.cli.commands import main
from importer.ledger.states import Status
from importer.ledger.store import Ledger

from .conftest import ROOT, SandboxThread
from .helpers import crash_leftovers, good_row, many_rows, received, status_counts, write_manifest


def test_kill_9_at_random_moments_loses_and_doubles_nothing(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    sandbox.set_faults(latency=0.05)
    rows = many_rows(workdir, 400)  # some 10 s of uploads: more than 16 short runs get done
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "ledger.sqlite"
    command = [sys.executable, "-m", "importer", "run", str(manifest), "--ledger", str(ledger),
               "--concurrency", "2", "--rate", "500", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(20261126)
    kills = 0
    while kills < 16:
        stored = sandbox.store.count()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if kills % 2:  # a moment while uploading, however slowly this machine starts a run
            def uploading(p: subprocess.Popen[bytes] = proc, n: int = stored) -> bool:
                return sandbox.store.count() > n or p.poll() is not None
            _until(uploading)
            time.sleep(rng.uniform(0.0, 0.3))
        else:  # any moment: starting, reading, claiming, uploading
            time.sleep(rng.uniform(0.05, 1.1))
        assert proc.poll() is None, "the run ended before it was killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
    assert sandbox.store.count() > 0  # the kills did land in the middle of uploading

    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                           check=False)

    assert final.returncode == 0, final.stderr
    assert status_counts(ledger) == Counter({"succeeded": len(rows)})
    arrived = received(sandbox)
    assert set(arrived) == {r["external_id"] for r in rows}     # nothing lost
    assert max(arrived.values()) == 1, arrived.most_common(3)   # nothing doubled


def _until(done: Callable[[], bool], limit: float = 60.0) -> None:
    """Poll ``done`` (a run's progress, seen at the sandbox) for up to ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_ambiguous_failures_are_reconciled_not_resent(workdir: Path, sandbox: SandboxThread,
                                                       token_env: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.set_faults(ambiguous_rate=0.5, lost_answer_rate=0.3, seed=3)
    rows = many_rows(workdir, 40)
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger), "--rate", "500"]) == 0

    arrived = received(sandbox)
    assert len(arrived) == 40 and max(arrived.values()) == 1
    assert status_counts(ledger) == Counter({"succeeded": 40})
    assert "reconciled" in capsys.readouterr().out
    with sqlite3.connect(ledger) as conn:
        outcomes = Counter(o for (o,) in conn.execute("SELECT outcome FROM attempts"))
    assert outcomes["reconciled"] >= 10 and outcomes["unknown"] == outcomes["reconciled"]


def test_resume_reconciles_rows_left_uploading(workdir: Path, sandbox: SandboxThread,
                                               token_env: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rows = many_rows(workdir, 6)
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "ledger.sqlite"
    crash_leftovers(ledger, manifest, rows, ["ext:E-0000", "ext:E-0001"])
    # E-0000 did arrive before the crash; E-0001 did not.
    sandbox.store.add("before-crash", {"external_id": "E-0000", "group_id": "12"}, "a.wav",
                      1, "0" * 64)

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 0

    assert received(sandbox) == Counter({f"E-{i:04d}": 1 for i in range(6)})
    out = capsys.readouterr().out
    assert "1 reconciled" in out and "1 resent after lookup" in out


@pytest.mark.parametrize(("on_unknown", "sent", "code"), [("skip", 0, 1), ("resend", 1, 0)])
def test_on_unknown_when_the_call_cannot_be_looked_up(
        workdir: Path, sandbox: SandboxThread, token_env: str, on_unknown: str, sent: int,
        code: int) -> None:
    rows = [good_row(external_id="")]
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "ledger.sqlite"
    key = "file:" + str(workdir / "sample_data" / "call-0001-pcm8k.wav")
    crash_leftovers(ledger, manifest, rows, [key])

    assert main(["run", str(manifest), "--ledger", str(ledger), "--no-auto-external-id",
                 "--on-unknown", on_unknown]) == code

    assert sandbox.store.count() == sent
    expected = "uploading" if on_unknown == "skip" else "succeeded"
    assert status_counts(ledger) == Counter({expected: 1})


def test_one_ledger_serves_two_manifests(workdir: Path, sandbox: SandboxThread,
                                         token_env: str) -> None:
    ledger = workdir / "shared.sqlite"
    night1 = write_manifest(workdir / "manifests" / "night1.csv", many_rows(workdir, 5))
    night2 = write_manifest(workdir / "manifests" / "night2.csv",
                            many_rows(workdir, 5)[3:] + many_rows(workdir, 3, prefix="N2"))

    assert main(["run", str(night1), "--ledger", str(ledger)]) == 0
    assert main(["run", str(night2), "--ledger", str(ledger)]) == 0

    assert sum(received(sandbox).values()) == 8
    assert status_counts(ledger) == Counter({"succeeded": 8})


def test_a_resumed_run_passes_over_done_rows_yet_knows_their_recordings(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """Done rows are skipped unread on a re-run, but a row added since that lists one of
    their recordings under another external_id is still a duplicate, not a second upload."""
    rows = many_rows(workdir, 4)
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 0
    again = good_row(external_id="LATE", recording_file=rows[1]["recording_file"])
    write_manifest(manifest, [*rows, again, good_row(external_id="NEW")])

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1

    assert sorted(received(sandbox)) == ["E-0000", "E-0001", "E-0002", "E-0003", "NEW"]
    opened = Ledger.open(ledger)
    late = next(r for r in opened.rows() if r.external_id == "LATE")
    opened.close()
    assert late.status is Status.INVALID
    assert "row 6: duplicate of row 3: the same recording" in (late.error or "")


def test_retry_after_the_api_recovers(workdir: Path, sandbox: SandboxThread, token_env: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.set_faults(fail_rate=1.0)
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 5))
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger), "--max-attempts", "2",
                 "--rate", "500"]) == 1
    assert status_counts(ledger) == Counter({"failed": 5})
    manifest.unlink()  # retry needs no manifest
    sandbox.set_faults(fail_rate=0.0)
    summary = workdir / "summary.json"

    assert main(["retry", str(ledger), "--summary-json", str(summary)]) == 0

    assert status_counts(ledger) == Counter({"succeeded": 5})
    assert sum(received(sandbox).values()) == 5
    counts = json.loads(summary.read_text())["counts"]
    # A 500 leaves the outcome unknown: each row was looked up (absent) before it was resent.
    assert counts == {"succeeded": 5, "resent after lookup": 5}
    assert main(["retry", str(ledger)]) == 0      # nothing left to do
    assert sum(received(sandbox).values()) == 5


def test_retry_leaves_rejected_rows_unless_asked(workdir: Path, sandbox: SandboxThread,
                                                 token_env: str) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv",
                              [good_row(external_id="R", campaign_id="777")])
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1
    assert status_counts(ledger) == Counter({"failed": 1})   # the API refused campaign 777

    assert main(["retry", str(ledger)]) == 0
    assert sandbox.store.count() == 0
    assert main(["retry", str(ledger), "--include-rejected"]) == 1
    with sqlite3.connect(ledger) as conn:
        assert conn.execute("SELECT attempts FROM recordings").fetchone()[0] == 2


def test_shards_split_the_rows_exactly(workdir: Path, sandbox: SandboxThread, token_env: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 30))
    ledgers = [workdir / f"shard{k}.sqlite" for k in range(3)]
    printed = []
    for k, ledger in enumerate(ledgers):
        assert main(["run", str(manifest), "--ledger", str(ledger), "--shard", f"{k}/3",
                     "--rate", "500"]) == 0
        printed.append(capsys.readouterr().out.splitlines()[0])
    arrived = received(sandbox)
    assert len(arrived) == 30 and max(arrived.values()) == 1
    sizes = [sum(status_counts(ledger).values()) for ledger in ledgers]
    assert sum(sizes) == 30 and min(sizes) > 0
    for line, size in zip(printed, sizes, strict=True):
        assert line.startswith(f"{size} rows in ")
        assert line.endswith(f": {size} succeeded. {30 - size} rows of other shards passed over.")

    assert main(["report", *map(str, ledgers), "--summary", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["total"]["counts"]["succeeded"] == 30
    assert [p["counts"]["succeeded"] for p in summary["ledgers"]] == sizes


def test_report_summary_text_and_run_filter(workdir: Path, sandbox: SandboxThread,
                                            token_env: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="A"), good_row(external_id="B", caller_id="=HYPERLINK(1)"),
        good_row(external_id="C", recording_file="../sample_data/none.wav")])
    ledger = workdir / "ledger.sqlite"
    main(["run", str(manifest), "--ledger", str(ledger)])
    capsys.readouterr()

    assert main(["report", str(ledger)]) == 0
    text = capsys.readouterr().out
    assert "invalid           2" in text and "file not found" in text and "#1" in text
    assert main(["report", str(ledger), "--run", "1", "--format", "csv"]) == 0
    csv_text = capsys.readouterr().out
    assert csv_text.count("\n") == 4
    assert ",=" not in csv_text   # a formula-like cell is defused for Excel
    assert main(["report", str(ledger), "--run", "2", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_report_closes_the_ledgers_it_opened_when_a_later_one_fails_to_open(
        workdir: Path) -> None:
    good = workdir / "good.ledger.sqlite"
    Ledger.open(good, create=True).close()
    bad = workdir / "bad.ledger.sqlite"
    bad.write_bytes(b"this is not a database, " * 100)
    before = set(os.listdir("/proc/self/fd"))
    assert main(["report", str(good), str(bad)]) != 0
    leaked = [os.readlink(f"/proc/self/fd/{fd}") for fd in
              set(os.listdir("/proc/self/fd")) - before if os.path.exists(f"/proc/self/fd/{fd}")]
    assert not [name for name in leaked if "good.ledger" in name]
