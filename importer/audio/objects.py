"""An object in a store checked as a file is, without downloading it: its size, ETag and head
from one ranged GET (an mp3's tail from a second), read by the same header readers as a file
(``probing``).

How the readers read an object they were written for files: the bytes fetched are written at
their own offsets into a sparse scratch file of the object's size (the gap reads as zeros and
takes no disk), which ``probing.probe`` then reads as any file. The wav walk stops at the
``data`` chunk, which nearly every wav has in its first 64 KiB; an mp3's quick reading needs
its first frames and, for a tag, its last bytes. An object of at most ``keep`` bytes (a small
one, to be sent) is fetched whole in one GET and hashed: it is sent from memory, as a small
file is, and the same-audio rules apply to it; a bigger one is not hashed before it is sent
(that would be a second whole download), so it is known by its key, size and ETag alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import tempfile
from pathlib import Path

from ..errors import AudioError
from ..sources.locations import ObjectURL
from ..sources.objects import ObjectSource, ObjectStore
from .info import AudioInfo
from .probing import probe, sniff

#: The head fetched: the RIFF chunks before ``data``, an ID3v2 tag and the first frames.
HEAD_WINDOW = 64 * 1024
#: An mp3's last bytes: ID3v1 (128 bytes), Lyrics3 and APE tags.
TAIL_WINDOW = 8 * 1024


async def probe_object(url: ObjectURL, store: ObjectStore, max_size: int, *,
                       max_duration: float | None = None, keep: int = 0) -> AudioInfo:
    """Check the object ``url`` names as ``probing.probe`` checks a file; ``AudioError`` (or,
    for the store's own failures, ``MachineError`` or ``StoreRefused``) says why not."""
    facts, head = await store.first(url, max(keep, HEAD_WINDOW))
    if facts.size == 0:
        raise AudioError(str(url), "empty object (0 bytes)")
    if facts.size > max_size:
        raise AudioError(str(url), f"too big: {facts.size:,} bytes, over the limit of "
                         f"{max_size:,} (--max-file-size)")
    whole = len(head) == facts.size
    pieces = [(0, head)]
    if not whole and sniff(head[:4096]) == "mp3":
        start = max(len(head), facts.size - TAIL_WINDOW)
        pieces.append((start, await store.read(url, start, facts.size)))
    probing = functools.partial(_probe_pieces, str(url), facts.size, pieces, max_size,
                                max_duration, whole, keep)
    # A whole small object is probed here, on the event loop, as a small file is: a thread
    # for 40 KB costs more (the GIL handed back and forth) than the probe itself.
    info = probing() if whole else await asyncio.to_thread(probing)
    return dataclasses.replace(info, path=Path(url.name), mtime_ns=0,
                               source=ObjectSource(url, facts, store))


def _probe_pieces(shown: str, size: int, pieces: list[tuple[int, bytes]], max_size: int,
                  max_duration: float | None, whole: bool, keep: int) -> AudioInfo:
    """The pieces at their offsets in a sparse scratch file of ``size`` bytes, probed."""
    with tempfile.TemporaryDirectory(prefix="convirza-object-") as scratch:
        # the object's own extension: judged as a file's is (``.wav`` holding mp3 is refused)
        path = Path(scratch) / ("object" + Path(shown.rpartition("/")[2]).suffix)
        with open(path, "wb") as handle:
            for offset, data in pieces:
                handle.seek(offset)
                handle.write(data)
            handle.truncate(size)
        try:
            return probe(path, max_size, max_duration=max_duration, digest=whole,
                         keep=keep if whole else 0)
        except AudioError as exc:
            raise AudioError(shown, exc.reason) from None
