"""A wav's audio described from its RIFF chunk headers alone, walked to ``fmt `` and ``data``.

Why our own parser: mutagen's wav reader computes GSM 6.10 durations from the block size (off
by 320 times), does not resolve WAVE_FORMAT_EXTENSIBLE to its codec, and does not notice a
header that promises more audio than the file holds. The walk reads only chunk headers, nearly
always all in the first 4 KiB the probe already holds.
"""

from __future__ import annotations

import os
import struct

from ..errors import AudioError
from .info import Stream

#: A wav with more chunks than this before its audio is not one any recorder wrote.
MAX_WAV_CHUNKS = 64

_WAV_CODECS = {1: "pcm", 2: "ms-adpcm", 3: "float", 6: "alaw", 7: "mulaw", 0x11: "ima-adpcm",
               0x31: "gsm610", 0x55: "mpeg-layer3"}
_WAV_EXTENSIBLE = 0xFFFE
#: Codecs whose duration is exactly data size / block size; others use ``fact`` or byte rate.
_WAV_FRAMED = frozenset({1, 3, 6, 7})


def _read_at(fd: int, head: bytes, offset: int, count: int) -> bytes:
    if offset + count <= len(head):
        return head[offset:offset + count]
    return os.pread(fd, count, offset)


_CHUNK_HEADER = struct.Struct("<4sI")
_WAV_FORMAT = struct.Struct("<HHIIHH")


def read_wav(fd: int, head: bytes, size: int, shown: str) -> Stream:
    """Walk the RIFF chunks (headers only) to ``fmt `` and ``data``; LIST/INFO, bext, fact
    and any other chunk before the audio are skipped unread (a chunk header past the first
    4 KiB is one ``pread``)."""
    fmt: bytes | None = None
    fact: int | None = None
    offset = 12
    for _ in range(MAX_WAV_CHUNKS):
        if offset + 8 <= len(head):
            chunk_id, chunk_size = _CHUNK_HEADER.unpack_from(head, offset)
        else:
            header = os.pread(fd, 8, offset)
            if len(header) < 8:
                break
            chunk_id, chunk_size = _CHUNK_HEADER.unpack(header)
        body = offset + 8
        if chunk_id == b"data":
            if fmt is None:
                raise AudioError(shown, "wav has no format ('fmt ') chunk before its audio")
            if chunk_size > size - body:
                raise AudioError(shown, f"wav header promises {chunk_size:,} bytes of audio but "
                                        f"the file holds only {size - body:,}: a truncated or "
                                        "unfinished copy")
            if chunk_size == 0 and size - body > 0:  # a recorder stopped before patching it
                raise AudioError(shown, f"wav header says it holds no audio, yet {size - body:,} "
                                        "bytes follow: a recording whose header was never "
                                        "finished")
            return _wav_stream(fmt, fact, chunk_size, shown)
        if body + chunk_size > size:
            name = chunk_id.decode("latin-1").strip()
            raise AudioError(shown, f"wav header promises more than the file holds: its '{name}' "
                                    "chunk runs past the end, and no audio follows")
        if chunk_id == b"fmt ":
            fmt = _read_at(fd, head, body, min(chunk_size, 40))
        elif chunk_id == b"fact" and chunk_size >= 4:
            fact = int.from_bytes(_read_at(fd, head, body, 4), "little")
        offset = body + chunk_size + (chunk_size & 1)
    raise AudioError(shown, "no audio: the wav has no 'data' chunk")


def _wav_stream(fmt: bytes, fact: int | None, data_size: int, shown: str) -> Stream:
    if len(fmt) < 16:
        raise AudioError(shown, "wav format chunk is too short to describe the audio")
    tag, channels, rate, byte_rate, block_align, _bits = _WAV_FORMAT.unpack_from(fmt)
    if tag == _WAV_EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]  # first two bytes of the SubFormat GUID
    if not (channels and rate and byte_rate):
        raise AudioError(shown, f"wav format chunk is corrupt ({channels} channels, {rate} Hz, "
                                f"{byte_rate} bytes/s)")
    if tag in _WAV_FRAMED and block_align:
        duration = data_size // block_align / rate
    elif fact:
        duration = fact / rate
    else:
        duration = data_size / byte_rate
    return _WAV_CODECS.get(tag) or f"0x{tag:04x}", rate, channels, duration, byte_rate * 8
