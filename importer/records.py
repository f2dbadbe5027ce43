"""The upload row as a typed record, and the normalizers that undo what spreadsheets do to data.

A manifest cell arrives as text (Excel turned ``5551234567`` into ``5551234567.0`` and ``02134``
into ``2134``; people typed ``(555) 123-4567``). Each field's normalizer turns such text into the
exact form the API takes, or raises ``ValueError`` saying what was expected; ``validate_row``
gathers every problem of a row at once so the user can fix the row in one go.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .errors import Problem

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


_EXCEL_INT = re.compile(r"^[+-]?\d+(\.0*)?$|^[+-]?\d(\.\d+)?[eE]\+?\d+$")
_PHONE_FORMATTING = re.compile(r"[\s().\-/+]")
_TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "0.0"})


def undo_excel_number(text: str) -> str:
    """``"12.0"`` -> ``"12"``, ``"5.551234567E9"`` -> ``"5551234567"``; other text unchanged."""
    text = text.strip()
    if _EXCEL_INT.match(text) and ("." in text or "e" in text.lower()):
        number = float(text)
        if math.isfinite(number) and number == int(number):
            return str(int(number))
    return text


def normalize_id(text: str) -> str:
    """A numeric id such as ``group_id``: digits only, Excel's ``.0`` removed."""
    value = undo_excel_number(text)
    if not value.isdigit() or not value.isascii():
        raise ValueError("a whole number such as 1234")
    return value.lstrip("0") or "0"


def normalize_phone(text: str) -> str:
    """Digits only; ``+1 (555) 123-4567`` -> ``5551234567`` (a NANP number loses its leading 1);
    other international numbers keep all their digits, without ``+``."""
    value = _PHONE_FORMATTING.sub("", undo_excel_number(text))
    if not value.isdigit() or not value.isascii():
        raise ValueError("a phone number of digits, such as 5551234567 or (555) 123-4567")
    if len(value) == 11 and value.startswith("1"):
        value = value[1:]
    if not 3 <= len(value) <= 15:
        raise ValueError("a phone number of 3 to 15 digits")
    return value


def normalize_ten_digit_phone(text: str) -> str:
    """A US number the API checks for exactly 10 digits (``ring_to``, ``tracking_number``)."""
    value = normalize_phone(text)
    if len(value) != 10:
        raise ValueError("a 10-digit US phone number such as 5551234567")
    return value


def normalize_zip(text: str) -> str:
    """Five digits; leading zeros that Excel dropped come back (``2134`` -> ``02134``);
    ZIP+4 keeps its first five digits, the only part the API takes."""
    value = undo_excel_number(text)
    plus4 = re.match(r"^(\d{5})-\d{4}$", value)
    if plus4:
        return plus4.group(1)
    if not value.isdigit() or not value.isascii() or len(value) > 5:
        raise ValueError("a 5-digit US zip code such as 02134")
    return value.zfill(5)


def normalize_bool(text: str) -> str:
    """``true``/``false`` as the API spells them, from yes/no, y/n, 1/0 and Excel's TRUE/FALSE."""
    value = text.strip().lower()
    if value in _TRUE:
        return "true"
    if value in _FALSE:
        return "false"
    raise ValueError("true or false (also yes/no, y/n, 1/0)")


def normalize_disposition(text: str) -> str:
    value = re.sub(r"[\s_]+", " ", text.strip().upper())
    if value not in DISPOSITIONS:
        raise ValueError("one of " + ", ".join(sorted(DISPOSITIONS)))
    return value


_DATE_FORMATS_MONTHFIRST = (
    "%m/%d/%Y %I:%M %p", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S",
    "%m/%d/%y %I:%M %p", "%m/%d/%y %H:%M",
)
_DATE_FORMATS_DAYFIRST = tuple(f.replace("%m/%d", "%d/%m") for f in _DATE_FORMATS_MONTHFIRST)
_EXCEL_EPOCH = datetime(1899, 12, 30)


def parse_call_date(text: str, ctx: RowContext) -> datetime:
    """A timezone-aware datetime from ISO 8601, ``MM/DD/YYYY h:mm AM`` or an Excel serial.

    A date without a zone is read as wall-clock time in ``ctx.zone``; the API requires a zone.
    """
    value = text.strip()
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        formats = _DATE_FORMATS_DAYFIRST if ctx.dayfirst else _DATE_FORMATS_MONTHFIRST
        for fmt in formats:
            try:
                parsed = datetime.strptime(value.upper(), fmt)
                break
            except ValueError:
                continue
        if parsed is None and re.match(r"^\d{5}(\.\d+)?$", value):
            parsed = _EXCEL_EPOCH + timedelta(days=float(value))
    if parsed is None:
        raise ValueError("a date and time such as 2024-05-01T14:03:00-05:00 or 05/01/2024 2:03 PM")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ctx.zone)
        if ctx.on_naive_date is not None:
            ctx.on_naive_date()
    if parsed < EARLIEST_CALL:
        raise ValueError("a call date after 1990-01-01")
    if parsed > ctx.now + FUTURE_SLACK:
        raise ValueError("a call date that is not in the future")
    return parsed


def format_call_date(moment: datetime) -> str:
    """RFC 3339 with the offset kept (``Z`` for UTC), seconds precision, as the API expects."""
    text = moment.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _clean(text: Any) -> str | None:
    if text is None:
        return None
    value = str(text).strip()
    return value or None


class UploadRecord(BaseModel):
    """One row, normalized to exactly what is sent. ``None`` fields are not sent at all."""

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
    def _strip(cls, value: Any) -> Any:
        return _clean(value)

    @field_validator("group_id", "channel_id", "campaign_id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return None if value is None else normalize_id(value)

    @field_validator("external_id", "group_ext_id")
    @classmethod
    def _external(cls, value: str | None) -> str | None:
        return None if value is None else undo_excel_number(value)

    @field_validator("caller_id")
    @classmethod
    def _caller(cls, value: str) -> str:
        return normalize_phone(value)

    @field_validator("ring_to", "tracking_number")
    @classmethod
    def _ten_digits(cls, value: str | None) -> str | None:
        return None if value is None else normalize_ten_digit_phone(value)

    @field_validator("zip_code")
    @classmethod
    def _zip(cls, value: str | None) -> str | None:
        return None if value is None else normalize_zip(value)

    @field_validator("swap_channels", "is_outbound", "transcribe")
    @classmethod
    def _bool(cls, value: str | None) -> str | None:
        return None if value is None else normalize_bool(value)

    @field_validator("disposition")
    @classmethod
    def _disposition(cls, value: str | None) -> str | None:
        return None if value is None else normalize_disposition(value)

    @field_validator("call_date")
    @classmethod
    def _call_date(cls, value: str, info: ValidationInfo) -> str:
        return format_call_date(parse_call_date(value, _context(info)))

    @field_validator("recording_file", mode="before")
    @classmethod
    def _file(cls, value: Any, info: ValidationInfo) -> Path | None:
        text = _clean(value)
        if text is None:
            return None
        return Path(os.path.abspath(_context(info).base_dir / Path(text).expanduser()))

    @field_validator("recording_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> UploadRecord:
        if (self.recording_file is None) == (self.recording_url is None):
            raise ValueError("exactly one of recording_file and recording_url")
        return self

    def form_fields(self) -> list[tuple[str, str]]:
        """The text parts of the upload in documented order (the client adds the file part)."""
        data = self.model_dump(exclude_none=True, exclude={"recording_file"})
        return [(name, data[name]) for name in UPLOAD_FIELDS if name in data]


def _context(info: ValidationInfo) -> RowContext:
    ctx = info.context
    if not isinstance(ctx, RowContext):
        raise TypeError("UploadRecord must be validated with a RowContext")
    return ctx


def validate_row(values: dict[str, str], ctx: RowContext) -> UploadRecord:
    """The record for one row, or ``RowInvalid`` listing every problem of the row."""
    try:
        return UploadRecord.model_validate(values, context=ctx)
    except ValidationError as exc:
        raise RowInvalid(_problems(exc, values)) from None


class RowInvalid(ValueError):
    """Raised by ``validate_row``; the caller knows the row number (``RowError``)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def _problems(exc: ValidationError, values: dict[str, str]) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        column = str(err["loc"][0]) if err["loc"] else "recording_file/recording_url"
        if err["type"] == "missing":
            expected = "a value (this field is required)"
        else:
            expected = str(err["msg"]).removeprefix("Value error, ")
        raw = values.get(column, "") if err["loc"] else ""
        problems.append(Problem(column=column, value=str(raw).strip(), expected=expected))
    return problems


@dataclass(frozen=True)
class Identity:
    """How the ledger knows a row: ``key`` (stable across runs), ``source`` (file or URL as the
    user wrote it, for reports) and the ``external_id`` sent with the upload."""

    key: str
    source: str
    external_id: str | None


def identify(values: dict[str, str], base_dir: Path, auto_external_id: bool) -> Identity:
    """The row's identity from its raw cells, so that even an invalid row keeps its key after
    the user fixes it: the ``external_id`` if given, else the recording's path relative to the
    manifest's folder, else its URL. Without an ``external_id``, one is derived from the key
    (``cvzimp-`` and 24 hex digits of its sha256) so the call can be found again."""
    source_file = _clean(values.get("recording_file"))
    source_url = _clean(values.get("recording_url"))
    source = source_file or source_url or ""
    given = _clean(values.get("external_id"))
    if given is not None:
        external = undo_excel_number(given)
        return Identity(key=f"ext:{external}", source=source, external_id=external)
    if source_file:
        path = Path(source_file).expanduser()
        key = "file:" + _relative_posix(path, base_dir)
    elif source_url:
        key = "url:" + source_url
    else:
        return Identity(key="", source="", external_id=None)
    derived = AUTO_EXTERNAL_ID_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:24]
    return Identity(key=key, source=source, external_id=derived if auto_external_id else None)


def _relative_posix(path: Path, base_dir: Path) -> str:
    absolute = os.path.abspath(base_dir / path)
    try:
        relative = os.path.relpath(absolute, os.path.abspath(base_dir))
    except ValueError:  # another drive (Windows): no relative path exists
        relative = absolute
    return str(PurePosixPath(Path(relative)))


def resolve_zone(name: str | None) -> tuple[tzinfo, str]:
    """The zone for dates that carry none, and its name for the one warning that says so.

    ``name`` is an IANA name (``America/New_York``); without one, the machine's zone from
    ``/etc/localtime``, and UTC when even that is unknown.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (expected an IANA name such as "
                             "America/New_York)") from None
    try:
        target = str(Path("/etc/localtime").resolve())
        key = target.split("zoneinfo/", 1)[1]
        return ZoneInfo(key), key
    except (OSError, IndexError, ZoneInfoNotFoundError, ValueError):
        return UTC, "UTC"
