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
from .names import NAME_FIELDS
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
    #: Per column, how its field was chosen: ``auto`` (its header names it), ``mapped``
    #: (``--map``, ``[columns]``), ``ignored`` (mapped to nothing) or ``unknown`` (no field).
    how: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()  # the header's cells, as the sheet spells them


#: What a column may be mapped onto: an upload field, or a name the run resolves to an id.
TARGETS: tuple[str, ...] = UPLOAD_FIELDS + tuple(NAME_FIELDS)


def column_renames(column_map: dict[str, str]) -> dict[str, str]:
    """Canonical column -> canonical target; an empty target (``--map 'Notes='``) ignores
    the column, also one whose header would name a field by itself."""
    return {canonical(src): canonical(dst) for src, dst in column_map.items()}


def plan_columns(headers: list[str], column_map: dict[str, str], defaults: dict[str, str],
                 path: str) -> ColumnPlan:
    """Decide which column feeds which field; refuse a header that cannot make valid rows."""
    renames = column_renames(column_map)
    _refuse_unknown_targets(path, "--map", [t for t in renames.values() if t], TARGETS)
    _refuse_unknown_targets(path, "--set", list(map(canonical, defaults)), UPLOAD_FIELDS)
    _refuse_absent_columns(headers, column_map, path)
    fields: list[str | None] = []
    unknown: list[str] = []
    how: list[str] = []
    seen: dict[str, str] = {}
    named = _named_by_header(headers, renames, defaults)
    for header in headers:
        name = canonical(header)
        mapped = name in renames
        name = renames.get(name, name)
        if not name or (name not in UPLOAD_FIELDS and not (name in NAME_FIELDS and (
                mapped or name in named))):
            if name and not mapped:
                unknown.append(str(header))
            fields.append(None)
            how.append("ignored" if mapped else "unknown")
            continue
        if name in seen:
            raise ManifestError(path, f"columns {seen[name]!r} and {header!r} both map to {name}")
        seen[name] = str(header)
        fields.append(name)
        how.append("mapped" if mapped else "auto")
    present = set(seen) | {NAME_FIELDS[f][0] for f in seen if f in NAME_FIELDS} | \
        {canonical(k) for k, v in defaults.items() if v}
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
    return ColumnPlan(tuple(fields), tuple(unknown),
                      {canonical(k): v for k, v in defaults.items()}, tuple(how),
                      tuple(str(h) for h in headers))


def _named_by_header(headers: list[str], renames: dict[str, str],
                     defaults: dict[str, str]) -> set[str]:
    """Name columns taken by their header alone (``group_name``, as an errors CSV writes it):
    only where no column or default gives the id they stand for, so that a manifest with a
    group_id column keeps a "Group Name" beside it as a note, as it always did."""
    targets = {renames.get(n, n) for n in map(canonical, headers)} | \
        {canonical(k) for k, v in defaults.items() if v}
    return {n for n in targets if n in NAME_FIELDS and NAME_FIELDS[n][0] not in targets}


def _refuse_unknown_targets(path: str, flag: str, names: list[str],
                            known: tuple[str, ...]) -> None:
    """A field name that is not one, with the nearest real one (``caller_number``: did you
    mean caller_id?)."""
    bad = sorted(set(names) - set(known))
    if not bad:
        return

    def shown(name: str) -> str:
        close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
        return name + (f" (did you mean {' or '.join(close)}?)" if close else "")

    raise ManifestError(path, f"{flag} names unknown upload field(s): "
                              f"{', '.join(map(shown, bad))}")


def _refuse_absent_columns(headers: list[str], column_map: dict[str, str], path: str) -> None:
    """A ``--map`` (or ``[columns]``) entry naming a column the header lacks is a typo or the
    wrong manifest: refused, never read as an empty column, with the columns there are."""
    present = {canonical(h) for h in headers}
    # A column absent whose field is a column already is a mapping already applied: the
    # errors CSV of a mapped manifest, fed back with the same --columns file.
    absent = [c for c, field in column_map.items() if canonical(c) not in present
              and canonical(field) not in present and canonical(field)]
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
    return len(names.intersection(TARGETS))


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
