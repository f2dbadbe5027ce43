"""The client against real servers on loopback: the sandbox, a port nobody listens on, and a
server that hangs up. Every aiohttp failure comes out as one of our errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from importer.audio.probing import probe
from importer.client.session import ConvirzaClient, translate
from importer.errors import ApiError, AuthError, RequestTimeout, TransportError
from importer.manifest.call_dates import RowContext
from importer.manifest.records import UploadRecord, validate_row
from importer.sandbox import SandboxConfig, start
from importer.settings.resolve import Settings

from .conftest import SAMPLES, sha256_of

CTX = RowContext(base_dir=SAMPLES, zone=ZoneInfo("UTC"), now=datetime.now(UTC))


def record(**extra: str) -> UploadRecord:
    values = {"call_date": "2025-03-04T09:15:22-05:00", "group_id": "12",
              "caller_id": "6175550142", "external_id": "C-1", **extra}
    return validate_row(values, CTX)


@pytest.fixture
async def sandbox_url() -> AsyncIterator[tuple[str, object]]:
    runner, url = await start(SandboxConfig(static_tokens=frozenset({"tok"})))
    yield url, runner.app
    await runner.cleanup()


def settings(url: str, **extra: object) -> Settings:
    return Settings.load({"api_url": url, "token": "tok", "rate": 1000.0, **extra}, environ={})


async def test_file_upload_streams_the_file(sandbox_url: tuple[str, object]) -> None:
    url, app = sandbox_url
    path = SAMPLES / "call-0004-stereo16k.wav"
    async with ConvirzaClient(settings(url)) as client:
        answer = await client.upload(record(recording_file=str(path)), probe(path, 10**8))
    assert answer.status == 200
    from importer.sandbox import STORE
    [call] = app[STORE].calls()  # type: ignore[index]
    assert call.file_sha256 == sha256_of(path) and call.file_name == path.name


async def test_url_row_is_sent_as_multipart(sandbox_url: tuple[str, object]) -> None:
    url, _ = sandbox_url
    async with ConvirzaClient(settings(url)) as client:
        answer = await client.upload(record(recording_url="https://x.test/a.mp3"), None)
    assert answer.status == 200


async def test_refused_token(sandbox_url: tuple[str, object]) -> None:
    url, _ = sandbox_url
    s = Settings.load({"api_url": url, "token": "wrong-token-value"}, environ={})
    async with ConvirzaClient(s) as client:
        with pytest.raises(AuthError) as caught:
            await client.upload(record(recording_url="https://x.test/a.mp3"), None)
    assert caught.value.status == 401
    assert "wrong-token-value" not in str(caught.value) + repr(caught.value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_nobody_listening_is_a_known_not_sent_failure() -> None:
    async with ConvirzaClient(settings(f"http://127.0.0.1:{free_port()}")) as client:
        with pytest.raises(TransportError) as caught:
            await client.upload(record(recording_url="https://x.test/a.mp3"), None)
    assert caught.value.outcome_unknown is False
    assert "cannot connect" in str(caught.value)


async def hang_up_server(read_first: bool) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if read_first:
            await reader.read(65536)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def test_hang_up_after_the_body_is_an_unknown_outcome() -> None:
    server, url = await hang_up_server(read_first=True)
    async with server, ConvirzaClient(settings(url)) as client:
        with pytest.raises(TransportError) as caught:
            await client.upload(record(recording_url="https://x.test/a.mp3"), None)
    assert caught.value.outcome_unknown is True


async def test_read_timeout_is_a_request_timeout() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server, ConvirzaClient(settings(url, read_timeout=0.2)) as client:
        with pytest.raises(RequestTimeout) as caught:
            await client.upload(record(recording_url="https://x.test/a.mp3"), None)
    assert isinstance(caught.value, TimeoutError) and caught.value.outcome_unknown


def all_aiohttp_client_errors() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for name in aiohttp.client_exceptions.__all__:
        cls = getattr(aiohttp.client_exceptions, name)
        if isinstance(cls, type) and issubclass(cls, aiohttp.ClientError):
            found.append(cls)
    return found


@pytest.mark.parametrize("cls", all_aiohttp_client_errors(), ids=lambda c: c.__name__)
def test_every_aiohttp_error_is_translated(cls: type[BaseException]) -> None:
    exc = instance_of(cls)
    translated = translate(exc, body_sent=True)
    assert isinstance(translated, ApiError)


def instance_of(cls: type[BaseException]) -> BaseException:
    """Build an instance however the class wants its arguments."""
    from unittest.mock import Mock  # a stand-in for aiohttp's own arguments, not our code

    info = aiohttp.RequestInfo(url=Mock(), method="POST", headers=Mock(), real_url=Mock())
    conn_key = Mock(host="h", port=1, ssl=False)
    for args in ((), ("message",), (conn_key, OSError(1, "x")),
                 (conn_key, OSError(1, "x"), "cert"), (info, ()), ("url", "reason"),
                 (b"a", b"b", "h", 1)):
        try:
            return cls(*args)
        except (TypeError, AttributeError):
            continue
    raise AssertionError(f"cannot build {cls.__name__}")


def test_timeouts_and_os_errors_are_translated() -> None:
    assert isinstance(translate(TimeoutError(), body_sent=True), RequestTimeout)
    assert translate(ConnectionResetError(), body_sent=True).outcome_unknown is True
    assert translate(ConnectionResetError(), body_sent=False).outcome_unknown is False
    with pytest.raises(TypeError):
        translate(ValueError("not a transport problem"), body_sent=True)


def test_missing_credentials_is_a_usage_error(tmp_path: Path) -> None:
    from importer.errors import UsageError

    with pytest.raises(UsageError, match="CONVIRZA_TOKEN"):
        ConvirzaClient(Settings.load({}, environ={}))
