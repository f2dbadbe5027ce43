"""Re-runs, shards and stops where two features meet: duplicates of rows done before, the same
recording across shards, a crash leftover whose row is now invalid, budgets judged over a
re-run, a manifest that breaks part-way. Real HTTP to the sandbox, real SQLite, real files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from importer.cli.commands import main
from importer.ledger.states import Status
from importer.ledger.store import Ledger
from importer.manifest.identity import in_shard

from .conftest import SandboxThread
from .helpers import crash_leftovers, good_row, many_rows, received, status_of, write_manifest


def invalid_errors(ledger: Path) -> dict[int, str]:
    opened = Ledger.open(ledger)
    try:
        return {r.row_number or 0: r.error or "" for r in opened.rows([Status.INVALID])}
    finally:
        opened.close()


def test_a_repeated_external_id_stays_a_duplicate_after_the_first_is_done(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="A1", recording_file="../sample_data/call-0001-pcm8k.wav"),
        good_row(external_id="A2", recording_file="../sample_data/call-0002-ulaw8k.wav"),
        good_row(external_id="A1", recording_file="../sample_data/call-0003-alaw8k.wav"),
    ])
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1
    capsys.readouterr()

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1

    out = capsys.readouterr()
    assert "row 4: duplicate of row 2: the same external_id A1" in out.err
    assert "3 rows" in out.out and "1 invalid" in out.out and "2 skipped" in out.out
    assert sandbox.store.count() == 2


def test_the_same_recording_in_two_shards_is_uploaded_once(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    rows = [good_row(external_id=f"B{i}", recording_file="../sample_data/call-0001-pcm8k.wav")
            for i in range(8)]
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    shards = {k for i in range(8) for k in range(2) if in_shard(f"ext:B{i}", (k, 2))}
    assert shards == {0, 1}  # the rows do fall in both shards

    for k in range(2):
        main(["run", str(manifest), "--ledger", str(workdir / f"s{k}.sqlite"),
              "--shard", f"{k}/2"])

    assert received(sandbox) == Counter({"B0": 1})
    for k in range(2):
        for row, error in invalid_errors(workdir / f"s{k}.sqlite").items():
            assert row > 2 and "duplicate of row 2: the same recording" in error


def test_a_crash_leftover_whose_row_is_now_invalid_is_reported_not_skipped(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    rows = [good_row(external_id="C1", call_date="not a date")]
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "ledger.sqlite"
    crash_leftovers(ledger, manifest, rows, ["ext:C1"])

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1

    out = capsys.readouterr()
    assert "1 unresolved" in out.out
    assert "row 2: an earlier upload of this row has an unknown outcome, and the row is " \
           "invalid now (call_date:" in out.err
    assert status_of(ledger) == {"ext:C1": "uploading"} and sandbox.store.count() == 0


def test_an_upload_that_may_have_arrived_and_cannot_be_looked_up_is_not_resent(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    sandbox.set_faults(ambiguous_rate=1.0)  # stored, then answered 500
    manifest = write_manifest(workdir / "manifests" / "m.csv", [good_row(external_id="")])
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger), "--no-auto-external-id",
                 "--max-attempts", "3", "--backoff-base", "0.01"]) == 1

    assert sandbox.store.count() == 1
    assert list(status_of(ledger).values()) == ["uploading"]


def test_a_percentage_budget_lets_reruns_make_progress(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """4% of the rows are invalid; --max-errors 5% must not stop a run, first or later."""
    rows = [good_row(external_id=f"P{i}", recording_file="",
                     recording_url=f"https://pbx.test/{i}.wav",
                     call_date="bad" if i % 25 == 0 else "2025-03-04T09:15:22-05:00")
            for i in range(200)]
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "ledger.sqlite"

    for _ in range(2):
        assert main(["run", str(manifest), "--ledger", str(ledger), "--rate", "500",
                     "--max-errors", "5%"]) == 1
        assert Counter(status_of(ledger).values()) == {"succeeded": 192, "invalid": 8}


def test_a_manifest_that_breaks_part_way_is_recorded_as_exit_2(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVIRZA_CHUNK_ROWS", "5")
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 12))
    with manifest.open("a") as handle:
        handle.write('"../sample_data/unclosed.wav,2025-03-04,12,6175550142,E-9\n')
    ledger, summary = workdir / "ledger.sqlite", workdir / "summary.json"

    assert main(["run", str(manifest), "--ledger", str(ledger),
                 "--summary-json", str(summary)]) == 2

    written = json.loads(summary.read_text())
    assert written["exit_code"] == 2 and written["stopped"].startswith("manifest unreadable")
    opened = Ledger.open(ledger)
    [run] = opened.runs()
    opened.close()
    assert run.exit_code == 2


def test_rows_decided_after_a_stop_are_still_reported(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    rows = [good_row(external_id=f"S{i}", recording_file="",
                     recording_url=f"https://pbx.test/{i}.wav",
                     call_date="bad" if i % 2 else "2025-03-04T09:15:22-05:00")
            for i in range(40)]
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger), "--max-uploads", "2"]) == 4

    recorded = Counter(status_of(ledger).values())
    assert recorded["invalid"] == 20
    assert "20 invalid" in capsys.readouterr().out


def test_rows_the_api_refused_before_still_count_as_failed_on_a_rerun(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv",
                              [good_row(external_id="R", campaign_id="777")])
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1
    capsys.readouterr()

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1

    assert "refused this row in an earlier run" in capsys.readouterr().err
    assert sandbox.store.count() == 0


def test_a_run_looks_up_a_failed_row_whose_last_attempt_may_have_arrived(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """A 500 after the body was sent, and the call not found then: the row failed. If the
    API shows the call later, the next run finds it instead of sending it a second time."""
    sandbox.set_faults(fail_rate=1.0)
    manifest = write_manifest(workdir / "manifests" / "m.csv", [good_row(external_id="U1")])
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger), "--max-attempts", "1"]) == 1
    assert status_of(ledger) == {"ext:U1": "failed"} and sandbox.store.count() == 0
    sandbox.set_faults(fail_rate=0.0)
    sandbox.store.add("late", {"external_id": "U1", "group_id": "12"}, "a.wav", 1, "0" * 64)

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 0

    assert status_of(ledger) == {"ext:U1": "succeeded"} and sandbox.store.count() == 1
