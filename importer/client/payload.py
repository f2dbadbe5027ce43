"""A recording streamed into an upload so that what is sent is what was checked.

A file over ``INLINE_PROBE_BYTES`` is read from disk while its request is on the wire, some
time after it was probed and hashed: it may have been truncated, rewritten or still be written
meanwhile. So ``CheckedFile`` reads exactly the size that was checked, hashes what it reads on
the way, and holds back the last piece until the hash agrees with the one computed when the
file was checked. A short read or another hash raises, and aiohttp abandons the request with
its body incomplete (``Content-Length`` promised the checked size): the API never receives a
whole request, so it cannot store a call from other bytes. ``changed`` then says what
happened, for the client to report instead of a transport error.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from typing import Any

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from ..audio.info import AudioInfo
from ..errors import AudioError

#: Bytes read (and hashed) at a time, in a thread, as aiohttp's own file payload reads.
CHUNK = 1 << 16


class Changed(Exception):
    """Raised inside aiohttp's body writer: the file is not the one checked."""


class CheckedFile(Payload):
    """The bytes of ``handle`` (opened on ``audio.path``) as a request body part of exactly
    ``audio.size`` bytes, each compared with what was checked (see the module docstring)."""

    def __init__(self, audio: AudioInfo, handle: io.BufferedReader, filename: str) -> None:
        super().__init__(handle, content_type=audio.content_type, filename=filename)
        self._size = audio.size
        self._audio = audio
        self._handle = handle
        #: What was wrong with the file, once a write found it changed.
        self.changed: AudioError | None = None

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a recording is not text")

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter,
                                content_length: int | None) -> None:
        """Write the file's checked size, the last piece only once the hash agrees (the
        length aiohttp passes is the part's own size here, so it is not needed)."""
        digest = hashlib.sha256()
        left = self._audio.size
        held: bytes | None = None
        while left > 0:
            piece = await asyncio.to_thread(_read_hashed, self._handle, min(CHUNK, left), digest)
            if not piece:
                raise self._change("shorter than when it was checked")
            left -= len(piece)
            if held is not None:
                await writer.write(held)
            held = piece
        if self._audio.sha256 is not None and digest.hexdigest() != self._audio.sha256:
            raise self._change("other bytes than when it was checked")
        if held is not None:
            await writer.write(held)

    def finish(self) -> None:
        """The file's handle closed, the request over (sent or not)."""
        self._handle.close()

    def _change(self, what: str) -> Changed:
        self.changed = AudioError(
            str(self._audio.path), f"changed while it was sent ({what}); the request was "
            "abandoned before its end, so nothing was imported: run again to check it anew")
        return Changed(what)


def _read_hashed(handle: io.BufferedReader, n: int, digest: Any) -> bytes:
    """Up to ``n`` bytes, hashed here, in the reading thread: hashing lets go of the GIL."""
    piece = handle.read(n)
    digest.update(piece)
    return piece
