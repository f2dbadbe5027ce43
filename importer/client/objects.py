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

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from ..audio.info import AudioInfo
from ..errors import AudioError, MachineError, StoreRefused
from ..sources.objects import ObjectSource
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
