"""A delimited text manifest (``.csv``, ``.tsv``, ``.txt``): its delimiter sniffed (comma,
semicolon, tab or pipe: whichever makes a header of upload fields), its rows read with the csv
module, and a file still being written refused, before reading (its last line has no end) or
after (it changed while it was read).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import ManifestError
from .columns import HEADER_SCAN_ROWS, blank, fields_named, find_header
from .encodings import detect_encoding, undecodable
from .files import open_fd, read_failure

DELIMITERS = (",", ";", "\t", "|")
_SAMPLE_CHARS = 1 << 16


class CsvSource:
    """A delimited text file, read with the csv module rather than pandas: pandas shifts or
    silently drops the cells of a row longer than the header, where we must name that row."""

    ragged_rows_are_errors = True

    def __init__(self, path: Path, encoding: str, delimiter: str) -> None:
        self.path = path
        self.encoding = encoding
        self.delimiter = delimiter

    def records(self) -> Iterator[tuple[int, list[str]]]:
        # The sheet's row number is the record's: one per record, a blank line is a row too
        # (a quoted cell spanning lines is one row, as in Excel).
        ended = number = 0  # the line the last good record ended on, and its number
        try:
            with open(open_fd(self.path), encoding=self.encoding, newline="") as handle:
                before = os.fstat(handle.fileno())
                reader = csv.reader(handle, delimiter=self.delimiter, strict=True)
                for number, cells in enumerate(reader, start=1):
                    yield number, cells
                    ended = reader.line_num
                _unchanged_while_read(self.path, before, os.fstat(handle.fileno()))
        except csv.Error as exc:
            # A quote left open swallows the rest of the file: the error comes at its end,
            # but the place to fix is where the broken record starts.
            where = f"row {number + 1} (line {ended + 1})"
            if "unexpected end of data" in str(exc):
                raise ManifestError(str(self.path), f"{where}: a quoted value opened there is "
                                    "never closed (a stray \" in a cell?); "
                                    f"{read_failure(exc, self.encoding)}") from None
            raise ManifestError(str(self.path),
                                f"{where}: {read_failure(exc, self.encoding)}") from None
        except UnicodeError:  # a UnicodeDecodeError, or utf-16's "no BOM"
            raise ManifestError(str(self.path), undecodable(self.path, self.encoding)) from None
        except OSError as exc:
            raise ManifestError(str(self.path), read_failure(exc, self.encoding)) from None

    def estimate_records(self) -> int | None:
        # Line-feed bytes, counted without decoding: fast, exact for UTF-8 and the 8-bit
        # encodings unless cells hold line breaks, close enough for UTF-16.
        lines = 0
        last = b"\n"
        with open(open_fd(self.path), "rb") as handle:
            while block := handle.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
        return lines + (last not in (b"\n", b"\x00"))

    def close(self) -> None:
        return None


def _sample_records(text: str, delimiter: str) -> list[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    out: list[tuple[int, list[str]]] = []
    try:
        for number, cells in enumerate(reader, start=1):
            out.append((number, cells))
            if number >= HEADER_SCAN_ROWS * 2:
                break
    except csv.Error:
        pass  # the sample may end inside a quoted cell: judge by what came before
    return out


def sniff_delimiter(sample: str, renames: dict[str, str], preferred: str = ",") -> str:
    """The delimiter among comma, semicolon, tab and pipe that makes a header of the most
    upload fields; failing that, the one that splits the rows most consistently."""
    order = [preferred] + [d for d in DELIMITERS if d != preferred]
    best, best_score = preferred, (-1, -1, -1)
    for delimiter in order:
        records = _sample_records(sample, delimiter)
        header = find_header(records, renames)
        named = fields_named(header[1], renames) if header else 0
        widths = [len(cells) for _, cells in records if not blank(cells)]
        modal = max(set(widths), key=widths.count) if widths else 0
        consistent = widths.count(modal) if modal > 1 else 0
        score = (named if named >= 2 else 0, consistent, modal)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _read_sample(path: Path, encoding: str) -> str:
    with open(open_fd(path), encoding=encoding, newline="") as handle:
        sample = handle.read(_SAMPLE_CHARS)
        if len(sample) == _SAMPLE_CHARS and "\n" in sample:
            sample = sample[: sample.rindex("\n") + 1]
    return sample


def _unchanged_while_read(path: Path, before: os.stat_result, after: os.stat_result) -> None:
    """``ManifestError`` when the file changed between the first row read and the last: the
    rows read may be half of an export still being written, or of two versions of it."""
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        sizes = f"{before.st_size:,} bytes when reading began, {after.st_size:,} at its end" \
            if before.st_size != after.st_size else "modified while it was read"
        raise ManifestError(str(path), f"changed while it was read ({sizes}): still being "
                            "written? Rows read so far are recorded; run again once the file "
                            "is complete")


#: A manifest whose last line has no end and that was modified this recently may be an
#: export still being written (``--min-age`` makes it longer).
STILL_WRITTEN_SECONDS = 60.0


def check_complete(path: Path, min_age: float | None, now: float) -> None:
    """``ManifestError`` for a text manifest whose last line has no end (no newline) and that
    was modified within the last minute (or ``min_age``): an export picked up while it is
    written, whose last row, cut mid-value, must not be imported as a row."""
    try:
        with open(open_fd(path), "rb") as handle:
            st = os.fstat(handle.fileno())
            if st.st_size == 0:
                return
            handle.seek(max(0, st.st_size - 2))
            last = handle.read(2)
    except OSError:
        return  # the reader says why, if it is anything
    age = now - st.st_mtime
    ended = last.endswith((b"\n", b"\r", b"\n\x00", b"\r\x00"))  # UTF-16-LE ends so too
    if not ended and age < max(STILL_WRITTEN_SECONDS, min_age or 0):
        raise ManifestError(str(path), f"its last line has no end and it was modified "
                            f"{max(age, 0):.0f}s ago: still being written? Run again once it "
                            "is complete (a finished file ends its last line, or is older)")


def open_csv(path: Path, encoding: str | None, renames: dict[str, str]) -> CsvSource:
    shown = str(path)
    try:
        chosen = detect_encoding(path, encoding)
    except LookupError as exc:
        raise ManifestError(shown, str(exc)) from None
    except OSError as exc:
        raise ManifestError(shown, read_failure(exc, "")) from None
    try:
        sample = _read_sample(path, chosen)
    except UnicodeError:  # a UnicodeDecodeError, or utf-16's "no BOM"
        raise ManifestError(shown, undecodable(path, chosen)) from None
    except OSError as exc:
        raise ManifestError(shown, read_failure(exc, chosen)) from None
    preferred = "\t" if path.suffix.lower() == ".tsv" else ","
    return CsvSource(path, chosen, sniff_delimiter(sample, renames, preferred))
