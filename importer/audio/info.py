"""What probing learns of a recording (``AudioInfo``), and the formats the API takes: the
value the run, the ledger and the client pass around, apart from the reading that makes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..sources.objects import ObjectSource

AudioFormat = Literal["mp3", "wav"]
CONTENT_TYPES: dict[AudioFormat, str] = {"mp3": "audio/mpeg", "wav": "audio/wav"}
ACCEPTED: tuple[AudioFormat, ...] = ("mp3", "wav")


@dataclass(frozen=True)
class AudioInfo:
    """What probing learned of a file; ``format`` is the real content, not the extension.

    ``sha256`` is the hex digest of the whole file, or None when the probe was asked not to
    hash (the benchmark's header-only pass). ``mtime_ns`` is the file's modification time when
    it was probed: with ``size``, what each upload checks again before it sends the file, so
    that the bytes sent are the bytes checked.
    """

    path: Path
    format: AudioFormat
    codec: str
    sample_rate: int
    channels: int
    duration: float
    bitrate: int
    size: int
    sha256: str | None = None
    mtime_ns: int = 0
    #: The whole file, for a small one (``probe(keep=...)``): the bytes checked and hashed are
    #: the bytes sent, with no second read.
    data: bytes | None = field(default=None, repr=False, compare=False)
    #: Where an object's bytes are (``audio.objects``): sent from there, not from ``path``.
    source: ObjectSource | None = field(default=None, repr=False, compare=False)
    #: Where the recording came from when ``path`` is only this run's copy of it (a URL
    #: fetched with ``--fetch-urls``, without its query): what the ledger keeps as its path.
    origin: str | None = field(default=None, compare=False)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


#: What a header reader learned: (codec, sample rate, channels, duration, bitrate).
Stream = tuple[str, int, int, float, int]
