"""Streaming manifest reader: rows come out in chunks, so a manifest of any length reads in
constant memory, and each row keeps the number the user sees in their sheet.

Headers are matched to upload fields loosely (``Call Date``, ``call-date`` and ``CALL.DATE`` all
mean ``call_date``), ``--map`` renames the rest, ``--set`` gives defaults for empty cells. A
manifest that cannot work at all (unreadable, no header, a required column missing) raises
``ManifestError`` before a single row is processed.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import ManifestError
from .records import REQUIRED_FIELDS, SOURCE_FIELDS, UPLOAD_FIELDS

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".csv",)
_SEPARATORS = re.compile(r"[\s.\-]+")


@dataclass(frozen=True)
class ManifestRow:
    """One data row: its number as the sheet shows it (the header is row 1) and its cells,
    keyed by upload field name, defaults already applied."""

    number: int
    values: dict[str, str]
    error: str | None = None  # the row as a whole is broken (more cells than the header)


def canonical(header: str) -> str:
    """``" Call Date "`` -> ``call_date``: case, surrounding spaces, spaces/dots/hyphens ignored."""
    return _SEPARATORS.sub("_", str(header).strip().lower()).strip("_")


@dataclass(frozen=True)
class ColumnPlan:
    """How the manifest's columns become upload fields, decided once from the header."""

    fields: tuple[str | None, ...]  # per column: the upload field, or None (ignored)
    unknown: tuple[str, ...]
    defaults: dict[str, str]


def plan_columns(headers: list[str], column_map: dict[str, str], defaults: dict[str, str],
                 path: str) -> ColumnPlan:
    """Decide which column feeds which field; refuse a header that cannot make valid rows."""
    renames = {canonical(src): canonical(dst) for src, dst in column_map.items()}
    bad_targets = sorted(set(renames.values()) - set(UPLOAD_FIELDS))
    if bad_targets:
        raise ManifestError(path, f"--map names unknown upload field(s): {', '.join(bad_targets)}")
    bad_defaults = sorted(set(map(canonical, defaults)) - set(UPLOAD_FIELDS))
    if bad_defaults:
        raise ManifestError(path, f"--set names unknown upload field(s): {', '.join(bad_defaults)}")
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
        raise ManifestError(
            path,
            f"required column(s) missing: {', '.join(missing)} "
            f"(columns found: {', '.join(map(str, headers)) or 'none'}; rename with --map or give "
            "a value for every row with --set)",
        )
    return ColumnPlan(tuple(fields), tuple(unknown), {canonical(k): v for k, v in defaults.items()})


class Manifest:
    """An opened manifest whose header has been checked; ``chunks()`` streams its rows."""

    def __init__(self, path: Path, plan: ColumnPlan, chunk_rows: int) -> None:
        self.path = path
        self.plan = plan
        self.chunk_rows = chunk_rows

    def estimate_rows(self) -> int:
        """About how many data rows the file holds (its line count less the header), for
        progress and ETA: fast, and exact unless cells hold line breaks."""
        lines = 0
        last = b"\n"
        with self.path.open("rb") as handle:
            while block := handle.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
        return max(0, lines + (last != b"\n") - 1)

    def chunks(self) -> Iterator[list[ManifestRow]]:
        """The non-blank rows in chunks of at most ``chunk_rows``; blocking, so call it from a
        thread in async code.

        Read with the csv module rather than pandas: pandas shifts or silently drops the cells
        of a row longer than the header, where we must name that row instead.
        """
        shown = str(self.path)
        plan = self.plan
        width = len(plan.fields)
        number = 1  # the sheet's row number; the header is row 1, a blank line is a row too
        batch: list[ManifestRow] = []
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as handle:
                reader = csv.reader(handle, strict=True)
                next(reader, None)
                for cells in reader:
                    number += 1
                    if not any(c.strip() for c in cells):
                        continue
                    values = {f: c for f, c in zip(plan.fields, cells, strict=False)
                              if f is not None and c.strip()}
                    for name, value in plan.defaults.items():
                        values.setdefault(name, value)
                    extra = [c for c in cells[width:] if c.strip()]
                    error = (f"has {len(cells)} cells but the header has {width} columns; "
                             "is a comma inside a value not quoted?") if extra else None
                    batch.append(ManifestRow(number, values, error))
                    if len(batch) >= self.chunk_rows:
                        yield batch
                        batch = []
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ManifestError(shown, f"near row {number}: {_reason(exc)}") from None
        except OSError as exc:
            raise ManifestError(shown, _reason(exc)) from None
        if batch:
            yield batch


def open_manifest(path: Path, *, column_map: dict[str, str] | None = None,
                  defaults: dict[str, str] | None = None, chunk_rows: int = 1000) -> Manifest:
    """Check the manifest's type and header (``ManifestError`` if it cannot work at all) and
    warn once about columns that will be ignored."""
    shown = str(path)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ManifestError(shown, f"unsupported manifest type {path.suffix or '(none)'!r}; "
                            "save it as CSV (UTF-8)")
    if not path.is_file():
        raise ManifestError(shown, "no such file" if not path.exists() else "not a file")
    try:
        headers = _read_header(path)
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise ManifestError(shown, _reason(exc)) from None
    if not any(h.strip() for h in headers):
        raise ManifestError(shown, "the file is empty (expected a header row)")
    plan = plan_columns(headers, column_map or {}, defaults or {}, shown)
    if plan.unknown:
        log.warning("%s: ignoring unknown column(s), not sent: %s", shown, ", ".join(plan.unknown))
    return Manifest(path, plan, chunk_rows)


def _read_header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return [h for h in next(csv.reader(handle), [])]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not valid UTF-8 ({exc.reason}); save the manifest as CSV UTF-8"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"not a well-formed CSV ({str(exc).strip()})"
