"""What is sent is what was checked (issue 18, items 1-3): a recording that changes while it is
streamed is never received whole by the API; paths resolve as the operating system resolves
them; a manifest still being written is refused. Real HTTP on loopback (the sandbox, or a
stand-in for a fault the sandbox cannot stage), real files."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import sqlite3
import unicodedata
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from importer.audio.probing import probe
from importer.cli.commands import main
from importer.errors import AudioError, MachineError

from .conftest import TOKEN, SandboxThread, sample_files, sha256_of
from .helpers import StandIn, good_row, many_rows, write_manifest

#: Bigger than the socket buffers between client and server on loopback, so that the client
#: is still reading the file when the server changes it.
BIG_SECONDS = 900  # 8 kHz 16-bit mono: 14.4 MB


def big_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(range(256)) * (BIG_SECONDS * 8000 * 2 // 256))
    return path


class ChangingWhileRead(StandIn):
    """On each upload, before it reads the body, it does ``change`` to the recording (as
    another process writing the file would), then reads what arrives."""

    def __init__(self, change: Callable[[], None]) -> None:
        super().__init__()
        self.change = change
        self.bodies: list[int | str] = []  # bytes received whole, or why the body broke

    async def upload(self, request: web.Request) -> web.StreamResponse:
        self.change()
        try:
            body = await request.read()
        except Exception as exc:  # the client gave up half-way: what a real API would see
            self.bodies.append(type(exc).__name__)
            raise
        self.bodies.append(len(body))
        return web.Response(status=200)


@pytest.fixture
def recording(workdir: Path) -> Path:
    return big_wav(workdir / "sample_data" / "big.wav")


@contextlib.contextmanager
def serve(change: Callable[[], None],
          monkeypatch: pytest.MonkeyPatch) -> Iterator[ChangingWhileRead]:
    with ChangingWhileRead(change) as server:
        monkeypatch.setenv("CONVIRZA_API_URL", server.url)
        monkeypatch.setenv("CONVIRZA_TOKEN", TOKEN)
        monkeypatch.setenv("CONVIRZA_TIMEZONE", "UTC")
        yield server


def row_of(ledger: Path) -> tuple[str, str | None]:
    with sqlite3.connect(ledger) as conn:
        found = conn.execute("SELECT status, error FROM recordings").fetchone()
    conn.close()
    return found


def test_a_recording_truncated_while_it_is_sent_never_arrives_whole(
        workdir: Path, recording: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    size = recording.stat().st_size

    def truncate() -> None:
        with recording.open("r+b") as handle:
            handle.truncate(100_000)

    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(recording_file="../sample_data/big.wav")])
    ledger = workdir / "l.sqlite"

    with serve(truncate, monkeypatch) as server:
        code = main(["run", str(manifest), "--ledger", str(ledger), "--max-attempts", "1"])

    assert code == 1
    assert all(body != size and not (isinstance(body, int) and body > size)
               for body in server.bodies), server.bodies
    status, error = row_of(ledger)
    assert status == "failed"
    assert error is not None and "changed while it was sent" in error
    assert "changed while it was sent" in capsys.readouterr().err


def test_a_recording_rewritten_in_place_while_it_is_sent_never_arrives_whole(
        workdir: Path, recording: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same size, same modification time, other bytes near its end: only the hash of what
    was read tells, and the last piece is held back until it does."""
    stat = recording.stat()

    def rewrite() -> None:
        with recording.open("r+b") as handle:
            handle.seek(-1000, os.SEEK_END)
            handle.write(b"\x01" * 1000)
        os.utime(recording, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(recording_file="../sample_data/big.wav")])
    ledger = workdir / "l.sqlite"

    with serve(rewrite, monkeypatch) as server:
        assert main(["run", str(manifest), "--ledger", str(ledger),
                     "--max-attempts", "1"]) == 1

    assert stat.st_size not in server.bodies, server.bodies
    status, error = row_of(ledger)
    assert status == "failed" and error is not None and "changed while it was sent" in error


# --- item 2: paths as the operating system resolves them ---------------------------------------

def test_a_path_through_a_symlinked_folder_and_dotdot_names_the_file_the_system_opens(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """``lnk/../x.wav`` is ``x.wav`` beside the folder the link points to, not beside the
    link: the text alone would upload another recording and call the right one a duplicate."""
    (workdir / "real" / "sub").mkdir(parents=True)
    (workdir / "lnk").symlink_to(workdir / "real" / "sub")
    right = shutil.copy(workdir / "sample_data" / "call-0001-pcm8k.wav", workdir / "real" / "x.wav")
    shutil.copy(workdir / "sample_data" / "call-0002-ulaw8k.wav", workdir / "x.wav")
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(recording_file="../lnk/../x.wav")])

    assert main(["run", str(manifest), "--ledger", str(workdir / "l.sqlite")]) == 0

    assert [c.file_sha256 for c in sandbox.store.calls()] == [sha256_of(Path(right))]


def test_a_name_written_in_the_other_unicode_normalization_is_found(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    """The sheet says José in one code point (NFC, as most editors write it); the disk holds
    José as e and a combining accent (NFD, as macOS exports write it)."""
    on_disk = workdir / "sample_data" / unicodedata.normalize("NFD", "José.wav")
    shutil.copy(workdir / "sample_data" / "call-0001-pcm8k.wav", on_disk)
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(recording_file="../sample_data/" + unicodedata.normalize("NFC", "José.wav"))])

    assert main(["run", str(manifest), "--ledger", str(workdir / "l.sqlite")]) == 0

    assert [c.file_sha256 for c in sandbox.store.calls()] == [sha256_of(on_disk)]


def test_too_many_open_files_is_the_machines_problem_not_the_rows(tmp_path: Path) -> None:
    """Out of file descriptors, a recording cannot be opened: that says nothing of the row
    (it must not become invalid, which counts against --max-errors and which retry skips)."""
    path = shutil.copy(sample_files()[0], tmp_path / "a.wav")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no descriptor left
    try:
        with pytest.raises(MachineError, match="too many open files") as caught:
            probe(Path(path), 10**9)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert not isinstance(caught.value, AudioError)


# --- item 1: --min-age, and item 3: a manifest still being written -----------------------------

def test_min_age_leaves_a_recording_still_being_written_for_the_next_run(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    old = workdir / "sample_data" / "call-0001-pcm8k.wav"
    os.utime(old, (1_600_000_000, 1_600_000_000))
    new = shutil.copy(workdir / "sample_data" / "call-0002-ulaw8k.wav",
                      workdir / "sample_data" / "just-now.wav")
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="OLD"),
        good_row(external_id="NEW", recording_file="../sample_data/just-now.wav")])
    ledger = workdir / "l.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger), "--min-age", "1h"]) == 0

    assert [c.external_id for c in sandbox.store.calls()] == ["OLD"]
    out = capsys.readouterr().out
    assert "1 recording modified within --min-age 1h was left for the next run" in out
    with sqlite3.connect(ledger) as conn:
        assert dict(conn.execute("SELECT key, status FROM recordings")) == {
            "ext:OLD": "succeeded", "ext:NEW": "pending"}
    conn.close()
    os.utime(new, (1_600_000_000, 1_600_000_000))
    assert main(["run", str(manifest), "--ledger", str(ledger), "--min-age", "1h"]) == 0
    assert sorted(c.external_id or "" for c in sandbox.store.calls()) == ["NEW", "OLD"]


def test_a_manifest_whose_last_line_is_cut_and_fresh_is_refused(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An export picked up while it is written: its last line, cut mid-value, must not be
    imported as a row (``wr-00`` for ``wr-0002``)."""
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="wr-0001"), good_row(external_id="wr-0002")])
    text = manifest.read_text()
    manifest.write_text(text[:text.rindex("wr-0002") + len("wr-00")])
    ledger = workdir / "l.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "still being written?" in err
    assert sandbox.store.count() == 0
    # Finished long ago, the same file is a manifest like any other: its cut row is invalid.
    os.utime(manifest, (1_600_000_000, 1_600_000_000))
    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1
    assert [c.external_id for c in sandbox.store.calls()] == ["wr-0001"]


class AppendingOnUpload(StandIn):
    """A manifest grows while it is read: the first upload appends a row to it."""

    def __init__(self, manifest: Path) -> None:
        super().__init__()
        self.manifest = manifest
        self.uploads = 0

    async def upload(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.uploads += 1
        if self.uploads == 1:
            with self.manifest.open("a") as handle:
                handle.write(",".join(["late"] * 6) + "\n")
        return web.Response(status=200)


def test_a_manifest_that_changes_while_it_is_read_stops_the_run_in_one_line(
        workdir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 12))
    os.utime(manifest, (1_600_000_000, 1_600_000_000))
    monkeypatch.setenv("CONVIRZA_CHUNK_ROWS", "3")
    with AppendingOnUpload(manifest) as server:
        monkeypatch.setenv("CONVIRZA_API_URL", server.url)
        monkeypatch.setenv("CONVIRZA_TOKEN", TOKEN)
        monkeypatch.setenv("CONVIRZA_TIMEZONE", "UTC")
        code = main(["run", str(manifest), "--ledger", str(workdir / "l.sqlite"),
                     "--concurrency", "1", "--find-existing", "never"])

    assert code == 2
    err = capsys.readouterr().err
    assert "changed while it was read" in err
    assert err.count("convirza-import: error:") == 1
