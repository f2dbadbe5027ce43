"""A call's date read as the instant it names: ISO 8601, ``MM/DD/YYYY h:mm AM`` (or day
first), an Excel serial number; a date written without a zone read as wall time in the run's
zone (``--timezone``, else the machine's), and a wall time that a daylight-saving change skips
or repeats refused unless ``--dst-times`` picks a side. ``RowContext`` carries what this needs
beyond the cell, and what the rest of a row's normalizing needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

from .names import NameTable
from .paths import NO_RULES, PathRules
from .values import value_maps

EARLIEST_CALL = datetime(1990, 1, 1, tzinfo=UTC)
#: Clock skew tolerated before a call date counts as "in the future".
FUTURE_SLACK = timedelta(minutes=10)


@dataclass(frozen=True)
class RowContext:
    """What normalizing a row needs beyond the row: where relative paths start, which zone
    a date without one is in, what "now" is (injected so tests need no clock)."""

    base_dir: Path
    zone: tzinfo
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    dayfirst: bool = False
    #: Called when a date without a zone is read in ``zone``, so the user can be told once.
    on_naive_date: Callable[[], None] | None = None
    #: A wall time that a daylight-saving change skips or repeats: refused (``refuse``), or
    #: read with the UTC offset in force before or after the change (``--dst-times``).
    dst: str = "refuse"
    #: Names to ids (``names``): the table the API listed, or None when none was asked
    #: (no name columns, or ``validate`` without credentials: names then stand unresolved).
    names: NameTable | None = None
    #: Value maps (``values``) by field, the user's over the built-in ones, keys comparable.
    values: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: value_maps({}))
    #: How recording paths written on another machine are read (``--recordings-root``,
    #: ``--path-map``; ``paths``).
    paths: PathRules = NO_RULES
    #: The latest call date accepted (``now`` and a little clock skew), computed once.
    latest: datetime = field(init=False, repr=False, compare=False)
    #: Days (ordinals) safely inside the accepted range whatever a date's offset: a date on
    #: one of them needs no exact comparison, which costs more than parsing it.
    safe_days: range = field(init=False, repr=False, compare=False)

    @property
    def paths_beside_manifest(self) -> Path | None:
        """The manifest's folder when relative recording paths start there; None when they
        start at ``--recordings-root`` (and mean the same from wherever a file names them)."""
        return self.base_dir if self.paths.root is None else None

    def __post_init__(self) -> None:
        latest = self.now + FUTURE_SLACK
        object.__setattr__(self, "latest", latest)
        object.__setattr__(self, "safe_days",
                           range(EARLIEST_CALL.toordinal() + 2, latest.toordinal() - 1))


# Month first (US) or, with ``dayfirst``, day first; separators /, . or -; 2- or 4-digit
# year; 12- or 24-hour clock, seconds optional.
_LOCAL_DATE = re.compile(
    r"^(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?\s*([AaPp]\.?[Mm]\.?)?)?$")
_EXCEL_SERIAL = re.compile(r"^\d{5}(\.\d+)?$")
_EXCEL_EPOCH = datetime(1899, 12, 30)


def _local_date(match: re.Match[str], dayfirst: bool) -> datetime:
    first, _, second, year_text, hour, minute, second_s, fraction, meridiem = match.groups()
    month, day = (int(second), int(first)) if dayfirst else (int(first), int(second))
    year = int(year_text)
    if len(year_text) == 2:  # as strptime's %y: 69-99 -> 1900s, 00-68 -> 2000s
        year += 1900 if year >= 69 else 2000
    h = int(hour or 0)
    if meridiem:
        if not 1 <= h <= 12:
            raise ValueError("an hour from 1 to 12 with AM/PM")
        h = h % 12 + (12 if meridiem[0] in "pP" else 0)
    micro = int((fraction or "0").ljust(6, "0"))
    return datetime(year, month, day, h, int(minute or 0), int(second_s or 0), micro)


def _read_date(value: str, dayfirst: bool) -> datetime:
    """The datetime ``value`` spells (naive unless it has a zone), or ``ValueError``."""
    parsed: datetime | None = None
    if value[4:5] == "-":  # ISO; anything else would only cost an exception to find out
        try:
            parsed = datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            parsed = None
    if parsed is None:
        local = _LOCAL_DATE.match(value)
        if local is not None:
            try:
                parsed = _local_date(local, dayfirst)
            except ValueError:
                parsed = None
        elif _EXCEL_SERIAL.match(value):
            # Excel counts days from 1899-12-30 and keeps the time as a fraction of a day;
            # rounded to the second, as Excel shows it.
            seconds = round(float(value) * 86400)
            parsed = _EXCEL_EPOCH + timedelta(seconds=seconds)
    if parsed is None:
        order = "DD/MM/YYYY" if dayfirst else "MM/DD/YYYY"
        raise ValueError("a date and time such as 2024-05-01T14:03:00-05:00 or "
                         f"{order} h:mm AM")
    return parsed


def _check_range(moment: datetime, ctx: RowContext) -> None:
    """``ValueError`` for a call before 1990 or in the future. ``moment`` may be naive (wall
    time in ``ctx.zone``): only a date near either end needs the exact, dearer comparison."""
    if moment.toordinal() in ctx.safe_days:
        return
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ctx.zone)
    if moment < EARLIEST_CALL:
        raise ValueError("a call date after 1990-01-01")
    if moment > ctx.latest:
        raise ValueError("a call date that is not in the future")


def parse_call_date(text: str, ctx: RowContext) -> datetime:
    """A timezone-aware datetime from ISO 8601, ``MM/DD/YYYY h:mm AM`` (``DD/MM/YYYY`` with
    ``dayfirst``), or an Excel serial number.

    A date without a zone is read as wall-clock time in ``ctx.zone``; the API requires a zone.
    """
    parsed = _read_date(text.strip(), ctx.dayfirst)
    if parsed.tzinfo is None:
        parsed = _in_zone(parsed, ctx)
        if ctx.on_naive_date is not None:
            ctx.on_naive_date()
    _check_range(parsed, ctx)
    return parsed


def _in_zone(wall: datetime, ctx: RowContext) -> datetime:
    """A wall time in ``ctx.zone``. One that a daylight-saving change skips (2:30 on the
    spring-forward night never happened) or repeats (1:30 on the fall-back night happened
    twice) names no single instant: sent with a guessed offset, the call would be filed an
    hour off without a word. So it is refused, unless ``ctx.dst`` picks a side: the offset in
    force before the change (``before``: PEP 495's ``fold=0``) or after it (``after``)."""
    first = wall.replace(tzinfo=ctx.zone)
    second = wall.replace(tzinfo=ctx.zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    if ctx.dst in ("before", "after"):
        return first if ctx.dst == "before" else second
    skipped = first.astimezone(UTC).astimezone(ctx.zone).replace(tzinfo=None) != wall
    what = "the hour the clocks skip" if skipped else "the hour the clocks repeat"
    raise ValueError(f"a local time that happened once in {ctx.zone} (this one falls in {what} "
                     "for daylight saving time): write its UTC offset in the cell (such as "
                     "-05:00), or read such times with the offset before or after the change "
                     "(--dst-times before|after)")


def normalize_call_date(text: str, ctx: RowContext) -> str:
    """``call_date`` as it is sent: RFC 3339 with an offset (``Z`` for UTC), seconds
    precision, a date without a zone read as wall time in ``ctx.zone``. (A shorter road for
    dates already written that way went: bench/shortcuts.py measured under 1% on
    ``validate`` of a big CSV.)"""
    return format_call_date(parse_call_date(text, ctx))


def format_call_date(moment: datetime) -> str:
    """RFC 3339 with the offset kept (``Z`` for UTC), seconds precision, as the API expects."""
    text = moment.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def resolve_zone(name: str | None, localtime: Path = Path("/etc/localtime")) -> tuple[tzinfo, str]:
    """The zone for dates that carry none, and its name for the one warning that says so.

    ``name`` is an IANA name (``America/New_York``); without one, the machine's zone: the name
    ``/etc/localtime`` links to, else the zone that file holds (a copy, as some containers
    have), and UTC when there is no such file.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (expected an IANA name such as "
                             "America/New_York)") from None
    try:
        key = str(localtime.resolve()).split("zoneinfo/", 1)[1]
        return ZoneInfo(key), key
    except (OSError, IndexError, ZoneInfoNotFoundError, ValueError):
        pass
    try:
        with localtime.open("rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime"), f"the zone of {localtime}"
    except (OSError, ValueError):
        return UTC, "UTC"
