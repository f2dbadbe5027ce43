"""Streaming manifest reader: rows come out in chunks, so a manifest of any length reads in
constant memory, and each row keeps the number the user sees in their sheet.

Formats: CSV and its cousins (``.csv``, ``.tsv``, ``.txt``; the delimiter, comma, semicolon,
tab or pipe, is sniffed; UTF-8 with or without BOM, UTF-16 with BOM, else cp1252 with a
warning, or whatever ``encoding`` says) and Excel workbooks (``.xlsx``, ``.xlsm``: one sheet,
streamed by openpyxl's read-only reader). The header is the first row that names at least two
upload fields after mapping, so title and note rows above it are skipped.

Headers are matched to upload fields loosely (``Call Date``, ``call-date`` and ``CALL.DATE`` all
mean ``call_date``), ``--map`` renames the rest, ``--set`` gives defaults for empty cells. A
manifest that cannot work at all (unreadable, no header, a required column missing) raises
``ManifestError`` before a single row is processed.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import logging
import os
import re
import stat
import time as clock
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol
from xml.parsers import expat

from ..errors import ManifestError
from .records import REQUIRED_FIELDS, SOURCE_FIELDS, UPLOAD_FIELDS

if TYPE_CHECKING:
    from openpyxl.reader.excel import ExcelReader

log = logging.getLogger("importer.manifest")

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
SUPPORTED_SUFFIXES = CSV_SUFFIXES + EXCEL_SUFFIXES
DELIMITERS = (",", ";", "\t", "|")
#: How far down a title, notes and blank rows may push the header.
HEADER_SCAN_ROWS = 50
_SAMPLE_CHARS = 1 << 16
_SEPARATORS = re.compile(r"[\s.\-]+")
#: Cells that ``report.safe_cell`` (or a person in Excel) marked as text with a leading ``'``.
_QUOTED_FORMULA = ("'=", "'+", "'-", "'@")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"
#: Codecs that Python calls text encodings but no file is written in: domain-name and
#: Python-literal codecs, which read a CSV as garbage or fail half-way.
_NOT_FILE_ENCODINGS = frozenset({"idna", "punycode", "undefined", "unicode-escape",
                                 "raw-unicode-escape"})
ENCODING_EXAMPLES = "utf-8, cp1252, latin-1, utf-16, utf-16-le"
#: Opening never blocks (a FIFO named calls.csv would wait for a writer for ever) and the
#: descriptor is not inherited by the reader process or anything else we start.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
    | getattr(os, "O_BINARY", 0)
_UNSUPPORTED = {
    ".xls": "an Excel 97-2003 workbook (.xls) cannot be read; open it in Excel and save it as "
            "Excel Workbook (.xlsx) or CSV UTF-8",
    ".ods": "an OpenDocument spreadsheet cannot be read; save it as .xlsx or CSV UTF-8",
    ".numbers": "a Numbers spreadsheet cannot be read; export it as .xlsx or CSV UTF-8",
}


class ManifestRow(NamedTuple):
    """One data row: its number as the sheet shows it and its cells, keyed by upload field
    name, defaults already applied. (A named tuple, not a frozen dataclass: it is made once
    per row, and a frozen dataclass costs several times more to make.)"""

    number: int
    values: dict[str, str]
    error: str | None = None  # the row as a whole is broken (more cells than the header)


def file_kind(mode: int) -> str | None:
    """What a path is, for a message, when it is not a regular file (``"a folder"``); None
    for a regular file. Shared by every file the user names (manifest, token, columns)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def file_encoding(name: str) -> str:
    """The canonical name of ``name`` if it is a text encoding a file can be written in;
    ``LookupError``, saying why, if not.

    Python's codec registry also holds bytes-to-bytes and text-to-text codecs (zlib, base64,
    rot13, ...), which ``open()`` refuses with a traceback, and text codecs that no file is
    written in (idna, punycode, ...)."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise LookupError(f"unknown encoding {name!r} (try {ENCODING_EXAMPLES})") from None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_FILE_ENCODINGS:
        raise LookupError(f"{name!r} is not a text encoding for a file (try "
                          f"{ENCODING_EXAMPLES})")
    return info.name


def _open_fd(path: Path) -> int:
    """A descriptor on ``path``, which must be a regular file (``ManifestError`` if not).

    ``open_manifest`` stat-ed the path already; this is the second guard, on what was really
    opened: non-blocking, so that a FIFO put in its place does not hang us."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        kind = file_kind(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    if kind is not None:
        os.close(fd)
        raise ManifestError(str(path), f"is {kind}, not a regular file")
    return fd


def canonical(header: str) -> str:
    """``" Call Date "`` -> ``call_date``: case, surrounding spaces, spaces/dots/hyphens ignored."""
    return _SEPARATORS.sub("_", str(header).strip().lower()).strip("_")


@dataclass(frozen=True)
class ColumnPlan:
    """How the manifest's columns become upload fields, decided once from the header."""

    fields: tuple[str | None, ...]  # per column: the upload field, or None (ignored)
    unknown: tuple[str, ...]
    defaults: dict[str, str]


def _renames(column_map: dict[str, str]) -> dict[str, str]:
    return {canonical(src): canonical(dst) for src, dst in column_map.items()}


def plan_columns(headers: list[str], column_map: dict[str, str], defaults: dict[str, str],
                 path: str) -> ColumnPlan:
    """Decide which column feeds which field; refuse a header that cannot make valid rows."""
    renames = _renames(column_map)
    bad_targets = sorted(set(renames.values()) - set(UPLOAD_FIELDS))
    if bad_targets:
        raise ManifestError(path, f"--map names unknown upload field(s): {', '.join(bad_targets)}")
    bad_defaults = sorted(set(map(canonical, defaults)) - set(UPLOAD_FIELDS))
    if bad_defaults:
        raise ManifestError(path, f"--set names unknown upload field(s): {', '.join(bad_defaults)}")
    _refuse_absent_columns(headers, column_map, path)
    fields: list[str | None] = []
    unknown: list[str] = []
    seen: dict[str, str] = {}
    for header in headers:
        name = canonical(header)
        name = renames.get(name, name)
        if name not in UPLOAD_FIELDS:
            if name:
                unknown.append(str(header))
            fields.append(None)
            continue
        if name in seen:
            raise ManifestError(path, f"columns {seen[name]!r} and {header!r} both map to {name}")
        seen[name] = str(header)
        fields.append(name)
    present = set(seen) | {canonical(k) for k, v in defaults.items() if v}
    missing = [f for f in REQUIRED_FIELDS if f not in present]
    if not present.intersection(SOURCE_FIELDS):
        missing.append("recording_file or recording_url")
    if missing:
        found = ", ".join(str(h) for h in headers if str(h).strip()) or "none"
        raise ManifestError(
            path,
            f"required column(s) missing: {', '.join(missing)} "
            f"(columns found: {found}; rename with --map or give a value for every row with "
            "--set)",
        )
    return ColumnPlan(tuple(fields), tuple(unknown), {canonical(k): v for k, v in defaults.items()})


def _refuse_absent_columns(headers: list[str], column_map: dict[str, str], path: str) -> None:
    """A ``--map`` (or ``[columns]``) entry naming a column the header lacks is a typo or the
    wrong manifest: refused, never read as an empty column, with the columns there are."""
    present = {canonical(h) for h in headers}
    absent = [c for c in column_map if canonical(c) not in present]
    if not absent:
        return
    named = [str(h) for h in headers if str(h).strip()]

    def shown(column: str) -> str:
        close = difflib.get_close_matches(column, named, n=1)
        return f"{column!r}" + (f" (did you mean {close[0]!r}?)" if close else "")

    raise ManifestError(path, f"--map names {'a column' if len(absent) == 1 else 'columns'} "
                        f"this manifest does not have: {', '.join(map(shown, absent))}; its "
                        f"columns: {', '.join(named) or 'none'}")


def _fields_named(cells: Iterable[str], renames: dict[str, str]) -> int:
    names = {renames.get(n, n) for n in map(canonical, cells)}
    return len(names.intersection(UPLOAD_FIELDS))


def _blank(cells: list[str]) -> bool:
    return not "".join(cells).strip()


def find_header(records: Iterable[tuple[int, list[str]]],
                renames: dict[str, str]) -> tuple[int, list[str]] | None:
    """The first of the first ``HEADER_SCAN_ROWS`` rows that names at least two upload fields;
    failing that the first non-blank row (whose missing columns are then reported)."""
    first: tuple[int, list[str]] | None = None
    for seen, (number, cells) in enumerate(records):
        if seen >= HEADER_SCAN_ROWS:
            break
        if _blank(cells):
            continue
        if first is None:
            first = (number, cells)
        if _fields_named(cells, renames) >= 2:
            return number, cells
    return first


# --- sources: where the rows of a manifest come from --------------------------------------

class _Source(Protocol):
    """The rows of one manifest as text cells, each with its number in the user's sheet."""

    #: Cells beyond the header's width are an error (CSV: a comma inside an unquoted value
    #: shifted the row) or are merely ignored (Excel: nothing can shift).
    ragged_rows_are_errors: bool

    def records(self) -> Iterator[tuple[int, list[str]]]: ...

    def estimate_records(self) -> int | None:
        """About how many records (rows, header included) there are, cheaply, or None."""

    def close(self) -> None: ...


class _CsvSource:
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
            with open(_open_fd(self.path), encoding=self.encoding, newline="") as handle:
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
                                    f"{_reason(exc, self.encoding)}") from None
            raise ManifestError(str(self.path),
                                f"{where}: {_reason(exc, self.encoding)}") from None
        except UnicodeError:  # a UnicodeDecodeError, or utf-16's "no BOM"
            raise ManifestError(str(self.path), _undecodable(self.path, self.encoding)) from None
        except OSError as exc:
            raise ManifestError(str(self.path), _reason(exc, self.encoding)) from None

    def estimate_records(self) -> int | None:
        # Line-feed bytes, counted without decoding: fast, exact for UTF-8 and the 8-bit
        # encodings unless cells hold line breaks, close enough for UTF-16.
        lines = 0
        last = b"\n"
        with open(_open_fd(self.path), "rb") as handle:
            while block := handle.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
        return lines + (last not in (b"\n", b"\x00"))

    def close(self) -> None:
        return None


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


# --- workbooks: the zip is checked before openpyxl parses any of it ---------------------------
#
# A workbook is a zip of XML parts, and a hostile one costs nothing to make: a 300 KB file can
# hold parts that inflate a thousandfold, XML can declare entities that expand without end or
# name local files. openpyxl (read-only) parses most parts whole when the workbook opens and
# keeps the shared strings in memory; only sheets are streamed, and even then a row is built
# whole. Python's zipfile never inflates a part past the size the zip declares for it, so the
# declared sizes, checked first, bound what parsing can cost.

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


class _XlsxSource:
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
            self._handle = open(_open_fd(path), "rb")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise ManifestError(shown, _reason(exc, "")) from None
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


# --- encodings and delimiters ---------------------------------------------------------------

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
    with open(_open_fd(path), "rb") as handle:
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
        named = _fields_named(header[1], renames) if header else 0
        widths = [len(cells) for _, cells in records if not _blank(cells)]
        modal = max(set(widths), key=widths.count) if widths else 0
        consistent = widths.count(modal) if modal > 1 else 0
        score = (named if named >= 2 else 0, consistent, modal)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _read_sample(path: Path, encoding: str) -> str:
    with open(_open_fd(path), encoding=encoding, newline="") as handle:
        sample = handle.read(_SAMPLE_CHARS)
        if len(sample) == _SAMPLE_CHARS and "\n" in sample:
            sample = sample[: sample.rindex("\n") + 1]
    return sample


def _first_undecodable(path: Path, encoding: str) -> tuple[int, str] | None:
    """The byte offset of the first bytes ``encoding`` cannot decode in ``path``, and why;
    None if it decodes to the end. A byte-level pass with the codec's incremental decoder:
    the text reader decodes blocks ahead of the row it hands out, so where it failed says
    little about where the bad bytes are."""
    decoder = codecs.getincrementaldecoder(encoding)()
    fed = 0
    with open(_open_fd(path), "rb") as handle:
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
    with open(_open_fd(path), "rb") as handle:
        while left > 0 and (block := handle.read(min(left, 1 << 20))):
            lines += decoder.decode(block).count("\n")
            left -= len(block)
    return lines


def _valid_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(_open_fd(path), "rb") as handle:
        try:
            while block := handle.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _encoding_hint(path: Path, encoding: str) -> str:
    """What to give as ``--encoding`` instead of ``encoding``, judged from the bytes."""
    with open(_open_fd(path), "rb") as handle:
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


def _undecodable(path: Path, encoding: str) -> str:
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


def _reason(exc: BaseException, encoding: str) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"not a well-formed CSV ({str(exc).strip()})"


# --- the manifest ---------------------------------------------------------------------------

class Manifest:
    """An opened manifest whose header has been checked; ``chunks()`` streams its rows.
    ``close()`` releases the file (a workbook stays open between the two)."""

    def __init__(self, path: Path, plan: ColumnPlan, chunk_rows: int, source: _Source,
                 header_row: int) -> None:
        self.path = path
        self.plan = plan
        self.chunk_rows = chunk_rows
        self.header_row = header_row
        self._source = source

    def chunks(self) -> Iterator[list[ManifestRow]]:
        """The non-blank rows below the header in chunks of at most ``chunk_rows``; blocking,
        so call it from a thread in async code."""
        plan = self.plan
        fields = plan.fields
        width = len(fields)
        defaults = plan.defaults.items()
        ragged_is_error = self._source.ragged_rows_are_errors
        ignored_warned = False
        header_row = self.header_row
        batch: list[ManifestRow] = []
        for number, cells in self._source.records():
            line = "".join(cells)
            if number <= header_row or not line.strip():
                continue
            values = {f: c for f, c in zip(fields, cells, strict=False)
                      if f is not None and c and not c.isspace()}
            if "'" in line:
                for name, value in values.items():
                    if value.startswith(_QUOTED_FORMULA):
                        values[name] = value[1:]
            for name, value in defaults:
                values.setdefault(name, value)
            error = None
            if len(cells) > width and not _blank(cells[width:]):
                if ragged_is_error:
                    error = (f"has {len(cells)} cells but the header has {width} columns; "
                             "is a comma inside a value not quoted?")
                elif not ignored_warned:
                    ignored_warned = True
                    log.warning("%s: cells right of the header's last column are ignored "
                                "(first in row %d)", self.path, number)
            batch.append(ManifestRow(number, values, error))
            if len(batch) >= self.chunk_rows:
                yield batch
                batch = []
        if batch:
            yield batch

    def estimate_rows(self) -> int | None:
        """About how many data rows there are, for progress and ETA; None if unknown."""
        records = self._source.estimate_records()
        return None if records is None else max(0, records - self.header_row)

    @property
    def portable(self) -> bool:
        """Whether another process can read this manifest from a pickled copy: a CSV can, a
        workbook (an open file) cannot."""
        return isinstance(self._source, _CsvSource)

    def fields(self) -> list[str]:
        """The upload fields this manifest gives: its columns' in their order, then those
        that only defaults (``--set``) give."""
        names = [f for f in self.plan.fields if f is not None]
        return names + [f for f in self.plan.defaults if f not in names]

    def close(self) -> None:
        self._source.close()


def _kind_checked(path: Path) -> bytes:
    """The manifest's first four bytes, after checking what the path is (never open a FIFO
    or a device) and its suffix (``ManifestError`` saying what to do otherwise)."""
    shown = str(path)
    try:  # what the path is comes first: never open a FIFO or a device
        kind = file_kind(os.stat(path).st_mode)
    except FileNotFoundError:
        raise ManifestError(shown, "no such file") from None
    except OSError as exc:
        raise ManifestError(shown, _reason(exc, "")) from None
    if kind is not None:
        raise ManifestError(shown, f"is {kind}, not a regular file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ManifestError(shown, _UNSUPPORTED.get(suffix) or (
            f"unsupported manifest type {path.suffix or '(none)'!r}; save it as CSV UTF-8 "
            "(.csv, .tsv, .txt) or Excel (.xlsx)"))
    try:
        with open(_open_fd(path), "rb") as handle:
            return handle.read(4)
    except OSError as exc:
        raise ManifestError(shown, _reason(exc, "")) from None


def open_manifest(path: Path, *, column_map: dict[str, str] | None = None,
                  defaults: dict[str, str] | None = None, chunk_rows: int = 1000,
                  sheet: str | None = None, encoding: str | None = None,
                  min_age: float | None = None,
                  now: Callable[[], float] = clock.time) -> Manifest:
    """Check the manifest's type and header (``ManifestError`` if it cannot work at all) and
    warn once about columns that will be ignored. A text manifest that looks still written
    (``_check_complete``, with ``min_age`` and the wall clock ``now``) is refused."""
    shown = str(path)
    magic = _kind_checked(path)
    column_map = column_map or {}
    renames = _renames(column_map)
    source: _Source
    if path.suffix.lower() in EXCEL_SUFFIXES:
        if magic == _OLE_MAGIC:
            raise ManifestError(shown, _UNSUPPORTED[".xls"] + " (this one is named "
                                f"{path.suffix})")
        source = _XlsxSource(path, sheet)
    else:
        if magic == _ZIP_MAGIC:
            raise ManifestError(shown, f"this is an Excel workbook named {path.suffix}; "
                                "rename it to .xlsx")
        if magic == _OLE_MAGIC:
            raise ManifestError(shown, "this is an Excel 97-2003 workbook, not text; save it as "
                                ".xlsx or CSV UTF-8")
        if sheet is not None:
            log.warning("%s: --sheet applies to Excel workbooks only; ignored", shown)
        source = _open_csv(path, encoding, renames)
        _check_complete(path, min_age, now())
    try:
        records = source.records()
        try:
            header = find_header(records, renames)
        finally:
            records.close()  # type: ignore[attr-defined]
        if header is None:
            raise ManifestError(shown, "the file is empty (expected a header row)")
        number, headers = header
        plan = plan_columns(headers, column_map, defaults or {}, shown)
    except BaseException:
        source.close()
        raise
    if plan.unknown:
        log.warning("%s: ignoring unknown column(s), not sent: %s", shown, ", ".join(plan.unknown))
    if number > 1:
        log.info("%s: the header is row %d; the rows above it are skipped", shown, number)
    return Manifest(path, plan, chunk_rows, source, number)


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


def _check_complete(path: Path, min_age: float | None, now: float) -> None:
    """``ManifestError`` for a text manifest whose last line has no end (no newline) and that
    was modified within the last minute (or ``min_age``): an export picked up while it is
    written, whose last row, cut mid-value, must not be imported as a row."""
    try:
        with open(_open_fd(path), "rb") as handle:
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


def _open_csv(path: Path, encoding: str | None, renames: dict[str, str]) -> _CsvSource:
    shown = str(path)
    try:
        chosen = detect_encoding(path, encoding)
    except LookupError as exc:
        raise ManifestError(shown, str(exc)) from None
    except OSError as exc:
        raise ManifestError(shown, _reason(exc, "")) from None
    try:
        sample = _read_sample(path, chosen)
    except UnicodeError:  # a UnicodeDecodeError, or utf-16's "no BOM"
        raise ManifestError(shown, _undecodable(path, chosen)) from None
    except OSError as exc:
        raise ManifestError(shown, _reason(exc, chosen)) from None
    preferred = "\t" if path.suffix.lower() == ".tsv" else ","
    return _CsvSource(path, chosen, sniff_delimiter(sample, renames, preferred))
