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

The headers are read by ``wav`` (a RIFF walk of our own) and ``mp3`` (a quick reading
beside mutagen's), each saying why. Measured by bench/shortcuts.py on the header probe, the
Xing reader nearly triples it for lame-encoded mp3s, and ``_audio_info`` gains 15%; judging
the extension from the path's text (7%) and a shorter road for call dates (under 1% of
``validate``) went. Recording URLs are judged in ``urls``.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat as stat_mod
import unicodedata
from pathlib import Path

from ..errors import AudioError, MachineError
from .info import ACCEPTED, AudioFormat, AudioInfo
from .mp3 import mpeg_header_ok, read_mp3
from .wav import read_wav

#: How much of the file's start is read at once: the RIFF header and the chunks before
#: ``data`` in nearly every wav, an ID3v2 header, enough to recognize other formats.
HEAD_BYTES = 4096
#: Read size when hashing: large enough that the syscalls cost nothing next to the hash.
HASH_CHUNK = 1 << 20

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
        if mpeg_header_ok(head[1], head[2]):
            return "mp3"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[4:8] == b"ftyp":
        return "m4a"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    return "text" if _looks_like_text(head[:512]) else "unknown"


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
            read_wav(fd, head, size, shown) if real == "wav" else read_mp3(fd, head, size, shown)
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
                         sha256=sha256, mtime_ns=mtime_ns, data=None, source=None,
                         origin=None)
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
