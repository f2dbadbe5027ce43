"""Local checks of a recording before it is sent: a migration must not spend hours uploading
files the API will refuse, or worse, accept and fail to play.

``probe`` reads headers, never the content: an fstat, the first 4 KiB, the chunk headers of
a wav, the first frames of an mp3 (at most 16 KiB). Only the optional sha256 reads the whole
file, streamed in 1 MiB chunks, so memory stays flat whatever the file's size. Everything here
is blocking; the pipeline runs it in a thread pool, beside the uploads.

Why a bare file descriptor: a header probe is little more than open, fstat, one 4 KiB read and
close, so what Python adds per file is most of its cost (and, with several probing threads,
time holding the GIL). ``io.FileIO`` costs an object and a second fstat; reads past the head
are one ``pread`` each, not a seek and a read; the facts travel as a plain tuple until the one
``AudioInfo`` is made.

Why our own wav parser: mutagen's wav reader computes GSM 6.10 durations from the block size
(off by 320 times), does not resolve WAVE_FORMAT_EXTENSIBLE to its codec, and does not notice
a header that promises more audio than the file holds. The RIFF walk below reads only chunk
headers, nearly always all in the first 4 KiB.

Why a quick mp3 reading beside mutagen's: mutagen reads frame headers, and the LAME tag, bit
by bit, which was most of a probe's time; the common mp3 (tags, then frames at once, with or
without a Xing/Info header) is read from bytes we already hold. Anything unusual (junk before
the first frame, Layer I/II, too few frames, VBRI) goes to mutagen, which decides every mp3
refusal. Tests hold the two readings equal, through mutagen's public ``MPEGInfo``, on every mp3
of the corpus and on mp3s made with damaged Xing headers. Measured by bench/shortcuts.py on the
header probe, the Xing reader nearly triples it for lame-encoded mp3s, and ``_audio_info``
gains 15%; judging the extension from the path's text (7%) and a shorter road for call dates
(under 1% of ``validate``) went.

Recording URLs are checked too: their form here (``check_url_form``), and, with
``--check-urls``, what the server answers (``judge_url_answer``; the HTTP is the client's).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import os
import stat as stat_mod
import struct
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

from mutagen import MutagenError
from mutagen.mp3 import BitrateMode, MPEGInfo

from ..errors import AudioError, MachineError

AudioFormat = Literal["mp3", "wav"]
CONTENT_TYPES: dict[AudioFormat, str] = {"mp3": "audio/mpeg", "wav": "audio/wav"}
ACCEPTED: tuple[AudioFormat, ...] = ("mp3", "wav")

#: How much of the file's start is read at once: the RIFF header and the chunks before
#: ``data`` in nearly every wav, an ID3v2 header, enough to recognize other formats.
HEAD_BYTES = 4096
#: Read size when hashing: large enough that the syscalls cost nothing next to the hash.
HASH_CHUNK = 1 << 20
#: A wav with more chunks than this before its audio is not one any recorder wrote.
MAX_WAV_CHUNKS = 64
#: mp3s without a Xing/VBRI header: up to this many frames at the start, within this window,
#: show whether the bitrate is constant and, if not, its average.
VBR_WINDOW = 16 * 1024
VBR_FRAMES = 32
#: Reads past the head end at a page boundary: the page cache's unit, so a read never takes
#: part of a page it will need again.
_PAGE = 4096

_WAV_CODECS = {1: "pcm", 2: "ms-adpcm", 3: "float", 6: "alaw", 7: "mulaw", 0x11: "ima-adpcm",
               0x31: "gsm610", 0x55: "mpeg-layer3"}
_WAV_EXTENSIBLE = 0xFFFE
#: Codecs whose duration is exactly data size / block size; others use ``fact`` or byte rate.
_WAV_FRAMED = frozenset({1, 3, 6, 7})

#: What other content is, for the reason given when it is refused.
_DESCRIPTIONS = {
    "ogg": "Ogg (Vorbis/Opus) audio", "flac": "FLAC audio", "m4a": "MP4/M4A (AAC) audio",
    "aac": "raw AAC (ADTS) audio", "amr": "AMR audio", "wma": "WMA/ASF audio",
    "aiff": "AIFF audio", "au": "Sun/NeXT .au audio", "caf": "Core Audio (CAF) audio",
    "webm": "WebM/Matroska", "rf64": "RF64 (64-bit wav)", "riff": "a RIFF file that is not WAVE",
    "zip": "a zip archive", "pdf": "a PDF document", "text": "text, not audio",
    "unknown": "not audio we recognize",
}
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"OggS", "ogg"), (b"fLaC", "flac"), (b"#!AMR", "amr"), (b".snd", "au"), (b"caff", "caf"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "wma"), (b"\x1a\x45\xdf\xa3", "webm"),
    (b"RF64", "rf64"), (b"PK\x03\x04", "zip"), (b"%PDF", "pdf"),
)

# MPEG audio frame header tables, for the VBR window (mutagen's MPEGFrame is exact but slow).
_MPEG_VERSIONS = {0: 2.5, 2: 2.0, 3: 1.0}
_MPEG_RATES = {1.0: (44100, 48000, 32000), 2.0: (22050, 24000, 16000),
               2.5: (11025, 12000, 8000)}
_L3_CODECS = {version: f"mpeg{version:g}-layer3" for version in _MPEG_RATES}
_L3_KBPS = {1.0: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
            2.0: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}


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

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


#: What a header reader learned: (codec, sample rate, channels, duration, bitrate).
_Stream = tuple[str, int, int, float, int]


def sniff(head: bytes) -> str:
    """The format the first bytes show: ``wav``, ``mp3``, or a name for what it is instead
    (a key of ``_DESCRIPTIONS``)."""
    if head[:4] == b"RIFF":
        return "wav" if head[8:12] == b"WAVE" else "riff"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 3 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        if head[1] & 0xF6 == 0xF0:
            return "aac"  # ADTS: an MPEG sync whose layer bits are 00
        if _mpeg_header_ok(head[1], head[2]):
            return "mp3"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[4:8] == b"ftyp":
        return "m4a"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    return "text" if _looks_like_text(head[:512]) else "unknown"


def _mpeg_header_ok(b1: int, b2: int) -> bool:
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    return version != 1 and layer != 0 and b2 >> 4 not in (0, 15) and (b2 >> 2) & 3 != 3


def _looks_like_text(sample: bytes) -> bool:
    if not sample or b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 3:  # only a character cut at the end is forgiven
            return False
    return True


def probe(path: Path, max_size: int, *, max_duration: float | None = None,
          digest: bool = True, known: tuple[int, int, str] | None = None,
          keep: int = 0) -> AudioInfo:
    """Check that ``path`` is an mp3 or wav the API can take; ``AudioError`` says why not.

    ``max_duration`` is in seconds (None: no limit). ``digest`` adds the sha256 of the whole
    file, streamed; without it only headers are read. ``known`` is (size, mtime_ns, sha256) of
    an earlier probe of this file: when the file still has that size and mtime, its sha256 is
    taken as known, not read again (a resumed run does not re-hash what it hashed before).
    A file of at most ``keep`` bytes is read whole, once, and kept (``AudioInfo.data``).
    """
    fd, st, path = _open(path, max_size)
    shown = str(path)
    size = st.st_size
    data = None
    try:
        if size <= keep:
            head = data = _read_whole(fd, size)
        else:
            head = os.read(fd, HEAD_BYTES)
        real = _check_kind(path, sniff(head))
        codec, rate, channels, duration, bitrate = \
            _wav(fd, head, size, shown) if real == "wav" else _mp3(fd, head, size, shown)
        _check_duration(duration, max_duration, shown)
        sha256 = None
        if digest:
            unchanged = known is not None and known[0] == size and known[1] == st.st_mtime_ns
            sha256 = known[2] if unchanged and known is not None else \
                hashlib.sha256(data).hexdigest() if data is not None else _sha256(fd)
    except OSError as exc:
        raise _os_error(shown, exc) from None
    finally:
        os.close(fd)
    info = _audio_info(path, real, codec, rate, channels, duration, bitrate, size, sha256,
                       st.st_mtime_ns)
    if data is not None:
        info.__dict__["data"] = data
    return info


def _read_whole(fd: int, size: int) -> bytes:
    """A small file's bytes, all of them (a read may return less than asked)."""
    data = os.read(fd, size)
    while len(data) < size and (more := os.read(fd, size - len(data))):
        data += more
    if len(data) != size:
        raise OSError(errno.EIO, f"read {len(data):,} bytes of {size:,}")
    return data


def _audio_info(path: Path, fmt: AudioFormat, codec: str, rate: int, channels: int,
                duration: float, bitrate: int, size: int, sha256: str | None,
                mtime_ns: int = 0) -> AudioInfo:
    """``AudioInfo(...)`` in a third of the time. A frozen dataclass's ``__init__`` sets each
    field through ``object.__setattr__``, ten calls: a tenth of a header probe. Here they go
    into the instance's ``__dict__`` at once (AudioInfo has no slots and no ``__post_init__``;
    a test holds the two ways equal, field for field)."""
    info: AudioInfo = object.__new__(AudioInfo)
    info.__dict__.update(path=path, format=fmt, codec=codec, sample_rate=rate,
                         channels=channels, duration=duration, bitrate=bitrate, size=size,
                         sha256=sha256, mtime_ns=mtime_ns, data=None)
    return info


#: Opening never blocks (a pipe named .wav would wait for a writer) and is not inherited.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
    | getattr(os, "O_BINARY", 0)


def _open(path: Path, max_size: int) -> tuple[int, os.stat_result, Path]:
    """The file's descriptor (unbuffered: every read is one we chose; a buffer would read
    8 KiB for our 4 KiB, which costs time on a cold disk), its stat, after the checks a stat
    answers, and its path. One path lookup; the rest is one ``fstat`` on what was opened.

    A name not found is tried in the other Unicode normalizations before it is called
    missing: a sheet typed on one system says ``José`` in one code point (NFC) where the disk
    of another holds ``e`` and a combining accent (NFD, as macOS writes names); the two look
    the same in every message."""
    shown = str(path)
    try:
        fd = os.open(shown, _OPEN_FLAGS)  # the path's text: no os.fspath on the way
    except FileNotFoundError as exc:
        fd, path = _other_normalization(shown, exc)
        shown = str(path)
    except OSError as exc:
        reason = _os_reason(exc)
        if exc.errno == errno.EACCES:
            try:
                os.stat(path)
            except OSError:
                reason += " (a folder on its path refuses access)"
        raise _os_error(shown, exc, reason) from None
    try:
        st = os.fstat(fd)
        _check_file(st, shown, max_size)
        return fd, st, path
    except BaseException:
        os.close(fd)
        raise


def _other_normalization(shown: str, missing: FileNotFoundError) -> tuple[int, Path]:
    """The file under the same name in another Unicode normalization, or ``AudioError``
    ("file not found")."""
    for form in ("NFC", "NFD"):
        other = unicodedata.normalize(form, shown)
        if other != shown:
            try:
                return os.open(other, _OPEN_FLAGS), Path(other)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _os_error(other, exc) from None
    raise _os_error(shown, missing) from None


#: Errors that say the machine ran short, not that the row or its file is wrong.
_SHORTAGES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


def _os_error(shown: str, exc: OSError, reason: str | None = None) -> AudioError | MachineError:
    """The error for a file the system would not open or read: the row's (``AudioError``), or,
    for a shortage of this machine's (too many open files, no memory), ``MachineError``."""
    if exc.errno in _SHORTAGES:
        return MachineError(shown, f"cannot open: {(exc.strerror or str(exc)).lower()} (this "
                                   "machine's shortage, not the recording's: the row is tried "
                                   "again on the next run or retry)")
    return AudioError(shown, reason or _os_reason(exc))


def _os_reason(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "cannot read: no read permission"
    if exc.errno == errno.ENOENT:
        return "file not found"
    return f"cannot read: {exc.strerror or exc}"


def _check_file(st: os.stat_result, shown: str, max_size: int) -> int:
    """The file's size, after the checks a stat answers (a regular file, its size)."""
    size = st.st_size
    if 0 < size <= max_size and stat_mod.S_ISREG(st.st_mode):
        return size  # the usual answer, in one test
    if stat_mod.S_ISDIR(st.st_mode):
        raise AudioError(shown, "is a folder, not a recording")
    if not stat_mod.S_ISREG(st.st_mode):
        raise AudioError(shown, "is not a regular file (a device, pipe or socket)")
    if st.st_size == 0:
        raise AudioError(shown, "file is empty (0 bytes)")
    if st.st_size > max_size:
        raise AudioError(shown, f"file is {st.st_size:,} bytes, over the limit of {max_size:,} "
                                "(--max-file-size)")
    return st.st_size


def _check_kind(path: Path, real: str) -> AudioFormat:
    """The real format if the API takes it and the extension agrees; else why not."""
    shown = str(path)
    suffix = path.suffix
    claimed = suffix.lower().lstrip(".")
    named = f"named .{claimed} but " if claimed in ACCEPTED else ""
    if real == "mp3":
        fmt: AudioFormat = "mp3"
    elif real == "wav":
        fmt = "wav"
    else:
        content = "the content" if named else "content"
        raise AudioError(shown, f"{named}{content} is {_DESCRIPTIONS[real]}; the API takes mp3 "
                                "or wav")
    if claimed in ACCEPTED and claimed != fmt:
        raise AudioError(shown, f"named .{claimed} but the content is {fmt}: rename it .{fmt}")
    if claimed not in ACCEPTED:
        raise AudioError(shown, f"extension {suffix or '(none)'!r} is not .mp3 or .wav "
                                f"(the content is {fmt}: rename it .{fmt})")
    return fmt


def _check_duration(duration: float, limit: float | None, shown: str) -> None:
    if duration <= 0:
        raise AudioError(shown, "no audio (zero duration)")
    if limit is not None and duration > limit:
        raise AudioError(shown, f"lasts {_clock(duration)} ({duration:,.0f} s), over the limit "
                                f"of {_clock(limit)} (--max-recording-duration)")


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _sha256(fd: int) -> str:
    """The whole file's sha256, read in ``HASH_CHUNK`` pieces into one reused buffer.

    (Telling the kernel first that the whole file will be read, POSIX_FADV_WILLNEED, was
    tried: on 2000 files of 3 MB it made the hash no faster and a bare read slower.)
    """
    handle = io.FileIO(fd, "rb", closefd=False)  # for readinto; the caller closes fd
    handle.seek(0)
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(HASH_CHUNK))
    while count := handle.readinto(buffer):
        digest.update(buffer[:count])
    return digest.hexdigest()


# --- wav --------------------------------------------------------------------------------------

def _read_at(fd: int, head: bytes, offset: int, count: int) -> bytes:
    if offset + count <= len(head):
        return head[offset:offset + count]
    return os.pread(fd, count, offset)


_CHUNK_HEADER = struct.Struct("<4sI")
_WAV_FORMAT = struct.Struct("<HHIIHH")


def _wav(fd: int, head: bytes, size: int, shown: str) -> _Stream:
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


def _wav_stream(fmt: bytes, fact: int | None, data_size: int, shown: str) -> _Stream:
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


# --- mp3 --------------------------------------------------------------------------------------

def _mp3(fd: int, head: bytes, size: int, shown: str) -> _Stream:
    """The common mp3 from its first 4 KiB (``_mp3_quick``); anything else by mutagen."""
    quick = _mp3_quick(fd, head, size)
    return quick if quick is not None else _mp3_mutagen(fd, size, shown)


def _mp3_mutagen(fd: int, size: int, shown: str) -> _Stream:
    """mutagen finds the first frames (after any ID3v2 tags, past junk) and reads a Xing/VBRI
    header; without one it assumes CBR, which we check on the frames of a small window. It
    also decides every refusal: no frames, Layer I/II, too few frames in a row."""
    handle = io.FileIO(fd, "rb", closefd=False)  # mutagen reads a file object; the caller closes
    handle.seek(0)
    try:
        info = MPEGInfo(handle)
    except OSError:
        raise  # the caller names it
    except MutagenError:
        raise AudioError(shown, "no MPEG audio frames found: not a playable mp3") from None
    except Exception as exc:  # a parser of untrusted bytes may fail any way: a row error, still
        raise AudioError(shown, f"not a playable mp3 (mutagen: {type(exc).__name__})") from None
    version = float(info.version)
    if info.layer != 3:
        raise AudioError(shown, f"content is MPEG-{version:g} Layer {'I' * info.layer} audio "
                                f"(mp{info.layer}), not mp3 (Layer III)")
    if info.sketchy:
        raise AudioError(shown, "fewer than 4 MPEG frames in a row: not a playable mp3")
    duration, bitrate = float(info.length), int(info.bitrate)
    if info.bitrate_mode == BitrateMode.UNKNOWN:
        _, total, count = _frame_run(os.pread(fd, VBR_WINDOW, info.frame_offset))
        average = total / count if count else 0.0
        if average and round(average * 1000) != bitrate:  # VBR without a header
            bitrate = round(average * 1000)
            duration = (size - info.frame_offset) * 8 / bitrate
    return (f"mpeg{version:g}-layer3", int(info.sample_rate), int(info.channels), duration,
            bitrate)


def _mp3_quick(fd: int, head: bytes, size: int) -> _Stream | None:
    """The same facts as ``_mp3_mutagen`` (a test holds them equal), for the mp3 encoders
    write: ID3v2 tags that end inside ``head``, then at once a Layer III frame that carries a
    Xing/Info header (``_xing_header``), or starts a run of at least 4 frames. None for
    anything else. mutagen reads frame headers and the LAME tag bit by bit: a probe of such an
    mp3 took about 75 us through mutagen and 11 to 13 us this way (single thread, warm
    cache)."""
    offset = 0
    while head[offset:offset + 3] == b"ID3":
        tag = head[offset + 6:offset + 10]
        if len(tag) < 4 or any(b & 0x80 for b in tag):
            return None
        offset += 10 + (tag[0] << 21 | tag[1] << 14 | tag[2] << 7 | tag[3])
    frame = _l3_header(head[offset:offset + 4])
    if frame is None:
        return None
    version, rate, channels = frame[:3]
    codec = _L3_CODECS[version]
    xing_at = offset + (36 if channels == 2 else 21) if version == 1.0 \
        else offset + (21 if channels == 2 else 13)
    if head[xing_at:xing_at + 4] in (b"Xing", b"Info"):
        xing = _xing(head, xing_at, offset, frame)
        return None if xing is None else (codec, rate, channels, *xing)
    if head[offset + 36:offset + 40] == b"VBRI":
        return None  # Fraunhofer's header: rare, left to mutagen
    # The frames of the window VBR_WINDOW long from ``offset``, read no further than they go:
    # past ``head`` only to the page where the frames still wanted would end, at the first
    # frame's length (a CBR stream: one pread, before the walk), then at the run's mean
    # length while the run goes on past what was read. The answer is the whole window's.
    window = head[offset:]
    pos = total = count = 0
    length = frame[4] + (head[offset + 2] >> 1 & 1)  # the padding bit adds one byte
    while True:
        reach = offset + pos + (VBR_FRAMES - count) * length + 4
        read = offset + len(window)
        if reach > read and len(window) < VBR_WINDOW and read < size:
            more = os.pread(fd, min(offset + VBR_WINDOW, -(-reach // _PAGE) * _PAGE, size) - read,
                            read)
            if not more:  # the file is shorter than its fstat said: being cut?
                return None  # mutagen reads what there is
            window += more
        pos, total, count = _frame_run(window, pos, total, count)
        if count == VBR_FRAMES or len(window) - pos >= 4 or len(window) >= VBR_WINDOW \
                or offset + len(window) >= size:
            break
        length = -(-pos // count)  # the run went on past what was read
    if count < 4:
        return None
    bitrate = round(total / count * 1000)
    return codec, rate, channels, (size - offset) * 8 / bitrate, bitrate


@functools.lru_cache(maxsize=1024)
def _l3_header(header: bytes) -> tuple[float, int, int, int, int] | None:
    """(version, sample rate, channels, kbps, length without padding) of a Layer III frame
    header, or None if these 4 bytes are not one."""
    if len(header) < 4:
        return None
    b1, b2, b3 = header[1], header[2], header[3]
    if header[0] != 0xFF or b1 & 0xE0 != 0xE0 or b1 >> 1 & 3 != 1 or not _mpeg_header_ok(b1, b2):
        return None
    version = _MPEG_VERSIONS[b1 >> 3 & 3]
    kbps = _L3_KBPS[min(version, 2.0)][b2 >> 4]
    rate = _MPEG_RATES[version][b2 >> 2 & 3]
    samples = 1152 if version == 1.0 else 576
    channels = 1 if b3 >> 6 == 3 else 2
    return version, rate, channels, kbps, samples // 8 * kbps * 1000 // rate


def _xing(head: bytes, xing_at: int, offset: int,
          frame: tuple[float, int, int, int, int]) -> tuple[float, int] | None:
    """(duration, bitrate) from the Xing/Info header (and LAME tag) of the first frame,
    computed as mutagen does; None if it gives no frame count or is cut short by the end of
    ``head``."""
    version, rate, _, kbps, length = frame
    length += head[offset + 2] >> 1 & 1  # the padding bit adds one byte
    xing = _xing_header(head, xing_at)
    if xing is None or xing[0] < 0 or not _bitrate_mode_known(head, xing_at):
        return None
    frames, size, trim = xing
    count = (1152 if version == 1.0 else 576) * frames
    bitrate = kbps * 1000
    if size >= 0 and count > 0:
        bitrate = round(max(0, size - length) * 8 * rate / count)
    count -= trim  # encoder delay and padding are not audio
    return max(count, 0) / rate, bitrate


def _xing_header(data: bytes, at: int) -> tuple[int, int, int] | None:
    """(frames, bytes, samples of encoder delay and padding) of the Xing/Info header at
    ``data[at:]``: -1 for a count it leaves out, 0 samples without a LAME tag. None where
    mutagen's ``XingHeader`` would raise (not such a header, or cut short).

    mutagen's reader gives the same (a test holds the two equal, on the corpus and on many
    damaged headers) but reads the LAME tag bit by bit into some thirty fields: it was about
    half of a probe of a lame-encoded mp3. Two of those fields are all we use."""
    if data[at:at + 4] not in (b"Xing", b"Info") or len(data) < at + 8:
        return None
    flags = data[at + 7] & 0x0F  # the low byte of a big-endian 32-bit field holds them all
    pos = at + _XING_LENGTHS[flags]
    if len(data) < pos:
        return None  # a field it announces is cut short
    frames = size = -1
    if flags & 1:
        frames = int.from_bytes(data[at + 8:at + 12])
    if flags & 2:
        size = int.from_bytes(data[at + 12:at + 16] if flags & 1 else data[at + 8:at + 12])
    trim = 0
    tag = data[pos + 9:pos + 36]  # after "LAME3.100" or the like
    if len(tag) == 27 and tag[0] >> 4 == 0 and _lame_tag_follows(data[pos:pos + 20]):
        # tag revision 0, the one mutagen reads: 12 bits of encoder delay, then 12 of
        # padding, both in samples
        trim = (tag[12] << 4 | tag[13] >> 4) + ((tag[13] & 0x0F) << 8 | tag[14])
    return frames, size, trim


def _bitrate_mode_known(data: bytes, at: int) -> bool:
    """Whether mutagen would know the bitrate mode from this Xing/Info header: an "Info"
    header (lame's CBR), a quality field (flag 8), or a LAME tag. Where it would not, the probe
    checks the header's counts against the frames themselves (``_mp3_mutagen``), so the quick
    reading leaves such a file to it."""
    if data[at:at + 4] == b"Info" or data[at + 7] & 8:
        return True
    pos = at + _XING_LENGTHS[data[at + 7] & 0x0F]
    return _lame_tag_follows(data[pos:pos + 20])


#: The length of a Xing/Info header with each set of its flags: 8 bytes, then the frame
#: count (flag 1), byte count (2), seek table (4, 100 bytes), quality indicator (8).
_XING_LENGTHS = tuple(8 + 4 * (flags & 1) + 4 * (flags >> 1 & 1) + 100 * (flags >> 2 & 1)
                      + 4 * (flags >> 3 & 1) for flags in range(16))


def _lame_tag_follows(version: bytes) -> bool:
    """Whether these 20 bytes after a Xing header begin a LAME tag that mutagen reads: its
    ``LAMEHeader.parse_version``, down to its quirks (3.90 alphas have none)."""
    if len(version) != 20 or not version.startswith((b"LAME", b"L3.99")):
        return False
    if version[:6] == b"LAME3." and version[6:9].isdigit() and not version[9:10].isdigit():
        return True  # "LAME3.100", the usual: 3.100 is after 3.90, 11 bytes follow the number
    rest = version.lstrip(b"EMAL")
    major, rest = rest[0:1], rest[1:].lstrip(b".")
    minor = rest[:len(rest) - len(rest.lstrip(b"0123456789"))]
    if not (major.isdigit() and minor):
        return False
    rest = rest[len(minor):]
    release = (int(major), int(minor))
    if release < (3, 90) or (release == (3, 90) and rest[-11:-10] == b"("):
        return False
    return len(rest) >= 11


@functools.lru_cache(maxsize=1024)
def _l3_step(header: bytes) -> tuple[int, int] | None:
    """(kbps, length with its padding byte) of the Layer III frame these 4 bytes start."""
    frame = _l3_header(header)
    return None if frame is None else (frame[3], frame[4] + (header[2] >> 1 & 1))


def _frame_run(window: bytes, pos: int = 0, total: int = 0,
               count: int = 0) -> tuple[int, int, int]:
    """Walk the consecutive Layer III frames of ``window`` from ``pos``, until one is not
    there, its header runs past the window's end, or ``count`` reaches ``VBR_FRAMES``; each
    adds its bitrate to ``total``. Returns (where the walk stopped, total, count): a walk
    that stopped at the window's end may go on in a longer window.

    A CBR stream without padding repeats one header at a fixed stride: such a run is checked
    with a strided comparison per header byte, not a step per frame. Frames whose first three
    header bytes are the same have the same bitrate and length (the fourth says only the
    channel mode and flags), so the answer is the step-by-step one. Anything else, steps."""
    first = _l3_step(window[pos:pos + 4])
    if first is not None:
        kbps, length = first
        fits = (len(window) - 4 - pos) // length + 1  # headers at pos + i * length that fit
        run = min(VBR_FRAMES - count, fits)
        end = pos + (run - 1) * length + 1
        if run > 4 and window[pos:end:length] == window[pos:pos + 1] * run \
                and window[pos + 1:end + 1:length] == window[pos + 1:pos + 2] * run \
                and window[pos + 2:end + 2:length] == window[pos + 2:pos + 3] * run:
            pos, total, count = pos + run * length, total + run * kbps, count + run
    step = _l3_step
    while count < VBR_FRAMES:
        frame = step(window[pos:pos + 4])
        if frame is None:
            break
        total += frame[0]
        pos += frame[1]
        count += 1
    return pos, total, count


# --- recording URLs ---------------------------------------------------------------------------

#: Extensions a URL's path may end with that name a format the API does not take.
_URL_NOT_MP3_WAV = frozenset({".ogg", ".oga", ".opus", ".flac", ".m4a", ".mp4", ".aac", ".amr",
                              ".wma", ".aif", ".aiff", ".webm", ".gsm", ".3gp"})
_NOT_AUDIO_TYPES = frozenset({"text", "image", "video", "font", "model", "multipart", "message"})
_NOT_AUDIO_APPLICATION = frozenset({"json", "xml", "xhtml+xml", "pdf", "zip", "gzip", "x-gzip",
                                    "javascript", "x-tar", "msword", "problem+json"})
_OTHER_AUDIO = frozenset({"audio/ogg", "audio/flac", "audio/x-flac", "audio/mp4", "audio/aac",
                          "audio/x-m4a", "audio/webm", "audio/opus", "audio/amr",
                          "audio/x-ms-wma", "audio/aiff", "audio/x-aiff", "audio/3gpp"})


@dataclass(frozen=True)
class UrlAnswer:
    """What the server of a ``recording_url`` said to a HEAD (or a one-byte ranged GET).

    ``content_type`` is lower case without parameters, None when the server sent none;
    ``size`` is the whole file's length when the answer tells it.
    """

    method: str
    status: int
    content_type: str | None
    size: int | None


def check_url_form(url: str) -> None:
    """Refuse a ``recording_url`` whose form alone shows the API could not fetch it."""
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise AudioError(url, "URL contains spaces or control characters (encode them as %20)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AudioError(url, "not an http:// or https:// URL with a host name")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise AudioError(url, "URL has an invalid port number") from None
    suffix = PurePosixPath(parts.path).suffix.lower()
    if suffix in _URL_NOT_MP3_WAV:
        raise AudioError(url, f"URL names a {suffix} file; the API takes mp3 or wav")


def judge_url_answer(url: str, answer: UrlAnswer, max_size: int) -> None:
    """Refuse a URL the server will not serve as mp3/wav audio: a non-2xx answer, a content
    type that is clearly something else, an empty or oversized file. An unknown or generic
    type (``application/octet-stream``, none at all) passes: many stores serve audio so."""
    said = f"{answer.method} answered"
    if not 200 <= answer.status < 300:
        raise AudioError(url, f"URL is not available: {said} HTTP {answer.status}")
    ctype = answer.content_type
    if ctype:
        main, _, sub = ctype.partition("/")
        if main in _NOT_AUDIO_TYPES or (main == "application" and sub in _NOT_AUDIO_APPLICATION):
            raise AudioError(url, f"URL serves {ctype}, not audio")
        if ctype in _OTHER_AUDIO:
            raise AudioError(url, f"URL serves {ctype}; the API takes mp3 or wav")
    if answer.size == 0:
        raise AudioError(url, "URL serves an empty file (0 bytes)")
    if answer.size is not None and answer.size > max_size:
        raise AudioError(url, f"URL serves {answer.size:,} bytes, over the limit of "
                              f"{max_size:,} (--max-file-size)")
