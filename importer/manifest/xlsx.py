"""An Excel workbook (``.xlsx``, ``.xlsm``) as a manifest: one sheet streamed row by row by
openpyxl's read-only reader, after its zip has been checked against bombs, DTDs and odd
encodings, and with every error of a damaged file named by its part.

A workbook is a zip of XML parts, and a hostile one costs nothing to make: a 300 KB file can
hold parts that inflate a thousandfold, XML can declare entities that expand without end or
name local files. openpyxl (read-only) parses most parts whole when the workbook opens and
keeps the shared strings in memory; only sheets are streamed, and even then a row is built
whole. Python's zipfile never inflates a part past the size the zip declares for it, so the
declared sizes, checked first, bound what parsing can cost.
"""

from __future__ import annotations

import codecs
import os
import re
import zipfile
import zlib
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from xml.parsers import expat

from ..errors import ManifestError
from .files import open_fd, read_failure

if TYPE_CHECKING:
    from openpyxl.reader.excel import ExcelReader

#: Largest ``xl/sharedStrings.xml`` (uncompressed): openpyxl holds every string in memory.
#: A full-height Excel export (1,048,576 rows) with two or three unique text columns (ids,
#: paths, names) has 90-200 MB of them; 100 MiB of them held openpyxl at 631 MB peak.
MAX_SHARED_STRINGS_BYTES = 256 << 20
#: Largest other part read whole (workbook, styles, relationships, properties, theme, ...):
#: a few MB even in bloated real workbooks; 100 MiB of styles.xml held openpyxl at 365 MB.
MAX_PART_BYTES = 64 << 20
#: Sheets are streamed and need no size cap; but a sheet, or the shared strings, that
#: inflates more than this (from over ``RATIO_FLOOR`` bytes) is a bomb: real sheets and
#: shared strings compress 8:1 to 20:1, deflate bombs about 1000:1. (A row is built whole:
#: one row of 100 MB of cells, 340:1, grew the process to 2.5 GB.)
MAX_COMPRESSION_RATIO = 100
RATIO_FLOOR = 1 << 20
#: A DTD can only come before the root element; this much of a part's start is looked at.
_PROLOG_BYTES = 1 << 16
#: Excel's last row: openpyxl yields an empty row for each row number a sheet skips, so a
#: row numbered a billion would keep us reading empty rows for an hour.
EXCEL_MAX_ROWS = 1_048_576
_SHEET_PART = re.compile(r"^xl/(work|chart)sheets/[^/]+\.xml$", re.IGNORECASE)
_STRINGS_PART = "xl/sharedStrings.xml"
_XML_PART = re.compile(r"\.(xml|rels|vml)$", re.IGNORECASE)
_XML_ENCODING = re.compile(r"""encoding\s*=\s*["']([^"']*)["']""")
_ASCII = bytes(range(128))
_WHAT_TO_DO = "if the workbook is genuine, save it as CSV UTF-8 and import that"


def _mib(size: int) -> str:
    return f"{size >> 20} MiB"


def _check_part_sizes(archive: zipfile.ZipFile, file_size: int, shown: str) -> None:
    """Refuse a workbook whose parts would inflate past the caps, before any is parsed."""
    infos = archive.infolist()
    if sum(info.compress_size for info in infos) > file_size:
        raise ManifestError(shown, "its parts claim more compressed bytes than the file holds "
                            "(overlapping parts: a zip bomb?); " + _WHAT_TO_DO)
    for info in infos:
        name, size, packed = info.filename, info.file_size, info.compress_size
        streamed = bool(_SHEET_PART.match(name))
        limit = None if streamed else \
            MAX_SHARED_STRINGS_BYTES if name == _STRINGS_PART else MAX_PART_BYTES
        if limit is not None and size > limit:
            raise ManifestError(shown, f"{name} would be {size:,} bytes uncompressed, over the "
                                f"limit of {_mib(limit)} for a part read whole (a zip bomb?); "
                                + _WHAT_TO_DO)
        if (streamed or name == _STRINGS_PART) and size > RATIO_FLOOR \
                and size > MAX_COMPRESSION_RATIO * max(packed, 1):
            raise ManifestError(shown, f"{name} would be {size:,} bytes uncompressed from "
                                f"{packed:,} ({size // max(packed, 1)}:1), over the limit of "
                                f"{MAX_COMPRESSION_RATIO}:1 (a zip bomb?); " + _WHAT_TO_DO)


def _prolog_text(head: bytes) -> str:
    """The start of an XML part as text, in the encoding its first bytes show (UTF-8 or
    UTF-16, with or without a byte-order mark), as an XML parser would detect it."""
    for bom, codec in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                       (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            return head[len(bom):].decode(codec, "replace")
    if head[:2] == b"<\x00":
        return head.decode("utf-16-le", "replace")
    if head[:2] == b"\x00<":
        return head.decode("utf-16-be", "replace")
    return head.decode("utf-8", "replace")


def _declared_encoding_problem(declaration: str) -> str | None:
    """Why the encoding an XML declaration names is refused, or None. Our scan for a DTD
    reads the part as UTF-8 or UTF-16; an encoding that writes ``<!`` otherwise (EBCDIC,
    UTF-7, UTF-32) could hide one from it. OPC, the zip format of xlsx, allows only UTF-8
    and UTF-16."""
    match = _XML_ENCODING.search(declaration)
    if match is None:
        return None
    name = match.group(1)
    try:
        if codecs.lookup(name).name.startswith("utf-16"):
            return None
        if _ASCII.decode(name) == _ASCII.decode("ascii"):
            return None
    except (LookupError, UnicodeError):
        pass
    return (f"declares encoding {name!r}, which no spreadsheet program writes (a workbook's "
            "XML is UTF-8 or UTF-16); refused unread")


def _prolog_problem(head: bytes, whole: bool) -> str | None:
    """Why an XML part that starts with ``head`` must not be parsed, or None.

    A DTD (``<!DOCTYPE``) is what external entities (``SYSTEM "file:///etc/passwd"``) and
    entity expansion ("billion laughs") need, no spreadsheet program writes one, and it can
    only stand before the root element: so the prolog (XML declaration, comments, processing
    instructions) is walked to the root element, and a DTD refused before any parser sees it.
    ``whole``: ``head`` is the whole part (else only its first ``_PROLOG_BYTES``)."""
    text = _prolog_text(head)
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if text.startswith("<?", pos):
            close = text.find("?>", pos)
            if close >= 0 and pos == 0 and text.startswith("<?xml", pos):
                problem = _declared_encoding_problem(text[pos:close])
                if problem:
                    return problem
            pos = close + 2
        elif text.startswith("<!--", pos):
            close = text.find("-->", pos + 4)
            pos = close + 3
        elif text.startswith("<!", pos):
            return ("declares a DTD (<!DOCTYPE ...>), which no spreadsheet program writes and "
                    "which can make a parser read local files or expand without end; refused "
                    "unread")
        else:
            return None  # the root element, or not XML at all (the parser will say)
        if close < 0:  # a declaration or comment that does not end within the head
            return None if whole else (f"starts with over {_PROLOG_BYTES >> 10} KiB of "
                                       "declarations and comments; refused unread")


def _check_prologs(archive: zipfile.ZipFile, shown: str) -> None:
    for info in archive.infolist():
        if not _XML_PART.search(info.filename):
            continue
        with archive.open(info) as part:
            head = part.read(_PROLOG_BYTES)
        problem = _prolog_problem(head, len(head) < _PROLOG_BYTES)
        if problem:
            raise ManifestError(shown, f"{info.filename} {problem}")


def _check_workbook(handle: IO[bytes], shown: str) -> None:
    """The checks a workbook's zip must pass before openpyxl parses any of it: sizes and
    compression ratios (zip bombs), then each XML part's prolog (DTDs, odd encodings)."""
    size = os.fstat(handle.fileno()).st_size
    try:
        with zipfile.ZipFile(handle) as archive:
            _check_part_sizes(archive, size, shown)
            _check_prologs(archive, shown)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
        raise ManifestError(shown, "not a readable .xlsx workbook (a password-protected "
                            f"workbook, a damaged copy, or another format renamed?): "
                            f"{_damage(exc)}") from None


_MISSING = re.compile(r"There is no item named '(.+)' in the archive")
_BAD_CRC = re.compile(r"Bad CRC-32 for file '(.+)'")


def _damage(exc: BaseException) -> str:
    """What a parsing or unzipping error says about the workbook, in the user's words."""
    if isinstance(exc, IndexError):
        return "a cell refers to a shared string that is not there"
    if isinstance(exc, SyntaxError | expat.ExpatError):  # ElementTree's ParseError
        return f"not well-formed XML ({exc})"
    if isinstance(exc, zlib.error | EOFError):
        return f"its compressed data is damaged ({exc})"
    if isinstance(exc, zipfile.BadZipFile):
        return "its compressed data is damaged (bad CRC-32)" if _BAD_CRC.match(str(exc)) \
            else str(exc)
    return f"{type(exc).__name__}: {exc}"


def _find_damaged_part(archive: zipfile.ZipFile, exc: BaseException) -> str:
    """Which part made opening the workbook fail, and how: openpyxl's errors do not say.
    Missing parts and bad CRCs name themselves; otherwise every part read at opening (not
    the sheets) is unzipped and parsed again by a bare expat parser, which builds nothing
    (and sees no DTD: those were refused already)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if missing := _MISSING.search(text):
        return f"{missing.group(1)} is missing (an incomplete copy?)"
    if bad := _BAD_CRC.search(text):
        return f"{bad.group(1)} is damaged: {_damage(exc)}"
    parts = sorted((i for i in archive.infolist() if _XML_PART.search(i.filename)
                    and not _SHEET_PART.match(i.filename)),
                   key=lambda i: i.filename != "[Content_Types].xml")
    for info in parts:
        parser = expat.ParserCreate()
        try:
            with archive.open(info) as part:
                while block := part.read(1 << 20):
                    parser.Parse(block, False)
            parser.Parse(b"", True)
        except (expat.ExpatError, zipfile.BadZipFile, zlib.error, EOFError) as error:
            return f"{info.filename} is damaged: {_damage(error)}"
    return f"the workbook is damaged: {_damage(exc)}"


class XlsxSource:
    """One sheet of a workbook, streamed row by row (openpyxl read-only mode): memory holds
    the workbook's shared strings and one row, whatever the number of rows.

    openpyxl raises whatever its parsing trips on for a damaged file (ParseError, KeyError,
    IndexError, BadZipFile, zlib.error, ...: there is no common base), both when the workbook
    opens and while a sheet streams; at both places any such error is the file's, not ours,
    and becomes a ``ManifestError`` naming the part."""

    ragged_rows_are_errors = False

    def __init__(self, path: Path, sheet: str | None) -> None:
        shown = str(path)
        try:
            self._handle = open(open_fd(path), "rb")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise ManifestError(shown, read_failure(exc, "")) from None
        try:
            _check_workbook(self._handle, shown)
            self._open(shown, sheet)
        except BaseException:
            self._handle.close()
            raise

    def _open(self, shown: str, sheet: str | None) -> None:
        from openpyxl.reader.excel import ExcelReader  # imported only when a workbook is read

        reader = ExcelReader(self._handle, read_only=True, data_only=True, keep_links=False)
        try:
            reader.read()
        except Exception as exc:  # see the class docstring
            with zipfile.ZipFile(self._handle) as archive:
                raise ManifestError(shown, _find_damaged_part(archive, exc)) from None
        self._book = reader.wb
        try:
            self._pick(reader, shown, sheet)
        except BaseException:
            self.close()
            raise

    def _pick(self, reader: ExcelReader, shown: str, sheet: str | None) -> None:
        parts = {s.name: rel.target for s, rel in reader.parser.find_sheets()}
        missing = [target for target in parts.values() if target not in reader.valid_files]
        names = self._book.sheetnames
        worksheets = self._book.worksheets
        if sheet is None:
            if not worksheets:
                raise ManifestError(shown, f"{missing[0]} is missing (an incomplete copy?)"
                                    if missing else "the workbook has no worksheet")
            self._sheet = worksheets[0]
        else:
            match = [ws for ws in worksheets if ws.title == sheet] or \
                [ws for ws in worksheets if ws.title.strip().lower() == sheet.strip().lower()]
            if not match:
                raise ManifestError(shown, f"no sheet named {sheet!r} (sheets: "
                                    f"{', '.join(repr(n) for n in names)})")
            self._sheet = match[0]
        self.sheet_name: str = self._sheet.title
        self._part: str = parts.get(self.sheet_name, f"sheet {self.sheet_name!r}")
        self._shown = shown
        # The "used range" the writer stored: only a hint (some writers store a wrong one),
        # good enough for an ETA; then forgotten, so that openpyxl reads every cell there is.
        # Reading it parses the sheet's start: damage there is found here.
        try:
            self._declared_rows: int | None = self._sheet.max_row
        except Exception as exc:  # see the class docstring
            raise ManifestError(shown, f"{self._part} is damaged: {_damage(exc)}") from None
        self._sheet.reset_dimensions()

    def records(self) -> Iterator[tuple[int, list[str]]]:
        # openpyxl yields an empty row for each row the file leaves out, so counting gives
        # the row number Excel shows.
        rows = self._sheet.iter_rows(values_only=True)
        number = 0
        try:
            while True:
                try:
                    row = next(rows, None)
                except Exception as exc:  # see the class docstring
                    after = f" after row {number}" if number else ""
                    raise ManifestError(self._shown, f"{self._part} is damaged{after}: "
                                        f"{_damage(exc)}") from None
                if row is None:
                    return
                number += 1
                if number > EXCEL_MAX_ROWS:
                    raise ManifestError(self._shown, f"{self._part} has rows past Excel's last "
                                        f"row, {EXCEL_MAX_ROWS:,} (a damaged file?)")
                yield number, [_cell_text(v) for v in row]
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()

    def estimate_records(self) -> int | None:
        return self._declared_rows

    def close(self) -> None:
        book = getattr(self, "_book", None)
        if book is not None:
            book.close()
        self._handle.close()


def _cell_text(value: Any) -> str:
    """An Excel cell as the text the normalizers read: what Excel shows, not Python's repr.

    A whole number stored as a float (every number is one, to Excel) loses its ``.0``; a date
    cell becomes ``YYYY-MM-DD HH:MM:SS`` (no zone: the run's ``--timezone`` applies); TRUE and
    FALSE stay words.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)
