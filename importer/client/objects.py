"""An object streamed from its store into an upload, as ``payload.CheckedFile`` streams a
file: exactly the size that was checked, the last piece held back until every byte has come.

The store holds the ETag checked (``If-Match`` on the GET, ``sources.objects``), so other bytes
under the key are refused before the first one arrives; a short body or a store failure midway
raises inside aiohttp's body writer, which abandons the request with its body incomplete
(``Content-Length`` promised the checked size): the API never receives a whole request made of
other bytes. Memory: one piece of ``CHUNK`` bytes in hand, one held back, whatever the size.

``--presign`` sends no bytes at all: the row goes as a ``recording_url`` signed at the moment
of each attempt (so its lifetime starts then), which Convirza fetches from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from ..audio.info import AudioInfo
from ..errors import AudioError, MachineError, StoreRefused
from ..sources.locations import ObjectURL
from ..sources.objects import ObjectFacts, ObjectSource, ObjectStore, answered
from .payload import CHUNK, Changed


class CheckedObject(Payload):
    """The bytes of ``audio``'s object as a request body part of exactly ``audio.size``
    bytes (see the module docstring); ``changed`` says what went wrong, once a write did."""

    def __init__(self, audio: AudioInfo, source: ObjectSource, filename: str) -> None:
        super().__init__(source.url, content_type=audio.content_type, filename=filename)
        self._size = audio.size
        self._source = source
        #: Why the write was abandoned: the object changed, the store failed midway, or it
        #: refused the credentials (expired during the run).
        self.changed: AudioError | StoreRefused | None = None

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a recording is not text")

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter,
                                content_length: int | None) -> None:
        left, held = self._source.facts.size, None
        source = self._source
        pieces = source.store.chunks(source.url, source.facts, CHUNK)
        try:
            async for piece in pieces:
                if len(piece) > left:
                    raise self._change(AudioError(str(source.url), "longer than when it was "
                                                  "checked; not sent: run again"))
                left -= len(piece)
                if held is not None:
                    await writer.write(held)
                held = piece
        except MachineError as exc:  # the store failed midway: not sent, for a later try
            raise self._change(AudioError(exc.path, exc.reason)) from None
        except (AudioError, StoreRefused) as exc:
            raise self._change(exc) from None
        finally:
            await pieces.aclose()
        if left:
            raise self._change(AudioError(str(source.url), "shorter than when it was checked; "
                                          "not sent: run again"))
        if held is not None:
            await writer.write(held)

    def finish(self) -> None:
        """Nothing to close: the stream is closed when its write ends, either way."""

    def _change(self, error: AudioError | StoreRefused) -> Changed:
        self.changed = error
        return Changed(str(error))


async def presigned(fields: list[tuple[str, str]], source: ObjectSource,
                    seconds: float) -> list[tuple[str, str]]:
    """The upload's text fields with the object as a ``recording_url`` valid ``seconds``."""
    url = await source.store.presign(source.url, int(seconds))
    return [("recording_url", url), *fields]


#: How long the URLs signed for our own reads last: a read starts at once.
SIGNED_FOR = 300
#: Tries of a read the store throttles or fails (5xx), before the row is left for later.
READ_ATTEMPTS = 3


class SignedReads:
    """S3 objects read through URLs presigned here, on the client's own aiohttp session: a
    request through s3fs and aiobotocore costs about 1.5 ms of CPU more than one through
    aiohttp, and signing a URL costs 0.25 ms (bench/sources.py), so a small object's one read
    is cheaper so, and so is a presigned row's probe. The store's answers mean what they mean
    through s3fs (``sources.objects.answered``); a throttled or failing read is tried
    ``READ_ATTEMPTS`` times, ``sleep`` apart (injected: tests need no clock)."""

    def __init__(self, session: aiohttp.ClientSession, store: ObjectStore,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._session = session
        self._store = store
        self._sleep = sleep

    async def first(self, url: ObjectURL, length: int) -> tuple[ObjectFacts, bytes]:
        async with self._answer(url, {"Range": f"bytes=0-{length - 1}"}) as resp:
            if resp.status == 416:  # a range of an empty object
                return ObjectFacts(0, ""), b""
            data = await _at_most(resp, length)
            total = resp.headers.get("Content-Range", "").rpartition("/")[2]
            size = int(total) if total.isdigit() else resp.content_length or len(data)
            return ObjectFacts(size, resp.headers.get("ETag", "").strip('"')), data

    async def read(self, url: ObjectURL, start: int, end: int) -> bytes:
        async with self._answer(url, {"Range": f"bytes={start}-{end - 1}"}) as resp:
            return await _at_most(resp, end - start)

    async def chunks(self, url: ObjectURL, facts: ObjectFacts,
                     size: int) -> AsyncGenerator[bytes, None]:
        async with self._answer(url, {"If-Match": f'"{facts.etag}"'}) as resp:
            try:
                # what has arrived, at once: aiohttp's buffer holds at most 128 KiB, and
                # pieces of ``size`` would come smaller and many (a slower upload)
                async for piece in resp.content.iter_any():
                    if len(piece) <= size:
                        yield piece
                        continue
                    for at in range(0, len(piece), size):
                        yield piece[at:at + size]
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise MachineError(str(url), f"the store's answer broke off "
                                   f"({type(exc).__name__}); left for a later run") from None

    @contextlib.asynccontextmanager
    async def _answer(self, url: ObjectURL,
                      headers: dict[str, str]) -> AsyncIterator[aiohttp.ClientResponse]:
        """The store's answer to a GET of ``url`` it accepted; its refusal as ours."""
        error: Exception = MachineError(str(url), "the store could not be read")
        for attempt in range(READ_ATTEMPTS):
            if attempt:
                await self._sleep(0.2 * 2 ** attempt)
            signed = await self._store.presign(url, SIGNED_FOR)
            try:
                resp = await self._session.get(signed, headers=headers, allow_redirects=False)
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = MachineError(str(url), f"the store could not be reached "
                                     f"({type(exc).__name__}); left for a later run")
                continue
            try:
                if resp.status in (200, 206, 416):
                    yield resp
                    return
                error = answered(url, resp.status, await resp.content.read(4096))
            finally:
                resp.release()
            if not (resp.status >= 500 or resp.status == 429):
                break
        raise error


async def _at_most(resp: aiohttp.ClientResponse, length: int) -> bytes:
    """Up to ``length`` bytes of an answer (a store that ignores ``Range`` sends it all)."""
    pieces, got = [], 0
    while got < length and (piece := await resp.content.read(length - got)):
        pieces.append(piece)
        got += len(piece)
    return b"".join(pieces)
