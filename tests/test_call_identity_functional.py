"""A call is a call (issue 17, item 1): identical audio bytes alone never fold two calls into one.

Three rules, in order: the same file unchanged is the same recording, whatever its row's
external_id now says; rows whose explicit external_ids differ are different calls, whatever
their audio; different files with identical audio are one call re-exported only when no
explicit external_id tells them apart and the call's own facts agree (call_date to the second,
caller_id, group_id). Short recordings of silence, tones and voicemail greetings are
byte-identical across many real calls, so each of these is a case users meet. Real HTTP to the
sandbox, real SQLite, real audio files.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from importer.cli.commands import main

from .conftest import SandboxThread
from .helpers import good_row, write_manifest

SILENCE = "call-0001-pcm8k.wav"


def run(manifest: Path, ledger: Path, *flags: str) -> int:
    return main(["run", str(manifest), "--ledger", str(ledger), "--rate", "1000", *flags])


def copies(workdir: Path, *names: str) -> list[str]:
    """Files with identical bytes (one recording copied under each name), as paths relative
    to the manifests' folder."""
    source = workdir / "sample_data" / SILENCE
    (workdir / "same").mkdir(exist_ok=True)
    for name in names:
        shutil.copy(source, workdir / "same" / name)
    return [f"../same/{name}" for name in names]


def rows_of(ledger: Path) -> dict[str, tuple[str, str | None, str | None]]:
    with sqlite3.connect(ledger) as conn:
        found = {k: (s, same, outcome) for k, s, same, outcome in conn.execute(
            "SELECT key, status, same_as, last_outcome FROM recordings")}
    conn.close()
    return found


def test_three_calls_with_identical_audio_and_distinct_external_ids_are_three_calls(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    files = copies(workdir, "a.wav", "b.wav", "c.wav")
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="S-1", recording_file=files[0], caller_id="6175550101",
                 call_date="2025-03-04T09:15:22-05:00"),
        good_row(external_id="S-2", recording_file=files[1], caller_id="6175550102",
                 call_date="2025-03-05T10:00:00-05:00"),
        good_row(external_id="S-3", recording_file=files[2], caller_id="6175550103",
                 call_date="2025-03-06T11:30:00-05:00")])

    assert run(manifest, workdir / "l.sqlite", "--concurrency", "1") == 0

    assert sorted(c.external_id or "" for c in sandbox.store.calls()) == ["S-1", "S-2", "S-3"]
    assert {s for s, _, _ in rows_of(workdir / "l.sqlite").values()} == {"succeeded"}
    out = capsys.readouterr().out
    assert "3 succeeded" in out
    assert "2 rows hold the same audio as another call" in out


def test_distinct_explicit_ids_are_distinct_calls_even_with_the_same_facts(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """Rule (b) before rule (c): two calls of one caller at one second, each with its own id."""
    files = copies(workdir, "a.wav", "b.wav")
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="T-1", recording_file=files[0]),
        good_row(external_id="T-2", recording_file=files[1])])

    assert run(manifest, workdir / "l.sqlite", "--concurrency", "2") == 0

    assert sandbox.store.count() == 2


def test_two_calls_without_external_ids_other_callers_and_days_are_two_calls(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    files = copies(workdir, "a.wav", "b.wav")
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="", recording_file=files[0], caller_id="6175550101",
                 call_date="2025-03-04T09:15:22-05:00"),
        good_row(external_id="", recording_file=files[1], caller_id="6175550102",
                 call_date="2025-03-05T09:15:22-05:00")])

    assert run(manifest, workdir / "l.sqlite", "--concurrency", "1") == 0

    assert sandbox.store.count() == 2


def test_one_fact_apart_is_another_call(workdir: Path, sandbox: SandboxThread,
                                        token_env: str) -> None:
    """Same audio, no ids, and the facts differ in one only: the second, the caller, the
    group. Each is its own call."""
    files = copies(workdir, "a.wav", "b.wav", "c.wav", "d.wav")
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="", recording_file=files[0]),
        good_row(external_id="", recording_file=files[1], call_date="2025-03-04T09:15:23-05:00"),
        good_row(external_id="", recording_file=files[2], caller_id="6175550199"),
        good_row(external_id="", recording_file=files[3], group_id="14")])

    assert run(manifest, workdir / "l.sqlite", "--concurrency", "1") == 0

    assert sandbox.store.count() == 4


def test_the_same_call_re_exported_under_a_new_path_is_not_sent_again(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Same audio, same facts (the date written in another zone: the same second), no id to
    tell them apart: the export was copied to another folder."""
    first, again = copies(workdir, "first.wav", "again.wav")
    ledger = workdir / "l.sqlite"
    night1 = write_manifest(workdir / "manifests" / "night1.csv", [
        good_row(external_id="", recording_file=first)])
    assert run(night1, ledger) == 0
    night2 = write_manifest(workdir / "manifests" / "night2.csv", [
        good_row(external_id="", recording_file=again, call_date="2025-03-04T14:15:22Z")])
    capsys.readouterr()

    assert run(night2, ledger) == 0

    assert sandbox.store.count() == 1
    first_key = f"file:{(workdir / 'same' / 'first.wav').resolve()}"
    again_key = f"file:{(workdir / 'same' / 'again.wav').resolve()}"
    assert rows_of(ledger)[again_key] == ("succeeded", first_key, "already imported")
    assert "1 row named a recording already imported" in capsys.readouterr().out


def test_an_explicit_id_and_an_id_less_row_of_the_same_call_are_one_call(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """No explicit id tells them apart (only one has one), and the facts agree."""
    first, again = copies(workdir, "first.wav", "again.wav")
    ledger = workdir / "l.sqlite"
    assert run(write_manifest(workdir / "manifests" / "n1.csv", [
        good_row(external_id="PBX-1", recording_file=first)]), ledger) == 0

    assert run(write_manifest(workdir / "manifests" / "n2.csv", [
        good_row(external_id="", recording_file=again)]), ledger) == 0

    assert sandbox.store.count() == 1


def test_a_re_export_that_renumbers_its_calls_imports_them_again(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """New explicit ids and new paths: by rule (b) these are other calls, though the audio
    and the facts are the same (docs/ledger.md says why: ids are the user's word)."""
    first, again = copies(workdir, "first.wav", "again.wav")
    ledger = workdir / "l.sqlite"
    assert run(write_manifest(workdir / "manifests" / "n1.csv", [
        good_row(external_id="A", recording_file=first)]), ledger) == 0

    assert run(write_manifest(workdir / "manifests" / "n2.csv", [
        good_row(external_id="B", recording_file=again)]), ledger) == 0

    assert sorted(c.external_id or "" for c in sandbox.store.calls()) == ["A", "B"]


def test_the_same_file_unchanged_under_a_new_id_is_still_not_sent(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """Rule (a) comes first: the sheet was edited, the file is the one imported."""
    (first,) = copies(workdir, "first.wav")
    ledger = workdir / "l.sqlite"
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="A", recording_file=first)])
    assert run(manifest, ledger) == 0

    write_manifest(manifest, [good_row(external_id="A-fixed", recording_file=first)])
    assert run(manifest, ledger) == 0

    assert sandbox.store.count() == 1
    assert rows_of(ledger)["ext:A-fixed"] == ("succeeded", "ext:A", "already imported")


def test_two_rows_of_one_run_of_the_same_call_send_one(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """Both in flight at once (slow API, two workers): one waits for the other."""
    sandbox.set_faults(latency=0.3)
    first, again = copies(workdir, "first.wav", "again.wav")
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="", recording_file=first),
        good_row(external_id="", recording_file=again)])
    ledger = workdir / "l.sqlite"

    assert run(manifest, ledger, "--concurrency", "2") == 0

    assert sandbox.store.count() == 1
    outcomes = sorted(o or "" for _, _, o in rows_of(ledger).values())
    assert outcomes == ["already imported", "succeeded"]


def test_the_waiting_row_of_the_same_call_is_sent_when_the_first_fails(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """The first row is refused for its own data (a campaign the account lacks, not one of
    the call's facts): the call is not imported, so the row that waited for it is sent."""
    first, again = copies(workdir, "first.wav", "again.wav")
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="", recording_file=first, campaign_id="999999"),
        good_row(external_id="", recording_file=again)])
    ledger = workdir / "l.sqlite"

    assert run(manifest, ledger, "--concurrency", "1") == 1

    assert sandbox.store.count() == 1
    assert sorted(s for s, _, _ in rows_of(ledger).values()) == ["failed", "succeeded"]


def test_validate_names_rows_of_one_call_and_not_rows_of_other_calls(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = copies(workdir, "a.wav", "b.wav", "c.wav")
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="", recording_file=files[0]),
        good_row(external_id="", recording_file=files[1]),
        good_row(external_id="", recording_file=files[2], caller_id="6175550199")])

    assert main(["validate", str(manifest), "--timezone", "UTC", "--concurrency", "1"]) == 0

    err = capsys.readouterr().err
    assert "row 3:" in err and "same call" in err
    assert "row 4:" not in err


def test_a_ledger_that_folded_distinct_calls_sends_them_after_the_upgrade(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """A ledger written before this rule recorded S-2 as 'already imported' as S-1 (the same
    audio, another call): after the upgrade the next run sends it; the alias of the same file
    (rule a) stays."""
    files = copies(workdir, "a.wav", "b.wav")
    ledger = workdir / "l.sqlite"
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="S-1", recording_file=files[0]),
        good_row(external_id="S-2", recording_file=files[1], caller_id="6175550102")])
    assert run(manifest, ledger) == 0
    assert sandbox.store.count() == 2
    sandbox.store.delete(next(c.call_id for c in sandbox.store.calls() if c.external_id == "S-2"))
    # What the earlier version left: S-2 folded into S-1, and no facts of the call kept.
    with sqlite3.connect(ledger) as conn:
        conn.execute("UPDATE recordings SET same_as = 'ext:S-1', last_outcome = "
                     "'already imported', fields = NULL WHERE key = 'ext:S-2'")
        conn.execute("DROP INDEX IF EXISTS recordings_audio_call")
        conn.execute("ALTER TABLE recordings DROP COLUMN call")
        conn.execute("CREATE INDEX recordings_sha256 ON recordings(sha256)")
        conn.execute("DELETE FROM migrations WHERE name = '0005_call_facts'")
    conn.close()

    assert run(manifest, ledger) == 0

    assert sorted(c.external_id or "" for c in sandbox.store.calls()) == ["S-1", "S-2"]
    assert rows_of(ledger)["ext:S-2"] == ("succeeded", None, "succeeded")
