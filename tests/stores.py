"""An S3 store on loopback for the tests: moto's own server (``ThreadedMotoServer``), one per
session, behind a small proxy of ours that counts what is asked of it and injects the faults a
real store shows (a denied object, SlowDown, credentials that expire mid-run). Nothing of the
importer's is touched: it finds the store through AWS's own variable, ``AWS_ENDPOINT_URL_S3``.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import boto3
from aiohttp import web
from moto.server import ThreadedMotoServer

_ERROR = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
          "<Message>{code}</Message><RequestId>test</RequestId></Error>")


@dataclass
class StoreFaults:
    """What the proxy does instead of forwarding: keys (substrings) denied or throttled, and
    the number of object reads after which every request meets expired credentials."""

    denied: set[str] = field(default_factory=set)
    throttled: set[str] = field(default_factory=set)
    expire_after_reads: int | None = None


@dataclass
class Seen:
    """What the store was asked: each request's method, path and Range header."""

    requests: list[tuple[str, str, str]] = field(default_factory=list)
    bytes_served: int = 0

    def reads(self, key: str = "") -> list[tuple[str, str, str]]:
        """The GETs of objects (not listings: ``/bucket?list-type=2``), their key holding
        ``key``; signed URLs' queries left out."""
        paths = [(r, r[1].partition("?")[0]) for r in self.requests if r[0] == "GET"]
        return [r for r, path in paths if path.strip("/").count("/") >= 1 and key in path]


class S3Store:
    """moto on loopback behind the fault proxy, in threads; ``url`` is the proxy's."""

    def __init__(self) -> None:
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.faults = StoreFaults()
        self.seen = Seen()
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._upstream = ""

    def __enter__(self) -> S3Store:
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self._upstream = f"http://{host}:{port}"
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self.moto.stop()

    def reset(self) -> None:
        self.faults = StoreFaults()
        self.seen = Seen()

    def client(self) -> Any:
        """boto3 against moto directly (setting up buckets is not what a test observes)."""
        return boto3.client("s3", endpoint_url=self._upstream, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        await self._session.close()
        assert self._runner is not None
        await self._runner.cleanup()

    def _fault(self, request: web.Request) -> str | None:
        path, f = request.path, self.faults
        if f.expire_after_reads is not None and len(self.seen.reads()) > f.expire_after_reads:
            return "ExpiredToken"
        if any(k in path for k in f.denied):
            return "AccessDenied"
        if any(k in path for k in f.throttled):
            return "SlowDown"
        return None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.seen.requests.append((request.method, request.path_qs,
                                   request.headers.get("Range", "")))
        code = self._fault(request)
        if code is not None:
            status = 503 if code == "SlowDown" else 403
            body = "" if request.method == "HEAD" else _ERROR.format(code=code)
            return web.Response(status=status, text=body, content_type="application/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with self._session.request(
                request.method, self._upstream + request.path_qs, headers=headers,
                data=await request.read(), allow_redirects=False) as upstream:
            body = await upstream.read()
            if request.method == "GET":
                self.seen.bytes_served += len(body)
            out = {k: v for k, v in upstream.headers.items()
                   if k.lower() not in ("transfer-encoding", "content-encoding", "connection",
                                        "content-length")}
            if request.method == "HEAD":
                return web.Response(status=upstream.status, headers={
                    **out, "Content-Length": upstream.headers.get("Content-Length", "0")})
            return web.Response(status=upstream.status, body=body, headers=out)
