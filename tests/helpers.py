"""What several test modules use: manifests and rows made to measure, ledgers read back and
left as a crash leaves them, what the sandbox received, and virtual time. (Test modules import
these from here, never from each other.)"""

from __future__ import annotations

import asyncio
import base64
import csv
import heapq
import sqlite3
import threading
import zlib
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from typing import Self

from aiohttp import web

from importer.ledger.admission import Admission
from importer.ledger.states import Status
from importer.ledger.store import Ledger

from .conftest import SAMPLES, SandboxThread, distinct_copy

SAMPLE_FILES = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".wav", ".mp3"))


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    fields = sorted({k for r in rows for k in r})
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def good_row(**changes: str) -> dict[str, str]:
    row = {"recording_file": "../sample_data/call-0001-pcm8k.wav",
           "call_date": "2025-03-04T09:15:22-05:00", "group_id": "12",
           "caller_id": "6175550142", "external_id": "X-1"}
    row.update(changes)
    return row


def many_rows(workdir: Path, n: int, prefix: str = "E") -> list[dict[str, str]]:
    """``n`` valid rows, each with a recording of its own (a copy of one of the sample
    recordings under ``workdir``, with audio bytes of its own): one path listed twice would be
    a duplicate row, and the same audio twice is sent once."""
    folder = workdir / "sample_data" / "many"
    folder.mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        sample = SAMPLE_FILES[i % len(SAMPLE_FILES)]
        name = f"{prefix}-{i:04d}-{sample}"
        if not (folder / name).exists():
            distinct_copy(workdir / "sample_data" / sample, folder / name,
                          zlib.crc32(name.encode()))
        rows.append(good_row(external_id=f"{prefix}-{i:04d}",
                             recording_file=f"../sample_data/many/{name}"))
    return rows


def status_of(ledger: Path) -> dict[str, str]:
    with sqlite3.connect(ledger) as conn:
        return dict(conn.execute("SELECT key, status FROM recordings"))


def status_counts(ledger: Path) -> Counter[str]:
    with sqlite3.connect(ledger) as conn:
        return Counter(s for (s,) in conn.execute("SELECT status FROM recordings"))


def received(sandbox: SandboxThread) -> Counter[str]:
    return Counter(c.external_id or "" for c in sandbox.store.calls())


def crash_leftovers(ledger_path: Path, manifest: Path, rows: list[dict[str, str]],
                    keys: list[str]) -> None:
    """Leave ``keys`` as a crash would: 'uploading', request maybe sent."""
    ledger = Ledger.open(ledger_path)
    run = ledger.begin_run("run", str(manifest.resolve()))
    for n, key in enumerate(keys):
        ledger.admit(run, [Admission(key, key.removeprefix("ext:"), str(manifest.resolve()),
                                     n + 2, "x.wav", Status.PENDING, "f", {"a": "b"})])
        ledger.mark_uploading(key, None, run)
    ledger.close()


class FakeTime:
    """Virtual time: a sleeper waits until the clock reaches its deadline, and the clock jumps
    to the earliest deadline once every task is waiting. Concurrent sleeps overlap as real
    ones do, and no test waits on the wall clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._sleepers, (self.now + seconds, self._seq, future))
        await future

    async def run(self, *coros: Awaitable[object]) -> list[object]:
        """Run ``coros`` to the end, moving the clock whenever all of them are asleep."""
        task = asyncio.ensure_future(asyncio.gather(*coros))
        while not task.done():
            for _ in range(20):  # let every runnable task reach its next sleep
                await asyncio.sleep(0)
            if self._sleepers and not task.done():
                deadline, _, future = heapq.heappop(self._sleepers)
                if future.done():  # its sleeper was cancelled: no time passes for it
                    continue
                self.now = max(self.now, deadline)
                future.set_result(None)
        return await task


class LoopbackServer:
    """An aiohttp app on loopback, served from its own event loop in a thread (as the
    sandbox is): a subclass says what it answers in ``app``."""

    def __init__(self) -> None:
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        raise NotImplementedError

    async def _start(self) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class StandIn(LoopbackServer):
    """An API stand-in on loopback for a fault the sandbox cannot stage (a file changed while
    the server reads it, say): a subclass answers uploads in ``upload``; lookups answer "no
    records found."."""

    async def upload(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    @staticmethod
    async def _lookup(request: web.Request) -> web.Response:
        return web.json_response({"result": "error", "err": "no records found.", "data": []})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_post("/v2/call/upload", self.upload)
        app.router.add_get("/v2/{what:.*}", self._lookup)
        return app


class Vendor(LoopbackServer):
    """A vendor's recording server on loopback, as Twilio's is: ``/rec/NAME`` (no extension)
    needs basic auth (``vendor-user``/``vendor-pass-9f3e2b``), ``/key/NAME`` an ``X-Api-Key``
    header, ``/moved/NAME`` (basic auth) redirects to ``/cdn/NAME`` on another host
    (``localhost`` instead of ``127.0.0.1``), which needs nothing and keeps the headers it got;
    ``/page`` is an HTML page. Recordings are the sample files by name."""

    USER, PASSWORD, KEY = "vendor-user", "vendor-pass-9f3e2b", "key-7c1d5a0e93"

    def __init__(self) -> None:
        super().__init__()
        self.cdn_headers: list[dict[str, str]] = []

    def _recording(self, request: web.Request) -> web.Response:
        path = SAMPLES / request.match_info["name"]
        if not path.is_file():
            return web.Response(status=404)
        return web.Response(body=path.read_bytes(), content_type="application/octet-stream")

    async def _basic(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth != _basic(self.USER, self.PASSWORD):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="rec"'})
        return self._recording(request)

    async def _key(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Api-Key") != self.KEY:
            return web.Response(status=403)
        return self._recording(request)

    async def _moved(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth != _basic(self.USER, self.PASSWORD):
            return web.Response(status=401)
        port = self.url.rpartition(":")[2]
        raise web.HTTPFound(f"http://localhost:{port}/cdn/{request.match_info['name']}")

    async def _cdn(self, request: web.Request) -> web.Response:
        self.cdn_headers.append(dict(request.headers))
        return self._recording(request)

    @staticmethod
    async def _page(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/rec/{name}", self._basic)
        app.router.add_get("/key/{name}", self._key)
        app.router.add_get("/moved/{name}", self._moved)
        app.router.add_get("/cdn/{name}", self._cdn)
        app.router.add_get("/page", self._page)
        return app


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
