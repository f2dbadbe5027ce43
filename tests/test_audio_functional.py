"""The audio checks inside real runs: sha256 and size in the ledger, the same content under
two rows, --max-recording-duration, and recording URLs checked against a real HTTP server on
loopback (a stand-in for the store that hosts the recordings, beside the API's sandbox)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from importer.audio.urls import UrlAnswer, judge_url_answer
from importer.cli.commands import main
from importer.client.session import ConvirzaClient
from importer.errors import AudioError, TransportError
from importer.settings.resolve import Settings

from .conftest import SandboxThread, sample_files, sha256_of
from .helpers import write_manifest

CORPUS = Path(__file__).resolve().parent / "audio_corpus"
MP3 = (CORPUS / "mpeg1-cbr-notag.mp3").read_bytes()
WAV = (CORPUS / "pcm-8k-mono.wav").read_bytes()


def row(external_id: str, **source: str) -> dict[str, str]:
    return {"external_id": external_id, "call_date": "2025-03-04T09:15:22-05:00",
            "group_id": "12", "caller_id": "6175550142", "recording_file": "",
            "recording_url": "", **source}


def run(manifest: Path, ledger: Path, *flags: str) -> int:
    """``convirza-import run`` with a rate that keeps the tests quick."""
    return main(["run", str(manifest), "--ledger", str(ledger), "--rate", "1000", *flags])


def ledger_rows(ledger: Path) -> dict[str, tuple[str, str | None, int | None, str | None]]:
    with sqlite3.connect(ledger) as conn:
        found = {r[0]: r[1:] for r in conn.execute(
            "SELECT key, status, sha256, size, error FROM recordings")}
    conn.close()
    return found


# --- files: sha256, duplicates, duration -------------------------------------------------------

def test_ledger_keeps_each_files_sha256_and_size(workdir: Path, sandbox: SandboxThread,
                                                 token_env: str) -> None:
    ledger = workdir / "ledger.sqlite"
    assert run(workdir / "manifests" / "sample.csv", ledger) == 0

    stored = {(sha, size) for _, sha, size, _ in ledger_rows(ledger).values()}
    assert stored == {(sha256_of(p), p.stat().st_size) for p in sample_files()}


@pytest.fixture
def twin_manifest(workdir: Path) -> Path:
    """Rows 2 and 3 hold one call (the same recording under two names, the same facts, no
    external_id to tell them apart); row 4 another one."""
    shutil.copy(workdir / "sample_data" / "call-0001-pcm8k.wav",
                workdir / "sample_data" / "copy of 0001.wav")
    return write_manifest(workdir / "manifests" / "m.csv", [
        row("", recording_file="../sample_data/call-0001-pcm8k.wav"),
        row("", recording_file="../sample_data/copy of 0001.wav"),
        row("X-3", recording_file="../sample_data/call-0005-cbr.mp3"),
    ])


def key_of(workdir: Path, name: str) -> str:
    return f"file:{(workdir / 'sample_data' / name).resolve()}"


def test_same_call_in_one_run_is_sent_once(twin_manifest: Path, workdir: Path,
                                           sandbox: SandboxThread, token_env: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    ledger = workdir / "ledger.sqlite"

    code = run(twin_manifest, ledger, "--concurrency", "1")

    assert code == 0
    assert sandbox.store.count() == 2
    sha = sha256_of(workdir / "sample_data" / "call-0001-pcm8k.wav")
    copy = (workdir / "sample_data" / "copy of 0001.wav").resolve()
    first = key_of(workdir, "call-0001-pcm8k.wav")
    captured = capsys.readouterr()
    assert f"row 3: {copy}: the same call (the same audio, date, caller and group) is already " \
           f"imported, as {first} (row 2); not sent again (--send-same-audio sends it)" \
           in captured.err
    assert "1 already imported, 2 succeeded" in captured.out
    with sqlite3.connect(ledger) as conn:
        twin = conn.execute("SELECT status, sha256, same_as, last_outcome, attempts FROM "
                            "recordings WHERE key = ?",
                            (key_of(workdir, "copy of 0001.wav"),)).fetchone()
    assert twin == ("succeeded", sha, first, "already imported", 0)


def test_send_same_audio_sends_it_with_a_warning(twin_manifest: Path, workdir: Path,
                                                 sandbox: SandboxThread, token_env: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ledger = workdir / "ledger.sqlite"

    code = run(twin_manifest, ledger, "--concurrency", "1", "--send-same-audio")

    assert code == 0 and sandbox.store.count() == 3
    sha = sha256_of(workdir / "sample_data" / "call-0001-pcm8k.wav")
    copy = (workdir / "sample_data" / "copy of 0001.wav").resolve()
    first = key_of(workdir, "call-0001-pcm8k.wav")
    captured = capsys.readouterr()
    assert f"row 3: {copy}: same call as row 2 ({first}): the same audio (sha256 " \
           f"{sha[:12]}...), date, caller and group, already uploaded; sending it anyway " \
           "(--send-same-audio)" in captured.err
    assert "1 row is the same call as another row (the same audio, date, caller and group): " \
           "sent anyway (--send-same-audio)." in captured.out
    rows = ledger_rows(ledger)
    assert rows[first][:2] == rows[key_of(workdir, "copy of 0001.wav")][:2] == ("succeeded", sha)


def test_validate_finds_the_same_call_within_its_manifest(
        twin_manifest: Path, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """validate keeps no ledger rows, yet compares the files of its own run."""
    assert main(["validate", str(twin_manifest), "--timezone", "UTC",
                 "--concurrency", "1"]) == 0
    captured = capsys.readouterr()
    assert f"as row 2 ({key_of(workdir, 'call-0001-pcm8k.wav')}): the same audio" in captured.err
    assert "not sent yet; run sends only one of them" in captured.err
    assert "1 row is the same call as another row (the same audio, date, caller and group): " \
           "run sends one of them." in captured.out


def test_same_call_is_found_in_an_earlier_nights_manifest(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The second night names the call by id; the first did not: no two explicit ids tell
    them apart, and the facts agree."""
    ledger = workdir / "ledger.sqlite"
    night1 = write_manifest(workdir / "manifests" / "night1.csv", [
        row("", recording_file="../sample_data/call-0005-cbr.mp3")])
    assert run(night1, ledger) == 0
    shutil.copy(workdir / "sample_data" / "call-0005-cbr.mp3",
                workdir / "sample_data" / "export-again.mp3")
    night2 = write_manifest(workdir / "manifests" / "night2.csv", [
        row("N2-7", recording_file="../sample_data/export-again.mp3")])
    capsys.readouterr()

    assert run(night2, ledger) == 0

    assert sandbox.store.count() == 1
    first = key_of(workdir, "call-0005-cbr.mp3")
    assert f"already imported, as {first} (row 2 of night1.csv)" in capsys.readouterr().err
    with sqlite3.connect(ledger) as conn:
        assert conn.execute("SELECT status, same_as FROM recordings WHERE key = 'ext:N2-7'"
                            ).fetchone() == ("succeeded", first)


def test_max_duration_refuses_long_recordings(workdir: Path, sandbox: SandboxThread,
                                              token_env: str) -> None:
    ledger = workdir / "ledger.sqlite"
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        row("X-1", recording_file="../sample_data/call-0004-stereo16k.wav")])

    assert run(manifest, ledger, "--max-recording-duration", "2s") == 1

    status, _, _, error = ledger_rows(ledger)["ext:X-1"]
    assert status == "invalid" and sandbox.store.count() == 0
    assert error is not None and "over the limit of 0:00:02 (--max-recording-duration)" in error


# --- recording URLs ----------------------------------------------------------------------------

async def _recording(request: web.Request) -> web.StreamResponse:
    """A store of recordings, with the habits real ones have."""
    name = request.match_info["name"]
    if name == "ok.mp3":
        return web.Response(body=MP3, content_type="audio/mpeg")
    if name == "presigned.wav":  # signed for GET only, as S3 presigned URLs are
        if request.method != "GET":
            return web.Response(status=403, text="SignatureDoesNotMatch")
        if request.headers.get("Range") == "bytes=0-0":
            return web.Response(status=206, body=WAV[:1], content_type="audio/wav",
                                headers={"Content-Range": f"bytes 0-0/{len(WAV)}"})
        return web.Response(body=WAV, content_type="audio/wav")
    if name == "expired.mp3":  # an expired link sends you to a login page
        raise web.HTTPFound("/login")
    if name == "voicemail.mp3":
        return web.Response(body=b"OggS" + bytes(100), content_type="audio/ogg")
    if name == "huge.mp3":
        resp = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        resp.content_length = 60_000_000
        await resp.prepare(request)
        if request.method == "GET":
            await resp.write(MP3)  # never read: the check asks for headers only
        return resp
    raise web.HTTPNotFound()


async def _login(request: web.Request) -> web.Response:
    return web.Response(text="<html>Sign in</html>", content_type="text/html")


class HostThread:
    """An aiohttp app served from a background thread's loop, so that the synchronous command
    line can run against it in the test's thread."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _start(self) -> str:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def __enter__(self) -> HostThread:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def host() -> Iterator[str]:
    app = web.Application()
    app.router.add_route("*", "/calls/{name}", _recording)
    app.router.add_get("/login", _login)
    with HostThread(app) as server:
        yield server.url


async def test_check_url_asks_the_server_without_fetching(host: str) -> None:
    settings = Settings.load({"api_url": "http://127.0.0.1:9", "token": "tok"}, environ={})
    async with ConvirzaClient(settings) as client:
        answers = {name: await client.check_url(f"{host}/calls/{name}") for name in (
            "ok.mp3", "presigned.wav", "gone.mp3", "expired.mp3", "voicemail.mp3", "huge.mp3")}
    assert answers == {
        "ok.mp3": UrlAnswer("HEAD", 200, "audio/mpeg", len(MP3)),
        "presigned.wav": UrlAnswer("GET", 206, "audio/wav", len(WAV)),  # HEAD got 403
        "gone.mp3": UrlAnswer("HEAD", 404, "text/plain", None),  # the page's size, not a file's
        "expired.mp3": UrlAnswer("HEAD", 200, "text/html", 20),  # after the redirect
        "voicemail.mp3": UrlAnswer("HEAD", 200, "audio/ogg", 104),
        "huge.mp3": UrlAnswer("HEAD", 200, "audio/mpeg", 60_000_000),
    }


async def test_check_url_that_cannot_be_reached() -> None:
    settings = Settings.load({"api_url": "http://127.0.0.1:9", "token": "tok",
                              "connect_timeout": 5.0}, environ={})
    async with ConvirzaClient(settings) as client:
        with pytest.raises(TransportError, match="cannot connect"):
            await client.check_url("http://127.0.0.1:9/calls/a.mp3")


@pytest.mark.parametrize(("answer", "reason"), [
    (UrlAnswer("HEAD", 404, "text/plain", 14), "URL is not available: HEAD answered HTTP 404"),
    (UrlAnswer("GET", 403, "application/xml", None),
     "URL is not available: GET answered HTTP 403"),
    (UrlAnswer("HEAD", 200, "text/html", 20), "URL serves text/html, not audio"),
    (UrlAnswer("HEAD", 200, "application/json", 2), "URL serves application/json, not audio"),
    (UrlAnswer("HEAD", 200, "image/png", 2000), "URL serves image/png, not audio"),
    (UrlAnswer("HEAD", 200, "audio/ogg", 104), "URL serves audio/ogg; the API takes mp3 or wav"),
    (UrlAnswer("HEAD", 200, "audio/mpeg", 0), "URL serves an empty file (0 bytes)"),
    (UrlAnswer("HEAD", 200, "audio/mpeg", 60_000_000),
     "URL serves 60,000,000 bytes, over the limit of 50,000,000 (--max-file-size)"),
    (UrlAnswer("HEAD", 200, "audio/mpeg", 1000), None),
    (UrlAnswer("GET", 206, "audio/x-wav", 1000), None),
    (UrlAnswer("HEAD", 200, "application/octet-stream", None), None),  # generic: passes
    (UrlAnswer("HEAD", 204, None, None), None),
])
def test_judge_url_answer(answer: UrlAnswer, reason: str | None) -> None:
    url = "https://store.test/calls/a.mp3"
    if reason is None:
        judge_url_answer(url, answer, 50_000_000)
        return
    with pytest.raises(AudioError) as caught:
        judge_url_answer(url, answer, 50_000_000)
    assert (caught.value.path, caught.value.reason) == (url, reason)


@pytest.fixture
def url_manifest(workdir: Path, host: str) -> Path:
    return write_manifest(workdir / "manifests" / "urls.csv", [
        row("U-1", recording_url=f"{host}/calls/ok.mp3"),
        row("U-2", recording_url=f"{host}/calls/presigned.wav"),
        row("U-3", recording_url=f"{host}/calls/gone.mp3"),
        row("U-4", recording_url=f"{host}/calls/expired.mp3"),
        row("U-5", recording_url=f"{host}/calls/voicemail.mp3"),
        row("U-6", recording_url=f"{host}/calls/huge.mp3"),
        row("U-7", recording_url="https://store.test/calls/voicemail.ogg"),
        row("U-8", recording_url="https://store.test/calls/call 12.mp3"),
        row("U-9", recording_url="http://127.0.0.1:9/calls/nobody-listens.mp3"),
    ])


URL_REASONS = {
    "ext:U-3": "URL is not available: HEAD answered HTTP 404",
    "ext:U-4": "URL serves text/html, not audio",
    "ext:U-5": "URL serves audio/ogg; the API takes mp3 or wav",
    "ext:U-6": "URL serves 60,000,000 bytes, over the limit of 50,000,000 (--max-file-size)",
    "ext:U-7": "URL names a .ogg file; the API takes mp3 or wav",
    "ext:U-8": "URL contains spaces or control characters (encode them as %20)",
    "ext:U-9": "cannot check the URL: cannot connect to 127.0.0.1:9",
}


def test_url_form_is_checked_without_asking_the_server(url_manifest: Path, workdir: Path,
                                                       sandbox: SandboxThread,
                                                       token_env: str) -> None:
    ledger = workdir / "ledger.sqlite"

    assert run(url_manifest, ledger) == 1

    invalid = {k for k, (status, *_) in ledger_rows(ledger).items() if status == "invalid"}
    assert invalid == {"ext:U-7", "ext:U-8"}
    assert sandbox.store.count() == 7


def test_check_urls_refuses_what_the_server_will_not_serve(url_manifest: Path, workdir: Path,
                                                           sandbox: SandboxThread,
                                                           token_env: str) -> None:
    ledger = workdir / "ledger.sqlite"

    assert run(url_manifest, ledger, "--check-urls") == 1

    rows = ledger_rows(ledger)
    assert {k for k, (status, *_) in rows.items() if status == "succeeded"} == {"ext:U-1",
                                                                               "ext:U-2"}
    for key, reason in URL_REASONS.items():
        status, _, _, error = rows[key]
        assert status == "invalid" and error is not None and reason in error, (key, error)
    assert sorted(c.external_id or "" for c in sandbox.store.calls()) == ["U-1", "U-2"]


def test_validate_checks_urls_and_sends_nothing(url_manifest: Path, sandbox: SandboxThread,
                                                token_env: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(url_manifest), "--check-urls"]) == 1

    assert sandbox.store.count() == 0
    out = capsys.readouterr().out
    assert "2 valid" in out and "7 invalid" in out
