"""A recording's identity survives what users do to their sheets and folders (issue 11, item 1):
an external_id column added or edited, a --map that yields one, two folders that both hold an
``a.wav``, the same audio exported twice, a ledger written before keys named the file itself.
And each attempt sends the bytes that were checked (item 5). Real HTTP to the sandbox (or, for
a fault the sandbox cannot stage, a small server of the test's own), real SQLite, real audio."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from importer.cli.commands import main
from importer.ledger.schema import MIGRATIONS

from .conftest import TOKEN, SandboxThread, distinct_copy, sha256_of
from .helpers import StandIn, good_row, write_manifest


def run(manifest: Path, ledger: Path, *flags: str) -> int:
    return main(["run", str(manifest), "--ledger", str(ledger), "--rate", "1000", *flags])


def stored(sandbox: SandboxThread) -> Counter[str]:
    """How many calls the API holds of each audio content."""
    return Counter(c.file_sha256 or "" for c in sandbox.store.calls())


def rows_of(ledger: Path) -> dict[str, tuple[str, str | None, str | None]]:
    with sqlite3.connect(ledger) as conn:
        found = {k: (s, same, outcome) for k, s, same, outcome in conn.execute(
            "SELECT key, status, same_as, last_outcome FROM recordings")}
    conn.close()
    return found


@pytest.fixture
def three(workdir: Path) -> list[dict[str, str]]:
    """Three rows without an external_id, each its own recording."""
    return [good_row(external_id="", recording_file=f"../sample_data/call-000{n}-"
                     f"{kind}.wav") for n, kind in ((1, "pcm8k"), (2, "ulaw8k"), (3, "alaw8k"))]


def test_adding_an_external_id_column_uploads_nothing_new(
        workdir: Path, sandbox: SandboxThread, token_env: str, three: list[dict[str, str]],
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", three)
    ledger = workdir / "ledger.sqlite"
    assert run(manifest, ledger) == 0
    assert sandbox.store.count() == 3
    capsys.readouterr()

    write_manifest(manifest, [{**r, "external_id": f"PBX-{i}"} for i, r in enumerate(three)])
    assert run(manifest, ledger) == 0

    assert sandbox.store.count() == 3
    assert "3 rows in" in capsys.readouterr().out
    by_key = rows_of(ledger)
    for i, r in enumerate(three):
        path = (workdir / "manifests" / r["recording_file"]).resolve()
        assert by_key[f"ext:PBX-{i}"] == ("succeeded", f"file:{path}", "already imported")
        assert by_key[f"file:{path}"][0] == "succeeded"
    # And a third run has nothing to do at all.
    assert run(manifest, ledger) == 0
    assert sandbox.store.count() == 3
    assert "Nothing to upload" in capsys.readouterr().out


def test_a_map_that_yields_an_external_id_uploads_nothing_new(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        three: list[dict[str, str]]) -> None:
    without = [{k: v for k, v in r.items() if k != "external_id"} for r in three]
    manifest = write_manifest(workdir / "manifests" / "m.csv",
                              [{**r, "Call Id": f"C{i}"} for i, r in enumerate(without)])
    ledger = workdir / "ledger.sqlite"
    assert run(manifest, ledger) == 0

    assert run(manifest, ledger, "--map", "Call Id=external_id") == 0

    assert sandbox.store.count() == 3


def test_editing_one_rows_external_id_does_not_upload_it_again(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        three: list[dict[str, str]]) -> None:
    rows = [{**r, "external_id": f"PBX-{i}"} for i, r in enumerate(three)]
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "ledger.sqlite"
    assert run(manifest, ledger) == 0

    rows[1]["external_id"] = "PBX-1-corrected"
    write_manifest(manifest, rows)
    assert run(manifest, ledger) == 0

    assert sandbox.store.count() == 3
    assert rows_of(ledger)["ext:PBX-1-corrected"] == ("succeeded", "ext:PBX-1",
                                                      "already imported")


def test_two_folders_a_wav_through_one_ledger_are_both_stored(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    ledger = workdir / "shared.sqlite"
    manifests = []
    for n, sample in ((1, "call-0001-pcm8k.wav"), (2, "call-0002-ulaw8k.wav")):
        folder = workdir / f"night{n}"
        folder.mkdir()
        shutil.copy(workdir / "sample_data" / sample, folder / "a.wav")
        manifests.append(write_manifest(folder / "m.csv", [
            good_row(external_id="", recording_file="a.wav")]))

    assert [run(m, ledger) for m in manifests] == [0, 0]

    assert stored(sandbox) == Counter({
        sha256_of(workdir / "night1" / "a.wav"): 1, sha256_of(workdir / "night2" / "a.wav"): 1})
    assert {k for k in rows_of(ledger)} == {
        f"file:{workdir / 'night1' / 'a.wav'}", f"file:{workdir / 'night2' / 'a.wav'}"}
    ids = {c.external_id for c in sandbox.store.calls()}
    assert len(ids) == 2  # each found again by its own derived external_id


def test_resume_trusts_size_and_mtime_instead_of_hashing_again(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        three: list[dict[str, str]]) -> None:
    """After the first run the file's bytes are changed behind the importer's back, its size
    and mtime restored: a run that re-hashed would see new audio and send it; one that trusts
    size and mtime for a file already seen sends nothing."""
    manifest = write_manifest(workdir / "manifests" / "m.csv", three)
    ledger = workdir / "ledger.sqlite"
    assert run(manifest, ledger) == 0
    path = workdir / "sample_data" / "call-0001-pcm8k.wav"
    before = path.stat()
    distinct_copy(path, path, 77)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    write_manifest(manifest, [{**r, "external_id": f"PBX-{i}"} for i, r in enumerate(three)])
    assert run(manifest, ledger) == 0

    assert sandbox.store.count() == 3


def _ledger_before_file_keys(ledger: Path, manifest: Path) -> sqlite3.Connection:
    """A ledger as the importer wrote it before migration 0004 (keys relative to the manifest's
    folder), with one run of ``manifest``; the caller adds its rows and closes it."""
    conn = sqlite3.connect(ledger, isolation_level=None)
    conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, script in MIGRATIONS[:3]:
        conn.executescript(script)
        conn.execute("INSERT INTO migrations VALUES (?, 't')", (name,))
    conn.execute("INSERT INTO runs (id, command, manifest, started_at) VALUES (1, 'run', ?, 't')",
                 (str(manifest),))
    return conn


def test_a_ledger_with_relative_file_keys_is_upgraded_and_not_sent_again(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        three: list[dict[str, str]]) -> None:
    """A ledger written before keys named the file itself (``file:`` and the path relative to
    the manifest's folder): its keys become absolute, so its rows are still done."""
    manifest = write_manifest(workdir / "manifests" / "m.csv", three)
    ledger = workdir / "old.sqlite"
    conn = _ledger_before_file_keys(ledger, manifest)
    for n, r in enumerate(three, start=2):
        key = "file:" + r["recording_file"]
        conn.execute("INSERT INTO recordings (key, external_id, manifest, row_number, source, "
                     "status, attempts, run_id, updated_at) VALUES (?, ?, ?, ?, ?, "
                     "'succeeded', 1, 1, 't')", (key, f"cvzimp-old{n}", str(manifest), n,
                                                   r["recording_file"]))
        conn.execute("INSERT INTO attempts (key, run_id, started_at, outcome) VALUES "
                     "(?, 1, 't', 'succeeded')", (key,))
    conn.close()

    assert run(manifest, ledger) == 0

    assert sandbox.store.count() == 0
    keys = set(rows_of(ledger))
    assert keys == {f"file:{(workdir / 'manifests' / r['recording_file']).resolve()}"
                    for r in three}
    with sqlite3.connect(ledger) as conn:
        assert {k for (k,) in conn.execute("SELECT key FROM attempts")} == keys
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()


def test_a_crash_leftover_is_looked_up_by_the_external_id_it_was_sent_with(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """The old ledger's row was sent with an external_id derived from its old key; the call is
    found by that id, not by the one derived from the key now, and is not sent again."""
    rows = [good_row(external_id="")]
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)
    ledger = workdir / "old.sqlite"
    conn = _ledger_before_file_keys(ledger, manifest)
    conn.execute("INSERT INTO recordings (key, external_id, manifest, row_number, source, "
                  "status, attempts, fingerprint, run_id, updated_at) VALUES (?, "
                  "'cvzimp-sent-before-the-crash', ?, 2, 'x', 'uploading', 0, 'f', 1, 't')",
                  ("file:" + rows[0]["recording_file"], str(manifest)))
    conn.close()
    sandbox.store.add("before-crash", {"external_id": "cvzimp-sent-before-the-crash",
                                       "group_id": "12"}, "a.wav", 1, "0" * 64)

    assert run(manifest, ledger) == 0

    assert sandbox.store.count() == 1
    assert set(rows_of(ledger).values()) == {("succeeded", None, "reconciled")}


# --- item 5: each attempt sends the bytes that were checked -----------------------------------

class ChangingServer(StandIn):
    """While answering the first upload (500, before storing it), it empties the recording,
    as another process might during the backoff. Lookups answer "no records found." (the
    first attempt did not arrive)."""

    def __init__(self, victim: Path) -> None:
        super().__init__()
        self.victim = victim
        self.uploads: list[int] = []  # bytes of each upload body received

    async def upload(self, request: web.Request) -> web.Response:
        self.uploads.append(len(await request.read()))
        if len(self.uploads) == 1:
            self.victim.write_bytes(b"")
            return web.json_response({"statusCode": 500, "message": "try again"}, status=500)
        return web.Response(status=200)


@pytest.fixture
def changing(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ChangingServer]:
    with ChangingServer(workdir / "sample_data" / "call-0001-pcm8k.wav") as server:
        monkeypatch.setenv("CONVIRZA_API_URL", server.url)
        monkeypatch.setenv("CONVIRZA_TOKEN", TOKEN)
        monkeypatch.setenv("CONVIRZA_TIMEZONE", "UTC")
        yield server


def test_a_file_emptied_during_a_backoff_is_not_sent_and_the_row_fails(
        workdir: Path, changing: ChangingServer, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [good_row()])
    ledger = workdir / "ledger.sqlite"

    code = run(manifest, ledger, "--backoff-base", "0.01")

    assert code == 1
    assert len(changing.uploads) == 1  # the retry never left
    with sqlite3.connect(ledger) as conn:
        status, error, size = conn.execute(
            "SELECT status, error, size FROM recordings").fetchone()
    conn.close()
    assert status == "failed"
    assert "changed since it was checked (84,036 bytes then, 0 now); not sent" in error
    assert size == 84036
    assert "changed since it was checked" in capsys.readouterr().err


def test_a_file_that_holds_other_audio_under_a_done_name_is_not_passed_over(
        workdir: Path, sandbox: SandboxThread, token_env: str, three: list[dict[str, str]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Rows known by their path alone: a nightly export that reuses a file name for another
    call is neither lost as "done" nor sent under the done call's key; a file merely touched
    is still done. With external_ids the new call goes."""
    manifest = write_manifest(workdir / "manifests" / "m.csv", three)
    ledger = workdir / "ledger.sqlite"
    assert run(manifest, ledger) == 0
    reused = workdir / "sample_data" / "call-0001-pcm8k.wav"
    distinct_copy(reused, reused, 99)  # other audio, same name
    touched = workdir / "sample_data" / "call-0002-ulaw8k.wav"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    capsys.readouterr()

    assert run(manifest, ledger) == 1

    assert sandbox.store.count() == 3
    captured = capsys.readouterr()
    assert f"row 2: ../sample_data/call-0001-pcm8k.wav holds other audio than when it was " \
           f"imported (as file:{reused}): not sent" in captured.err
    assert "call-0002" not in captured.err
    assert "2 skipped, 1 unresolved" in captured.out
    assert rows_of(ledger)[f"file:{reused}"][0] == "succeeded"

    write_manifest(manifest, [{**r, "external_id": f"PBX-{i}"} for i, r in enumerate(three)])
    assert run(manifest, ledger) == 0
    assert sandbox.store.count() == 4
    assert stored(sandbox)[sha256_of(reused)] == 1
