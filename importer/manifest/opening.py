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

The parts: ``files`` (opened warily), ``columns`` (the header and the column plan),
``delimited`` and ``encodings`` (text files), ``xlsx`` (workbooks); here the manifest is opened
and its rows streamed.
"""

from __future__ import annotations

import logging
import os
import time as clock
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple, Protocol

from ..errors import ManifestError
from ..settings.userfiles import file_kind
from .columns import ColumnPlan, blank, column_renames, find_header, plan_columns
from .delimited import CsvSource, check_complete, open_csv
from .files import open_fd, read_failure
from .xlsx import XlsxSource

log = logging.getLogger("importer.manifest")

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
SUPPORTED_SUFFIXES = CSV_SUFFIXES + EXCEL_SUFFIXES
#: Cells that ``report.safe_cell`` (or a person in Excel) marked as text with a leading ``'``.
_QUOTED_FORMULA = ("'=", "'+", "'-", "'@")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"
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


class Source(Protocol):
    """The rows of one manifest as text cells, each with its number in the user's sheet."""

    #: Cells beyond the header's width are an error (CSV: a comma inside an unquoted value
    #: shifted the row) or are merely ignored (Excel: nothing can shift).
    ragged_rows_are_errors: bool

    def records(self) -> Iterator[tuple[int, list[str]]]: ...

    def estimate_records(self) -> int | None:
        """About how many records (rows, header included) there are, cheaply, or None."""

    def close(self) -> None: ...


class Manifest:
    """An opened manifest whose header has been checked; ``chunks()`` streams its rows.
    ``close()`` releases the file (a workbook stays open between the two)."""

    def __init__(self, path: Path, plan: ColumnPlan, chunk_rows: int, source: Source,
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
            if len(cells) > width and not blank(cells[width:]):
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

    def samples(self, per_column: int = 3, rows: int = 1000) -> list[list[str]]:
        """The first ``per_column`` non-blank cells of each column, from at most ``rows`` rows
        below the header (blocking): what ``validate --explain-mapping`` shows."""
        found: list[list[str]] = [[] for _ in self.plan.fields]
        records = self._source.records()
        try:
            for seen, (number, cells) in enumerate(records):
                if number <= self.header_row:
                    continue
                if seen > rows + self.header_row:
                    break
                for column, cell in enumerate(cells[:len(found)]):
                    if cell.strip() and len(found[column]) < per_column:
                        found[column].append(cell.strip())
        finally:
            records.close()  # type: ignore[attr-defined]
        return found

    def estimate_rows(self) -> int | None:
        """About how many data rows there are, for progress and ETA; None if unknown."""
        records = self._source.estimate_records()
        return None if records is None else max(0, records - self.header_row)

    @property
    def portable(self) -> bool:
        """Whether another process can read this manifest from a pickled copy: a CSV can, a
        workbook (an open file) cannot."""
        return isinstance(self._source, CsvSource)

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
        raise ManifestError(shown, read_failure(exc, "")) from None
    if kind is not None:
        raise ManifestError(shown, f"is {kind}, not a regular file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ManifestError(shown, _UNSUPPORTED.get(suffix) or (
            f"unsupported manifest type {path.suffix or '(none)'!r}; save it as CSV UTF-8 "
            "(.csv, .tsv, .txt) or Excel (.xlsx)"))
    try:
        with open(open_fd(path), "rb") as handle:
            return handle.read(4)
    except OSError as exc:
        raise ManifestError(shown, read_failure(exc, "")) from None


def open_manifest(path: Path, *, column_map: dict[str, str] | None = None,
                  defaults: dict[str, str] | None = None, chunk_rows: int = 1000,
                  sheet: str | None = None, encoding: str | None = None,
                  min_age: float | None = None,
                  now: Callable[[], float] = clock.time) -> Manifest:
    """Check the manifest's type and header (``ManifestError`` if it cannot work at all) and
    warn once about columns that will be ignored. A text manifest that looks still written
    (``check_complete``, with ``min_age`` and the wall clock ``now``) is refused."""
    shown = str(path)
    magic = _kind_checked(path)
    column_map = column_map or {}
    renames = column_renames(column_map)
    source: Source
    if path.suffix.lower() in EXCEL_SUFFIXES:
        if magic == _OLE_MAGIC:
            raise ManifestError(shown, _UNSUPPORTED[".xls"] + " (this one is named "
                                f"{path.suffix})")
        source = XlsxSource(path, sheet)
    else:
        if magic == _ZIP_MAGIC:
            raise ManifestError(shown, f"this is an Excel workbook named {path.suffix}; "
                                "rename it to .xlsx")
        if magic == _OLE_MAGIC:
            raise ManifestError(shown, "this is an Excel 97-2003 workbook, not text; save it as "
                                ".xlsx or CSV UTF-8")
        if sheet is not None:
            log.warning("%s: --sheet applies to Excel workbooks only; ignored", shown)
        source = open_csv(path, encoding, renames)
        check_complete(path, min_age, now())
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
