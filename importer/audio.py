"""Local checks of a recording before it is sent: a migration must not spend hours uploading
files the API will refuse. ``probe`` reads headers only (never the whole file) and is blocking,
so the pipeline runs it in a worker thread.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import mutagen
from mutagen.mp3 import MP3, HeaderNotFoundError
from mutagen.wave import WAVE

from .errors import AudioError

AudioFormat = Literal["mp3", "wav"]
CONTENT_TYPES: dict[AudioFormat, str] = {"mp3": "audio/mpeg", "wav": "audio/wav"}
_WAV_CODECS = {1: "pcm", 3: "float", 6: "alaw", 7: "mulaw", 0x31: "gsm610", 0xFFFE: "extensible"}


@dataclass(frozen=True)
class AudioInfo:
    """What probing learned of a file; ``format`` is the real content, not the extension."""

    path: Path
    format: AudioFormat
    codec: str
    sample_rate: int
    channels: int
    duration: float
    bitrate: int
    size: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


def sniff(head: bytes) -> str:
    """The format the first bytes show: ``wav``, ``mp3``, or a name for what it is instead."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    for magic, name in ((b"OggS", "ogg"), (b"fLaC", "flac"), (b"RIFF", "RIFF (not WAVE)"),
                        (b"PK\x03\x04", "zip"), (b"%PDF", "pdf")):
        if head.startswith(magic):
            return name
    if head[4:8] == b"ftyp":
        return "mp4/m4a"
    return "unknown"


def probe(path: Path, max_size: int) -> AudioInfo:
    """Check that ``path`` is an mp3 or wav the API can take; ``AudioError`` says why not."""
    shown = str(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise AudioError(shown, "file not found") from None
    except OSError as exc:
        raise AudioError(shown, f"cannot read: {exc.strerror}") from None
    if path.is_dir():
        raise AudioError(shown, "is a folder, not a recording")
    if stat.st_size == 0:
        raise AudioError(shown, "file is empty (0 bytes)")
    if stat.st_size > max_size:
        raise AudioError(shown, f"file is {stat.st_size:,} bytes, over the limit of {max_size:,} "
                                "(--max-file-size)")
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
    except OSError as exc:
        reason = "no read permission" if exc.errno == errno.EACCES else exc.strerror
        raise AudioError(shown, f"cannot read: {reason}") from None
    real = sniff(head)
    claimed = path.suffix.lower().lstrip(".")
    if real not in ("mp3", "wav"):
        raise AudioError(shown, f"content is {real}, not mp3 or wav")
    if claimed in ("mp3", "wav") and claimed != real:
        raise AudioError(shown, f"extension says {claimed} but the content is {real}")
    if claimed not in ("mp3", "wav"):
        raise AudioError(shown, f"extension {path.suffix or '(none)'!r} is not .mp3 or .wav")
    return _read_info(path, real, stat.st_size)


def _read_info(path: Path, real: str, size: int) -> AudioInfo:
    shown = str(path)
    try:
        parsed = MP3(path) if real == "mp3" else WAVE(path)  # type: ignore[no-untyped-call]
    except (HeaderNotFoundError, mutagen.MutagenError) as exc:
        raise AudioError(shown, f"not a playable {real}: {exc}") from None
    info = parsed.info
    duration = float(getattr(info, "length", 0.0) or 0.0)
    if duration <= 0:
        raise AudioError(shown, "no audio (zero duration)")
    if real == "wav":
        codec = _WAV_CODECS.get(int(getattr(info, "audio_format", 0) or 0), "unknown")
        fmt: AudioFormat = "wav"
    else:
        codec = f"mpeg{getattr(info, 'version', '?')}-layer{getattr(info, 'layer', '?')}"
        fmt = "mp3"
    return AudioInfo(
        path=path, format=fmt, codec=codec,
        sample_rate=int(getattr(info, "sample_rate", 0) or 0),
        channels=int(getattr(info, "channels", 0) or 0),
        duration=duration, bitrate=int(getattr(info, "bitrate", 0) or 0), size=size,
    )

