"""An mp3's audio described from its first frames: the common mp3 (tags, then frames at once,
with or without a Xing/Info header) read from bytes the probe already holds, anything unusual
by mutagen.

Why a quick reading beside mutagen's: mutagen reads frame headers, and the LAME tag, bit by
bit, which was most of a probe's time. Anything unusual (junk before the first frame, Layer
I/II, too few frames, VBRI) goes to mutagen, which decides every mp3 refusal. Tests hold the
two readings equal, through mutagen's public ``MPEGInfo``, on every mp3 of the corpus and on
mp3s made with damaged Xing headers.
"""

from __future__ import annotations

import functools
import io
import os

from mutagen import MutagenError
from mutagen.mp3 import BitrateMode, MPEGInfo

from ..errors import AudioError
from .info import Stream

#: mp3s without a Xing/VBRI header: up to this many frames at the start, within this window,
#: show whether the bitrate is constant and, if not, its average.
VBR_WINDOW = 16 * 1024
VBR_FRAMES = 32
#: Reads past the head end at a page boundary: the page cache's unit, so a read never takes
#: part of a page it will need again.
_PAGE = 4096

# MPEG audio frame header tables, for the VBR window (mutagen's MPEGFrame is exact but slow).
_MPEG_VERSIONS = {0: 2.5, 2: 2.0, 3: 1.0}
_MPEG_RATES = {1.0: (44100, 48000, 32000), 2.0: (22050, 24000, 16000),
               2.5: (11025, 12000, 8000)}
_L3_CODECS = {version: f"mpeg{version:g}-layer3" for version in _MPEG_RATES}
_L3_KBPS = {1.0: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
            2.0: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}


def mpeg_header_ok(b1: int, b2: int) -> bool:
    """Whether the two bytes after an MPEG sync make a frame header: a known version and a
    layer, a bitrate and a sample rate that are not reserved."""
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    return version != 1 and layer != 0 and b2 >> 4 not in (0, 15) and (b2 >> 2) & 3 != 3


def read_mp3(fd: int, head: bytes, size: int, shown: str) -> Stream:
    """The common mp3 from its first 4 KiB (``_mp3_quick``); anything else by mutagen."""
    quick = _mp3_quick(fd, head, size)
    return quick if quick is not None else _mp3_mutagen(fd, size, shown)


def _mp3_mutagen(fd: int, size: int, shown: str) -> Stream:
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


def _mp3_quick(fd: int, head: bytes, size: int) -> Stream | None:
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
    if header[0] != 0xFF or b1 & 0xE0 != 0xE0 or b1 >> 1 & 3 != 1 or not mpeg_header_ok(b1, b2):
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
