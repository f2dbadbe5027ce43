"""The upload row as a typed record, and the normalizers that undo what spreadsheets do to data.

A manifest cell arrives as text (Excel turned ``5551234567`` into ``5551234567.0`` and ``02134``
into ``2134``; people typed ``(555) 123-4567``). Each field's normalizer turns such text into the
exact form the API takes, or raises ``ValueError`` saying what was expected; ``validate_row``
gathers every problem of a row at once so the user can fix the row in one go.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

from ..errors import Problem, RowError

#: Every field of ``POST /v2/call/upload``, in the order of Convirza's documentation.
UPLOAD_FIELDS: tuple[str, ...] = (
    "recording_file", "recording_url", "call_date", "group_id", "group_ext_id", "external_id",
    "channel_id", "campaign_id", "caller_id", "tracking_number", "disposition", "line_type",
    "ring_to", "assign_to", "custom_source_type_1", "custom_source_type_2",
    "custom_source_type_3", "custom_source_type_4", "custom_source_type_5", "company_name",
    "city", "zip_code", "caller_name", "address", "state", "swap_channels", "is_outbound",
    "tag_name", "transcribe",
)
REQUIRED_FIELDS: tuple[str, ...] = ("call_date", "group_id", "caller_id")
SOURCE_FIELDS: tuple[str, ...] = ("recording_file", "recording_url")
DISPOSITIONS: frozenset[str] = frozenset({"ANSWERED", "NO ANSWER", "BUSY"})
EARLIEST_CALL = datetime(1990, 1, 1, tzinfo=UTC)
#: Clock skew tolerated before a call date counts as "in the future".
FUTURE_SLACK = timedelta(minutes=10)
AUTO_EXTERNAL_ID_PREFIX = "cvzimp-"


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
    #: The latest call date accepted (``now`` and a little clock skew), computed once.
    latest: datetime = field(init=False, repr=False, compare=False)
    #: Days (ordinals) safely inside the accepted range whatever a date's offset: a date on
    #: one of them needs no exact comparison, which costs more than parsing it.
    safe_days: range = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        latest = self.now + FUTURE_SLACK
        object.__setattr__(self, "latest", latest)
        object.__setattr__(self, "safe_days",
                           range(EARLIEST_CALL.toordinal() + 2, latest.toordinal() - 1))


_EXCEL_NUMBER = re.compile(r"^[+-]?\d+(\.\d*)?([eE][+-]?\d+)?$")
_PHONE_FORMATTING = re.compile(r"[\s().\-/+]")
_ZIP_PLUS4 = re.compile(r"^(\d{5})-\d{4}$")
_URL = re.compile(r"^https?://[^\s/?#]+", re.IGNORECASE)
_TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "0.0"})
#: Normalizers are pure and a column repeats few values (a group id, a disposition), so each
#: keeps its recent answers: a million-row manifest then normalizes most cells by one lookup.
_CACHE = 4096


def undo_excel_number(text: str) -> str:
    """``"12.0"`` -> ``"12"``, ``"5.551234567E9"`` -> ``"5551234567"``; other text unchanged.

    Exact (decimal, not binary floating point), so no digit is changed on the way.
    """
    text = text.strip()
    if ("." in text or "e" in text or "E" in text) and _EXCEL_NUMBER.match(text):
        try:
            number = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            return text
        if number == number.to_integral_value() and abs(number) < 10**30:
            return str(int(number))
    return text


def rounded_by_excel(text: str) -> bool:
    """True for a number in scientific notation with fewer digits than the whole number has:
    Excel showed ``6175550142`` as ``6.17555E+09`` in a narrow column and exported what it
    showed, so the last digits are lost and must not be made up as zeros."""
    if "e" not in text and "E" not in text:
        return False
    text = text.strip()
    if not _EXCEL_NUMBER.match(text):
        return False
    mantissa = re.split("[eE]", text, maxsplit=1)[0].lstrip("+-").replace(".", "").lstrip("0")
    whole = undo_excel_number(text).lstrip("+-")
    return whole.isdigit() and len(mantissa) < len(whole)


_ROUNDED = ("the number written out in full; Excel rounded it to scientific notation, so "
            "digits are lost (format the column as Text or Number and export again)")


@lru_cache(maxsize=_CACHE)
def normalize_id(text: str) -> str:
    """A numeric id such as ``group_id``: digits only, Excel's ``.0`` removed."""
    value = undo_excel_number(text)
    if not value.isdigit() or not value.isascii():
        raise ValueError("a whole number such as 1234")
    return value.lstrip("0") or "0"


def normalize_external_id(text: str) -> str:
    """An id of the caller's own (``external_id``, ``group_ext_id``): any text, but a number that
    Excel stored as ``1234.0`` or ``1.234E3`` becomes ``1234`` again; a number Excel rounded is
    refused rather than sent as another call's id."""
    if rounded_by_excel(text):
        raise ValueError(_ROUNDED)
    return undo_excel_number(text)


@lru_cache(maxsize=_CACHE)
def normalize_phone(text: str) -> str:
    """Digits only; ``+1 (555) 123-4567`` -> ``5551234567`` (a NANP number loses its leading 1);
    other international numbers keep all their digits, without ``+``.

    ``5551234567.0`` is a phone Excel stored as a number; ``555.0000`` is a phone written with
    a dot: only a number of seven digits or more before the ``.0`` is taken for Excel's.
    """
    if rounded_by_excel(text):
        raise ValueError(_ROUNDED)
    whole = undo_excel_number(text)
    if "." in text and len(whole.lstrip("+-")) < 7:
        whole = text
    value = _PHONE_FORMATTING.sub("", whole)
    if not value.isdigit() or not value.isascii():
        raise ValueError("a phone number of digits, such as 5551234567 or (555) 123-4567")
    if len(value) == 11 and value.startswith("1"):
        value = value[1:]
    if not 3 <= len(value) <= 15:
        raise ValueError("a phone number of 3 to 15 digits")
    return value


@lru_cache(maxsize=_CACHE)
def normalize_ten_digit_phone(text: str) -> str:
    """A US number the API checks for exactly 10 digits (``ring_to``, ``tracking_number``)."""
    value = normalize_phone(text)
    if len(value) != 10:
        raise ValueError("a 10-digit US phone number such as 5551234567")
    return value


@lru_cache(maxsize=_CACHE)
def normalize_zip(text: str) -> str:
    """Five digits; leading zeros that Excel dropped come back (``2134`` -> ``02134``);
    ZIP+4 keeps its first five digits, the only part the API takes."""
    value = undo_excel_number(text)
    plus4 = _ZIP_PLUS4.match(value)
    if plus4:
        return plus4.group(1)
    if not value.isdigit() or not value.isascii() or len(value) > 5:
        raise ValueError("a 5-digit US zip code such as 02134")
    return value.zfill(5)


@lru_cache(maxsize=_CACHE)
def normalize_bool(text: str) -> str:
    """``true``/``false`` as the API spells them, from yes/no, y/n, 1/0 and Excel's TRUE/FALSE."""
    value = text.strip().lower()
    if value in _TRUE:
        return "true"
    if value in _FALSE:
        return "false"
    raise ValueError("true or false (also yes/no, y/n, 1/0)")


@lru_cache(maxsize=_CACHE)
def normalize_disposition(text: str) -> str:
    """Upper-cased, ``no_answer`` read as ``NO ANSWER``, and one of the values the API knows."""
    value = re.sub(r"[\s_]+", " ", text.strip().upper())
    if value not in DISPOSITIONS:
        raise ValueError("one of " + ", ".join(sorted(DISPOSITIONS)))
    return value


def normalize_url(text: str) -> str:
    """An http(s) URL with a host; the API fetches the recording from it."""
    value = text.strip()
    if not _URL.match(value):
        raise ValueError("an http:// or https:// URL")
    return value


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


def call_facts(call_date: str, caller_id: str, group_id: str) -> str:
    """The call's own facts as one text, ``<epoch seconds>|<caller_id>|<group_id>``: what
    tells two calls with byte-identical recordings apart when no external_id does (short
    recordings of silence, tones and greetings are identical across many calls). The date is
    the instant to the second, whatever zone it was written in. The ledger's migration
    ``0005_call_facts`` computes the same text in SQL for rows kept before it."""
    moment = datetime.fromisoformat(call_date.replace("z", "Z"))
    return f"{int(moment.timestamp())}|{caller_id}|{group_id}"


def recording_path(text: str, base_dir: Path) -> Path:
    """The recording's absolute path: relative to the manifest's folder unless absolute."""
    return Path(resolve_path(text, base_dir))


def resolve_path(text: str, base_dir: Path) -> str:
    """The absolute path of the file the operating system opens for ``text`` (relative to
    ``base_dir`` unless absolute). ``lnk/../x.wav`` is ``x.wav`` beside the folder ``lnk``
    points to, not beside ``lnk``: as text (``os.path.abspath``) it would name another
    recording. So the part up to the last ``..`` is resolved as the system resolves it
    (``realpath``); the rest, and any path without ``..``, keeps its spelling, symlinks
    included, so that the ledger's keys of files reached through a linked folder stay as
    they were."""
    joined = os.path.join(base_dir, os.path.expanduser(text))
    if ".." not in joined:
        return os.path.abspath(joined)
    parts = joined.split(os.sep)
    last = max(i for i, part in enumerate(parts) if part == "..") if ".." in parts else -1
    if last < 0:
        return os.path.abspath(joined)
    return os.path.abspath(os.path.join(_real(os.sep.join(parts[:last + 1]) or os.sep),
                                        *parts[last + 1:]))


@lru_cache(maxsize=_CACHE)
def _real(prefix: str) -> str:
    """``os.path.realpath``, kept for a run (``forget_paths``): its rows share a few folders."""
    return os.path.realpath(prefix)


def forget_paths() -> None:
    """A new run resolves its paths anew (a link may point elsewhere since the last one)."""
    _real.cache_clear()


#: The normalizer of every field that has one; fields not listed are free text, stripped.
#: ``call_date`` and ``recording_file`` need the row's context and are handled apart.
NORMALIZERS: dict[str, Callable[[str], str]] = {
    "recording_url": normalize_url,
    "group_id": normalize_id, "channel_id": normalize_id, "campaign_id": normalize_id,
    "external_id": normalize_external_id, "group_ext_id": normalize_external_id,
    "caller_id": normalize_phone,
    "ring_to": normalize_ten_digit_phone, "tracking_number": normalize_ten_digit_phone,
    "zip_code": normalize_zip,
    "swap_channels": normalize_bool, "is_outbound": normalize_bool, "transcribe": normalize_bool,
    "disposition": normalize_disposition,
}


def _clean(text: Any) -> str | None:
    """A cell as stripped text, ``None`` when empty."""
    if text is None:
        return None
    value = str(text).strip()
    return value or None


class UploadRecord(BaseModel):
    """One row, normalized to exactly what is sent. ``None`` fields are not sent at all.

    ``validate_row`` is the fast way to build one from manifest cells (it runs the same
    normalizers field by field and builds the model without re-checking it); validating the
    model directly, with a ``RowContext``, gives the same record.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    recording_file: Path | None = None
    recording_url: str | None = None
    call_date: str
    group_id: str
    group_ext_id: str | None = None
    external_id: str | None = None
    channel_id: str | None = None
    campaign_id: str | None = None
    caller_id: str
    tracking_number: str | None = None
    disposition: str | None = None
    line_type: str | None = None
    ring_to: str | None = None
    assign_to: str | None = None
    custom_source_type_1: str | None = None
    custom_source_type_2: str | None = None
    custom_source_type_3: str | None = None
    custom_source_type_4: str | None = None
    custom_source_type_5: str | None = None
    company_name: str | None = None
    city: str | None = None
    zip_code: str | None = None
    caller_name: str | None = None
    address: str | None = None
    state: str | None = None
    swap_channels: str | None = None
    is_outbound: str | None = None
    tag_name: str | None = None
    transcribe: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _normalize(cls, value: Any, info: ValidationInfo) -> Any:
        text = _clean(value)
        if text is None or info.field_name is None:
            return text
        return normalize_field(info.field_name, text, _context(info))

    @model_validator(mode="after")
    def _one_source(self) -> UploadRecord:
        if (self.recording_file is None) == (self.recording_url is None):
            raise ValueError(_ONE_SOURCE)
        return self

    def form_fields(self) -> list[tuple[str, str]]:
        """The text parts of the upload in documented order (the client adds the file part)."""
        data = self.model_dump(exclude_none=True, exclude={"recording_file"})
        return [(name, data[name]) for name in UPLOAD_FIELDS if name in data]


_ONE_SOURCE = "exactly one of recording_file and recording_url"
_SOURCE_COLUMN = "recording_file/recording_url"
_FIELD_ORDER = {name: i for i, name in enumerate(UPLOAD_FIELDS)}
_REQUIRED = frozenset(REQUIRED_FIELDS)


def normalize_field(name: str, text: str, ctx: RowContext) -> Any:
    """One stripped, non-empty cell of field ``name`` as it is sent (``ValueError`` saying
    what was expected): the single place where both ``validate_row`` and the model look."""
    if name == "call_date":
        return normalize_call_date(text, ctx)
    if name == "recording_file":
        return recording_path(text, ctx.base_dir)
    normalizer = NORMALIZERS.get(name)
    return text if normalizer is None else normalizer(text)


def _context(info: ValidationInfo) -> RowContext:
    ctx = info.context
    if not isinstance(ctx, RowContext):
        raise TypeError("UploadRecord must be validated with a RowContext")
    return ctx


def validate_row(values: Mapping[str, Any], ctx: RowContext) -> UploadRecord:
    """The record for one row, or ``RowError`` listing every problem of the row."""
    return build_record(normalize_row(values, ctx), ctx)


def build_record(clean: Mapping[str, Any], ctx: RowContext) -> UploadRecord:
    """The record of cells that ``normalize_row`` returned, validated as the model validates
    (the normalizers give back what they are given). Only rows on their way to a worker are
    made one. (Building it unchecked, ``model_construct``, went: bench/shortcuts.py measured
    no gain, 13 us a row either way.)"""
    return UploadRecord.model_validate(clean, context=ctx)


def normalize_row(values: Mapping[str, Any], ctx: RowContext) -> dict[str, Any]:
    """Every non-empty cell of a row as it is sent (``RowError`` lists every problem).

    Each cell goes through its field's normalizer once, here, with every problem of the row
    gathered; no model is made (pydantic's per-field machinery costs more than all the
    normalizers together, and a million-row manifest is checked row by row): ``build_record``
    makes one for the rows that go on to a worker. Validating the model directly gives the
    same record.
    """
    clean: dict[str, Any] = {}
    problems: list[Problem] = []
    normalizers = NORMALIZERS
    for name, raw in values.items():
        text = raw.strip() if raw.__class__ is str else _clean(raw)
        if not text:
            continue
        # normalize_field, inlined: this loop runs for every cell of every row.
        try:
            normalizer = normalizers.get(name)
            if normalizer is not None:
                clean[name] = normalizer(text)
            elif name == "call_date":
                clean[name] = normalize_call_date(text, ctx)
            elif name == "recording_file":
                clean[name] = recording_path(text, ctx.base_dir)
            elif name in _FIELD_ORDER:
                clean[name] = text
            else:
                problems.append(Problem(name, text, "no such upload field"))
        except ValueError as exc:
            problems.append(Problem(name, text, str(exc)))
    if problems or not _REQUIRED.issubset(clean) or \
            ("recording_file" in clean) == ("recording_url" in clean):
        _raise_problems(clean, problems)
    return clean


def _raise_problems(clean: dict[str, Any], problems: list[Problem]) -> None:
    failed = {p.column for p in problems}
    for name in REQUIRED_FIELDS:
        if name not in clean and name not in failed:
            problems.append(Problem(name, "", "a value (this field is required)"))
    if not failed.intersection(SOURCE_FIELDS) and \
            ("recording_file" in clean) == ("recording_url" in clean):
        problems.append(Problem(_SOURCE_COLUMN, "both" if "recording_url" in clean else "",
                                _ONE_SOURCE))
    problems.sort(key=lambda p: _FIELD_ORDER.get(p.column, len(_FIELD_ORDER)))
    raise RowError(problems)


def sent_fields(clean: Mapping[str, Any]) -> dict[str, str]:
    """What ``normalize_row`` returned, as the text the ledger keeps (paths as text), in the
    documented order of the fields."""
    return {name: str(clean[name]) for name in UPLOAD_FIELDS if name in clean}


class Identity(NamedTuple):
    """How the ledger knows a row: ``key`` (stable across runs and across manifests: the
    ``external_id``, else the file by its absolute path, else the URL), ``source`` (the file or
    URL as the user wrote it, for reports), ``recording`` (``file:`` and the absolute path, or
    ``url:`` and the URL, so that the same recording listed twice is found whatever the
    spelling), and the ``external_id`` sent with the upload."""

    key: str
    source: str
    external_id: str | None
    recording: str = ""

    @property
    def path(self) -> str | None:
        """The recording's absolute path, for a file row."""
        return self.recording[5:] if self.recording.startswith("file:") else None


def identify(values: Mapping[str, str], base_dir: Path, auto_external_id: bool) -> Identity:
    """The row's identity from its raw cells, so that even an invalid row keeps its key after
    the user fixes it: the ``external_id`` if given, else the recording file's absolute path
    (the file itself, not a path relative to whichever manifest names it: two folders' ``a.wav``
    are two recordings), else its URL. Without an ``external_id``, one is derived from the key
    (``cvzimp-`` and 24 hex digits of its sha256) so the call can be found again."""
    source_file = values.get("recording_file")
    source_file = source_file.strip() if source_file else None
    source_url = values.get("recording_url")
    source_url = source_url.strip() if source_url else None
    source = source_file or source_url or ""
    recording = ""
    if source_file:
        recording = "file:" + resolve_path(source_file, base_dir)
    elif source_url:
        recording = "url:" + source_url
    given = values.get("external_id")
    given = given.strip() if given else None
    if given:
        external = undo_excel_number(given)
        return Identity(f"ext:{external}", source, external, recording)
    if not recording:
        return Identity(key="", source="", external_id=None)
    derived = AUTO_EXTERNAL_ID_PREFIX + hashlib.sha256(recording.encode()).hexdigest()[:24]
    return Identity(key=recording, source=source,
                    external_id=derived if auto_external_id else None, recording=recording)


def shard_key(identity: Identity, base_dir: Path) -> str:
    """What ``--shard`` hashes: the key, but for a row known by its file, the path as the
    manifest writes it (relative to its folder), as when keys were relative, so that no row
    moves to another shard's ledger between versions."""
    if identity.key.startswith("file:") and identity.source:
        return "file:" + _relative_posix(Path(identity.source).expanduser(), base_dir)
    return identity.key


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    """Whether ``key`` belongs to shard K of N: a stable hash, the same on every machine
    and in every release (a row must not change shards between two nights)."""
    k, n = shard
    return n == 1 or int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % n == k


def _relative_posix(path: Path, base_dir: Path) -> str:
    absolute = os.path.abspath(base_dir / path)
    try:
        relative = os.path.relpath(absolute, os.path.abspath(base_dir))
    except ValueError:  # another drive (Windows): no relative path exists
        relative = absolute
    return str(PurePosixPath(Path(relative)))


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
