"""Shared fixtures: a real sandbox server on loopback (in a thread, so that the synchronous
command line can run against it in the test's own thread), and copies of the sample data."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from importer.sandbox import STATE, STORE, SandboxConfig, start
from importer.sandbox.app import RNG, SandboxState
from importer.sandbox.store import CallStore

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_data"
SAMPLE_MANIFEST = ROOT / "manifests" / "sample.csv"
TOKEN = "tok-3f9a1c7e-5b2d-4e8f-9a6c-1d2e3f4a5b6c"


async def _cancel_the_others() -> None:
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


class SandboxThread:
    """The sandbox app served from a background thread's event loop."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> SandboxThread:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(start(self.config), self._loop)
        self._runner, self.url = future.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _shutdown(self) -> None:
        assert self._runner is not None
        # Requests still being answered (a test's long latency) are ended first: cleanup
        # would otherwise wait for each, seconds of CI for nothing. Keep-alive connection
        # handlers may outlive cleanup: they are ended after it, before the loop stops.
        await _cancel_the_others()
        await self._runner.cleanup()
        await _cancel_the_others()


    def set_faults(self, **changes: Any) -> None:
        """The faults the sandbox injects from now on, given as its config has them: a new,
        validated ``Faults`` replaces the old one whole (a request sees one or the other, never
        half of each), and a new ``seed`` reseeds the faults' random choices."""
        self.config.faults = dataclasses.replace(self.config.faults, **changes)
        if "seed" in changes:
            assert self._runner is not None
            self._runner.app[RNG].seed(changes["seed"])

    def set_config(self, **changes: Any) -> None:
        """Other settings of the sandbox (``token_ttl``), from now on."""
        for name, value in changes.items():
            if not hasattr(self.config, name) or name == "faults":
                raise AttributeError(f"SandboxConfig has no setting {name!r} (faults: "
                                     "set_faults)")
            setattr(self.config, name, value)

    @property
    def store(self) -> CallStore:
        assert self._runner is not None
        return self._runner.app[STORE]

    @property
    def state(self) -> SandboxState:
        assert self._runner is not None
        return self._runner.app[STATE]


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """``main`` sets up the importer's logger for the process (``--quiet``: errors only, a
    handler of its own); put it back, so that no test sees another's set-up."""
    logger = logging.getLogger("importer")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture
def sandbox() -> Iterator[SandboxThread]:
    config = SandboxConfig(static_tokens=frozenset({TOKEN}))
    with SandboxThread(config) as server:
        yield server


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the sample manifest and recordings, laid out as in the repository."""
    shutil.copytree(SAMPLES, tmp_path / "sample_data")
    (tmp_path / "manifests").mkdir()
    shutil.copy(SAMPLE_MANIFEST, tmp_path / "manifests" / "sample.csv")
    return tmp_path


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch, sandbox: SandboxThread) -> str:
    """Point the importer at the sandbox with a valid token, through the environment only."""
    for name in ("CONVIRZA_USERNAME", "CONVIRZA_PASSWORD", "CONVIRZA_LEDGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONVIRZA_API_URL", sandbox.url)
    monkeypatch.setenv("CONVIRZA_TOKEN", TOKEN)
    monkeypatch.setenv("CONVIRZA_TIMEZONE", "America/New_York")
    return TOKEN


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def distinct_copy(source: Path, target: Path, salt: int) -> Path:
    """A copy of a sample recording with audio bytes of its own (``salt`` decides them), still a
    valid file of its kind: rows listing copies of one sample are distinct recordings, not the
    same audio (which a run does not send twice). A wav's last audio bytes change (every
    sample's ``data`` chunk is its last); an mp3 gets an ID3v1 title of its own."""
    data = bytearray(source.read_bytes())
    tag = salt.to_bytes(8, "little")
    if source.suffix.lower() == ".wav":
        data[-8:] = tag
    else:
        if data[-128:-125] != b"TAG":
            data += b"TAG" + bytes(125)
        data[-125:-95] = (b"copy %d" % salt).ljust(30, b"\0")
    target.write_bytes(bytes(data))
    return target


def sample_files() -> list[Path]:
    return sorted(p for p in SAMPLES.iterdir() if p.suffix in (".wav", ".mp3"))


@pytest.fixture(scope="session")
def s3_store() -> Iterator[Any]:
    """One S3 server (moto's, on loopback, behind a fault proxy: ``stores``) for the session."""
    from .stores import S3Store
    with S3Store() as store:
        yield store


@pytest.fixture
def s3(s3_store: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The session's S3 store, its faults and counts cleared, found by the importer through
    AWS's own variables only (an endpoint and test credentials)."""
    s3_store.reset()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_store.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key-0123456789")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # botocore's own retries, as a user sets them: a throttled request is given up in a
    # second, not after botocore's five attempts inside each of s3fs's three
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    return s3_store
