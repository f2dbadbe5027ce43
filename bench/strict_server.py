"""A strict, cheap stand-in for the upload endpoint, for throughput benchmarks.

The sandbox parses every part, hashes the audio and stores each call in SQLite: right for
tests, but on a two-core machine it competes with the client for the CPU, so a benchmark of the
client against it measures the server. This server does the least that still checks each
upload is well-formed: an HTTP/1.1 request with a body of the declared length (or chunked), a
``multipart/form-data`` body whose parts include ``recording_file`` (with a file name and some
bytes) and the required fields, and a bearer token. It answers 200 with no body, as the API
does, or 400/401 naming what was wrong; it keeps connections alive. ``GET /v2/...`` answers an
empty V2 envelope ("no records found."), enough for the importer's check before its first row.
It counts what it accepted, and says so on ``GET /_stats``.

Run: ``python bench/strict_server.py --port 0 --token T`` prints ``listening on URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re

REQUIRED = (b'name="call_date"', b'name="group_id"', b'name="caller_id"')
_FILE_PART = re.compile(rb'name="recording_file"; filename="[^"\r\n]+"')
EMPTY = json.dumps({"result": "error", "err": "no records found.", "data": []}).encode()


class Server:
    def __init__(self, token: str) -> None:
        self.bearer = f"authorization: bearer {token}".lower().encode()
        self.accepted = 0
        self.refused = 0
        self.body_bytes = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                status, body = self._answer(head, await self._body(reader, head))
                writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s"
                             % (status, b"OK" if status == 200 else b"Bad Request",
                                len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _body(reader: asyncio.StreamReader, head: bytes) -> bytes:
        lower = head.lower()
        match = re.search(rb"\r\ncontent-length: *(\d+)", lower)
        if match:
            return await reader.readexactly(int(match.group(1)))
        if b"\r\ntransfer-encoding: chunked" in lower:
            chunks = []
            while size := int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16):
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            await reader.readuntil(b"\r\n")
            return b"".join(chunks)
        return b""

    def _answer(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        line = head.split(b"\r\n", 1)[0]
        if line.startswith(b"GET /_stats"):
            return 200, json.dumps({"accepted": self.accepted, "refused": self.refused,
                                    "body_bytes": self.body_bytes}).encode()
        if self.bearer not in head.lower():
            return 401, b'{"statusCode":401,"message":"Unauthorized"}'
        if line.startswith(b"GET /v2/"):
            return 200, EMPTY
        if not line.startswith(b"POST /v2/call/upload "):
            return 404, b'{"statusCode":404,"message":"Not Found"}'
        problem = self._problem(head, body)
        if problem:
            self.refused += 1
            return 400, json.dumps({"statusCode": 400, "message": problem}).encode()
        self.accepted += 1
        self.body_bytes += len(body)
        return 200, b""

    @staticmethod
    def _problem(head: bytes, body: bytes) -> str | None:
        match = re.search(rb"\r\ncontent-type: *multipart/form-data; *boundary=\"?([^\"\r\n;]+)",
                          head, re.I)
        if not match:
            return "not multipart/form-data"
        boundary = b"--" + match.group(1)
        if not body.startswith(boundary) or not body.rstrip().endswith(boundary + b"--"):
            return "the body does not start and end with its boundary"
        if not _FILE_PART.search(body):
            return "no recording_file part with a file name"
        missing = [r.decode() for r in REQUIRED if r not in body]
        if missing:
            return f"missing {', '.join(missing)}"
        return None


async def serve(port: int, token: str) -> None:
    server = Server(token)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", port, backlog=256)
    bound = listener.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{bound}", flush=True)
    async with listener:
        await listener.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token", required=True)
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.token))


if __name__ == "__main__":
    main()
