"""Rows written out for people and programs: a ledger's rows as a table, CSV safe for Excel
or JSON lines, lookup results the same ways (``ObjectWriter``), and the rows a run found
invalid (``--errors-out``). Rows are streamed from the ledger, so an export of millions of
rows stays small in memory.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Literal, TextIO

from ..errors import UsageError
from ..ledger.queries import LedgerRow
from ..manifest.paths import is_windows_path
from ..redact import printable
from ..sources.locations import is_object_url
from .outputs import atomic_text

Format = Literal["summary", "table", "csv", "json"]


ROW_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LedgerRow))


TABLE_COLUMNS: tuple[str, ...] = ("row_number", "status", "key", "source", "attempts", "error")


#: A spreadsheet treats a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """A value that Excel will show as text, never run as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


class InvalidRowsCsv:
    """``validate --errors-out``: the invalid rows as a CSV to fix and feed back.

    Columns: the row's number in the manifest, what is wrong with it, then the upload fields
    the manifest gives, under their own names, so that the file reads back without ``--map``.
    A recording's relative path is rewritten relative to this file's folder, so that it still
    names the same file. Every cell is made safe for Excel (``safe_cell``), and the file has a
    BOM so that Excel reads it as UTF-8. Rows are written as they are found: memory stays flat.
    """

    LEAD_COLUMNS = ("row", "errors")

    def __init__(self, out: TextIO, fields: Sequence[str], manifest_dir: Path | None,
                 out_dir: Path, *, path: Path | None = None) -> None:
        self._writer = csv.writer(out)
        self._fields = list(fields)
        self._manifest_dir = manifest_dir
        self._out_dir = out_dir
        self.count = 0
        self.path = path
        self._writer.writerow([*self.LEAD_COLUMNS, *self._fields])

    @classmethod
    @contextlib.contextmanager
    def create(cls, path: Path, fields: Sequence[str],
               manifest_dir: Path | None) -> Iterator[InvalidRowsCsv]:
        """Stream rows into ``path`` for the duration of the ``with`` block; ``path`` is
        replaced only when the block ends normally, so an aborted validate leaves the previous
        file as it was."""
        with atomic_text(path, encoding="utf-8-sig") as handle:
            yield cls(handle, fields, manifest_dir, path.resolve().parent, path=path)

    def write(self, row: int, errors: str, cells: Mapping[str, str]) -> None:
        values = dict(cells)
        source = values.get("recording_file", "").strip()
        # an object's URL or a Windows path is where it is, whatever folder this file is in,
        # and so is a path under --recordings-root (``manifest_dir`` None)
        if source and self._manifest_dir not in (None, self._out_dir) and \
                not is_object_url(source) and not is_windows_path(source):
            expanded = os.path.expanduser(source)
            if not os.path.isabs(expanded):
                absolute = os.path.abspath(os.path.join(self._manifest_dir or "", expanded))
                try:
                    values["recording_file"] = os.path.relpath(absolute, self._out_dir)
                except ValueError:  # another drive (Windows)
                    values["recording_file"] = absolute
        try:
            self._writer.writerow([safe_cell(v) for v in
                                   (row, errors, *(values.get(f, "") for f in self._fields))])
        except OSError as exc:
            # Raised in the middle of a run: as our own error it stops the run with one line
            # (exit 2), where a bare OSError would end it with a traceback.
            raise UsageError(f"cannot write {self.path or 'the invalid rows'}: "
                             f"{exc.strerror or exc}") from None
        self.count += 1


def write_rows(rows: Iterable[LedgerRow], fmt: Format, out: TextIO, *,
               wide: bool = False) -> int:
    """Write every row in ``fmt`` (table, csv or json); returns how many were written. A
    table wraps long cells to the terminal's width, or with ``wide`` keeps each row on one
    line, whole. Control and bidi characters (a file named ``abc<U+202E>gnp.exe.wav``) are
    shown escaped in CSV as in the table (``printable``: a spreadsheet would show them as a
    terminal does), and JSON's own way in JSON (``\\u202e``, which reads back as it was)."""
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(ROW_COLUMNS)
        count = 0
        for row in rows:
            writer.writerow([safe_cell(printable(v) if isinstance(v, str) else v)
                             for v in asdict(row).values()])
            count += 1
        return count
    if fmt == "json":  # ASCII only: every control and bidi character escaped, readable back
        out.write("[")
        count = 0
        for row in rows:
            out.write((",\n  " if count else "\n  ") + json.dumps(asdict(row)))
            count += 1
        out.write("\n]\n" if count else "]\n")
        return count
    return _write_table(rows, out, wide=wide)


def _table_widths() -> dict[str, int]:
    """The ledger table's columns sharing the terminal's width (at least 80): paths and keys
    three tenths each of what the narrow columns leave, the error the rest."""
    width = max(80, shutil.get_terminal_size((100, 24)).columns)
    fixed = {"row_number": 6, "status": 9, "attempts": 4}
    flexible = width - sum(fixed.values()) - 2 * (len(TABLE_COLUMNS) - 1)
    sizes = {"key": flexible * 3 // 10, "source": flexible * 3 // 10}
    sizes["error"] = flexible - sizes["key"] - sizes["source"]
    sizes.update(fixed)
    return sizes


def _write_table(rows: Iterable[LedgerRow], out: TextIO, *, wide: bool = False) -> int:
    """Rows as an aligned table whose long cells wrap within their column, so that a path or
    an error is read whole on a terminal of any width; ``wide``: one line a row, nothing
    wrapped (for grep, or a pager that scrolls sideways)."""
    sizes = _table_widths()
    header = {"row_number": "row", "attempts": "try"}

    def lines(cells: dict[str, str]) -> Iterator[str]:
        if wide:
            yield "  ".join(cells[c].replace("\n", " ").ljust(sizes[c])
                            for c in TABLE_COLUMNS).rstrip()
            return
        wrapped = {c: _wrap(cells[c], sizes[c]) for c in TABLE_COLUMNS}
        for i in range(max(map(len, wrapped.values()))):
            yield "  ".join((wrapped[c][i] if i < len(wrapped[c]) else "").ljust(sizes[c])
                            for c in TABLE_COLUMNS).rstrip()

    out.writelines(line + "\n" for line in lines({c: header.get(c, c) for c in TABLE_COLUMNS}))
    count = 0
    for row in rows:
        data = asdict(row)
        out.writelines(line + "\n" for line in lines(
            {c: "" if data[c] is None else str(data[c]) for c in TABLE_COLUMNS}))
        count += 1
    return count


def _wrap(text: str, size: int) -> list[str]:
    """``text`` in lines of at most ``size`` characters, broken after a space or a slash in
    the second half of a line (messages, paths), else at ``size`` (a long key or hash)."""
    text, size = " ".join(text.split()), max(size, 1)
    lines = []
    while len(text) > size:
        space, slash = text.rfind(" ", 0, size + 1), text.rfind("/", 0, size)
        if max(space, slash + 1) > size // 2:
            cut, skip = (space, 1) if space >= slash + 1 else (slash + 1, 0)
        else:
            cut, skip = size, 0
        lines.append(text[:cut])
        text = text[cut + skip:]
    return [*lines, text] if text or not lines else lines


class ObjectWriter:
    """Writes API objects as they arrive: an aligned table of ``columns``, CSV (columns of the
    first object; Excel-safe), or one JSON array of the objects exactly as the API gave them.
    Nothing is held back, so a lookup of a million calls streams."""

    def __init__(self, fmt: Format, columns: tuple[str, ...], out: TextIO) -> None:
        self.fmt = fmt
        self.columns = columns
        self.out = out
        self.count = 0
        self._csv: csv.DictWriter[str] | None = None
        self._sizes: dict[str, int] = {}

    def write(self, obj: dict[str, Any]) -> None:
        if self.fmt == "json":
            self.out.write(("[\n  " if not self.count else ",\n  ") + json.dumps(obj))
        elif self.fmt == "csv":
            if self._csv is None:
                self._csv = csv.DictWriter(self.out, fieldnames=list(obj),
                                           extrasaction="ignore")
                self._csv.writeheader()
            self._csv.writerow({k: safe_cell(_cell(v)) for k, v in obj.items()})
        else:
            if not self.count:
                self._sizes = _table_sizes(self.columns)
                self.out.write(self._line({c: c for c in self.columns}) + "\n")
            self.out.write(self._line({c: _cell(obj.get(c)) for c in self.columns}) + "\n")
        self.count += 1

    def _line(self, cells: dict[str, str]) -> str:
        return "  ".join(_fit(cells[c], self._sizes[c]) for c in self.columns).rstrip()

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.count else "[]\n")
        self.out.flush()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _table_sizes(columns: tuple[str, ...]) -> dict[str, int]:
    """Share the terminal width (at least 80) among the columns, ids narrower."""
    width = max(80, shutil.get_terminal_size((100, 24)).columns) - 2 * (len(columns) - 1)
    narrow = [c for c in columns if (c.endswith("_id") and "ext" not in c)
              or c.endswith("status")]
    sizes = {c: min(16, max(8, len(c))) for c in narrow}
    rest = [c for c in columns if c not in sizes]
    free = width - sum(sizes.values())
    for c in rest:
        sizes[c] = max(10, free // max(1, len(rest)))
    return sizes


def _fit(text: str, size: int) -> str:
    text = text.replace("\n", " ")
    return text.ljust(size) if len(text) <= size else text[: size - 1] + "…"
