"""How a manifest's columns become upload fields: headers matched loosely (``Call Date``,
``call-date`` and ``CALL.DATE`` all mean ``call_date``), ``--map`` renames, ``--set`` defaults,
and the header row found below titles and notes. Decided once, from the header, before any row
is read; a header that cannot make valid rows is refused with what it lacks.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ManifestError
from .records import REQUIRED_FIELDS, SOURCE_FIELDS, UPLOAD_FIELDS

#: How far down a title, notes and blank rows may push the header.
HEADER_SCAN_ROWS = 50
_SEPARATORS = re.compile(r"[\s.\-]+")


def canonical(header: str) -> str:
    """``" Call Date "`` -> ``call_date``: case, surrounding spaces, spaces/dots/hyphens ignored."""
    return _SEPARATORS.sub("_", str(header).strip().lower()).strip("_")


@dataclass(frozen=True)
class ColumnPlan:
    """How the manifest's columns become upload fields, decided once from the header."""

    fields: tuple[str | None, ...]  # per column: the upload field, or None (ignored)
    unknown: tuple[str, ...]
    defaults: dict[str, str]


def column_renames(column_map: dict[str, str]) -> dict[str, str]:
    return {canonical(src): canonical(dst) for src, dst in column_map.items()}


def plan_columns(headers: list[str], column_map: dict[str, str], defaults: dict[str, str],
                 path: str) -> ColumnPlan:
    """Decide which column feeds which field; refuse a header that cannot make valid rows."""
    renames = column_renames(column_map)
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


def fields_named(cells: Iterable[str], renames: dict[str, str]) -> int:
    names = {renames.get(n, n) for n in map(canonical, cells)}
    return len(names.intersection(UPLOAD_FIELDS))


def blank(cells: list[str]) -> bool:
    return not "".join(cells).strip()


def find_header(records: Iterable[tuple[int, list[str]]],
                renames: dict[str, str]) -> tuple[int, list[str]] | None:
    """The first of the first ``HEADER_SCAN_ROWS`` rows that names at least two upload fields;
    failing that the first non-blank row (whose missing columns are then reported)."""
    first: tuple[int, list[str]] | None = None
    for seen, (number, cells) in enumerate(records):
        if seen >= HEADER_SCAN_ROWS:
            break
        if blank(cells):
            continue
        if first is None:
            first = (number, cells)
        if fields_named(cells, renames) >= 2:
            return number, cells
    return first
