"""A text manifest's encoding: chosen before its first row is used (``--encoding``, a
byte-order mark, else the whole file checked as UTF-8, else Windows-1252 with a warning), and,
when the file does not decode after all, the forensics that say where (byte offset and line)
and what to give as ``--encoding`` instead.
"""

from __future__ import annotations

import codecs
import logging
from pathlib import Path

from ..settings.userfiles import file_encoding
from .files import open_fd

log = logging.getLogger("importer.manifest")


def detect_encoding(path: Path, forced: str | None) -> str:
    """The text encoding to read ``path`` with.

    ``forced`` (``--encoding``) wins. A byte-order mark decides next. Otherwise the whole file
    is checked as UTF-8 first (a byte-level pass, far cheaper than parsing), so that a file
    which is not UTF-8 is known before its first row is used, not at row 900,000; such a file
    is read as Windows-1252, what Excel writes for "CSV" on a Western-European Windows, with a
    warning.
    """
    if forced:
        name = file_encoding(forced)
        return "utf-8-sig" if name == "utf-8" else name
    with open(open_fd(path), "rb") as handle:
        head = handle.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        lines = 0
        while True:
            block = handle.read(1 << 20)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                line = lines + block[:max(exc.start, 0)].count(b"\n") + 1
                log.warning("%s: not UTF-8 (first at line %d); reading it as Windows-1252 "
                            "(cp1252). If that is wrong, give --encoding", path, line)
                return "cp1252"
            if not block:
                return "utf-8"
            lines += block.count(b"\n")


def _first_undecodable(path: Path, encoding: str) -> tuple[int, str] | None:
    """The byte offset of the first bytes ``encoding`` cannot decode in ``path``, and why;
    None if it decodes to the end. A byte-level pass with the codec's incremental decoder:
    the text reader decodes blocks ahead of the row it hands out, so where it failed says
    little about where the bad bytes are."""
    decoder = codecs.getincrementaldecoder(encoding)()
    fed = 0
    with open(open_fd(path), "rb") as handle:
        while True:
            block = handle.read(1 << 20)
            pending = len(decoder.getstate()[0])  # bytes held back from the block before
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:  # exc.object: the held-back bytes + block
                return fed - pending + exc.start, exc.reason
            except UnicodeError as exc:  # utf-16 without a BOM, and the like
                return max(fed - pending, 0), str(exc)
            if not block:
                return None
            fed += len(block)


def _line_at(path: Path, encoding: str, offset: int) -> int:
    """The line (from 1) that byte ``offset`` of ``path`` is on, read as ``encoding``."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    lines = 1
    left = offset
    with open(open_fd(path), "rb") as handle:
        while left > 0 and (block := handle.read(min(left, 1 << 20))):
            lines += decoder.decode(block).count("\n")
            left -= len(block)
    return lines


def _valid_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(open_fd(path), "rb") as handle:
        try:
            while block := handle.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _encoding_hint(path: Path, encoding: str) -> str:
    """What to give as ``--encoding`` instead of ``encoding``, judged from the bytes."""
    with open(open_fd(path), "rb") as handle:
        head = handle.read(1 << 16)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return ("it starts with a UTF-16 byte-order mark: leave out --encoding, or give "
                "--encoding utf-16")
    pairs = len(head) // 2
    if pairs and encoding not in ("utf-16-le", "utf-16-be"):
        # UTF-16 text of mostly Latin letters: every other byte is a zero.
        odd, even = head[1::2].count(0), head[0::2].count(0)
        if max(odd, even) > pairs // 3:
            order, name = ("little", "le") if odd > even else ("big", "be")
            return (f"it has no byte-order mark and looks like UTF-16 {order}-endian: give "
                    f"--encoding utf-16-{name}")
    if _valid_utf8(path):
        return "it is valid UTF-8: leave out --encoding, or give --encoding utf-8"
    others = [e for e in ("cp1252", "cp1250", "latin-1") if e != encoding]
    return ("give the encoding it was saved in, e.g. "
            + ", ".join(f"--encoding {e}" for e in others))


def undecodable(path: Path, encoding: str) -> str:
    """The one-line reason for a file that ``encoding`` cannot decode: where (byte offset and
    line) and what to give as ``--encoding`` instead."""
    shown = "utf-8" if encoding == "utf-8-sig" else encoding
    found = _first_undecodable(path, encoding)
    if found is None:  # it decodes after all: the failure was elsewhere
        return f"cannot be read as {shown}"
    offset, why = found
    return (f"cannot be read as {shown}: byte offset {offset} (line "
            f"{_line_at(path, encoding, offset)}) is not {shown} ({why}); "
            f"{_encoding_hint(path, encoding)}")
