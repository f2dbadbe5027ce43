"""The upload row as a typed record: the fields of ``POST /v2/call/upload`` and the record of
one row's cells normalized to exactly what is sent (``UploadRecord``).

``normalize_row`` runs each cell through its field's normalizer (``normalizers``,
``call_dates``, a recording's path in ``identity``) and gathers every problem of a row at once,
so the user can fix the row in one go; ``build_record`` makes the model of a row that goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    InstanceOf,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import Problem, RowError
from ..sources.locations import ObjectURL
from .call_dates import RowContext, normalize_call_date
from .identity import recording_path
from .names import NAME_FIELDS, NOT_LOOKED_UP
from .normalizers import NORMALIZERS
from .values import MAPPABLE, mapping_hint, value_key

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

    recording_file: Path | InstanceOf[ObjectURL] | None = None
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
        return recording_path(text, ctx.base_dir, ctx.paths)
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
    named: list[tuple[str, str]] = []
    normalizers, maps = NORMALIZERS, ctx.values
    for name, raw in values.items():
        text = raw.strip() if raw.__class__ is str else _clean(raw)
        if not text:
            continue
        # normalize_field, inlined: this loop runs for every cell of every row.
        try:
            normalizer = normalizers.get(name)
            if normalizer is not None:
                mapped = maps.get(name)
                clean[name] = normalizer(text if mapped is None else
                                         mapped.get(value_key(text), text))
            elif name == "call_date":
                clean[name] = normalize_call_date(text, ctx)
            elif name == "recording_file":
                clean[name] = recording_path(text, ctx.base_dir, ctx.paths)
            elif name in _FIELD_ORDER:
                clean[name] = maps[name].get(value_key(text), text) if name in maps else text
            elif name in NAME_FIELDS:
                named.append((name, text))
            else:
                problems.append(Problem(name, text, "no such upload field"))
        except ValueError as exc:
            hint = mapping_hint(name) if name in MAPPABLE else ""
            problems.append(Problem(name, text, str(exc) + hint))
    if named:
        _resolve_names(named, clean, problems, ctx)
    if problems or not _REQUIRED.issubset(clean) or \
            ("recording_file" in clean) == ("recording_url" in clean):
        _raise_problems(clean, problems)
    return clean


def _resolve_names(named: list[tuple[str, str]], clean: dict[str, Any],
                   problems: list[Problem], ctx: RowContext) -> None:
    """Names to ids (``names``), into the upload fields they stand for; a field given both
    ways must agree."""
    for pseudo, text in named:
        target = NAME_FIELDS[pseudo][0]
        try:
            found = NOT_LOOKED_UP if ctx.names is None else ctx.names.resolve(pseudo, text)
        except ValueError as exc:
            problems.append(Problem(pseudo, text, str(exc)))
            continue
        given = clean.setdefault(target, found)
        if given != found and ctx.names is not None:
            problems.append(Problem(pseudo, text, f"the {NAME_FIELDS[pseudo][3]} of the row's "
                                    f"{target} {given} (this name is id {found})"))


def _raise_problems(clean: dict[str, Any], problems: list[Problem]) -> None:
    failed = {NAME_FIELDS[p.column][0] if p.column in NAME_FIELDS else p.column
              for p in problems}
    for name in REQUIRED_FIELDS:
        if name not in clean and name not in failed:
            problems.append(Problem(name, "", "a value (this field is required)"))
    if not failed.intersection(SOURCE_FIELDS) and \
            ("recording_file" in clean) == ("recording_url" in clean):
        problems.append(Problem(_SOURCE_COLUMN, "both" if "recording_url" in clean else "",
                                _ONE_SOURCE))
    raise RowError(in_field_order(problems))


def in_field_order(problems: list[Problem]) -> list[Problem]:
    """A row's problems in the documented order of their fields (a name as its id's)."""
    return sorted(problems, key=lambda p: _FIELD_ORDER.get(
        NAME_FIELDS[p.column][0] if p.column in NAME_FIELDS else p.column, len(_FIELD_ORDER)))


def sent_fields(clean: Mapping[str, Any]) -> dict[str, str]:
    """What ``normalize_row`` returned, as the text the ledger keeps (paths as text), in the
    documented order of the fields."""
    return {name: str(clean[name]) for name in UPLOAD_FIELDS if name in clean}
