"""Properties of the normalizers, over values hypothesis makes up: a normalized value
normalizes to itself, formatting never changes the digits, and the fast row path agrees with
the pydantic model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from importer.errors import RowError
from importer.manifest.call_dates import RowContext, format_call_date, parse_call_date
from importer.manifest.normalizers import (
    DISPOSITIONS,
    normalize_bool,
    normalize_disposition,
    normalize_id,
    normalize_phone,
    normalize_zip,
    undo_excel_number,
)
from importer.manifest.records import UploadRecord, validate_row

NOW = datetime(2026, 6, 1, tzinfo=UTC)
#: The properties below are about formats, so a wall time that a clock change skips or repeats
#: is read with the offset before the change; that such times are refused by default is a
#: property of its own (``test_a_wall_time_is_refused_exactly_when_a_clock_change_...``).
CTX = RowContext(base_dir=Path("/data"), zone=ZoneInfo("America/Chicago"), now=NOW,
                 dst="before")
digits = st.text(alphabet="0123456789", min_size=3, max_size=15)
separators = st.sampled_from(["", " ", "-", ".", "/", " - "])


@st.composite
def formatted_phones(draw: st.DrawFn) -> tuple[str, str]:
    """A phone's digits, and the same digits as a person or a spreadsheet wrote them."""
    number = draw(digits)
    if len(number) == 11 and number.startswith("1"):
        number = "2" + number[1:]  # an 11-digit NANP number is the one case that changes
    parts, i = [], 0
    while i < len(number):
        step = draw(st.integers(1, 4))
        parts.append(number[i:i + step])
        i += step
    text = draw(separators).join(parts)
    style = draw(st.sampled_from(["plain", "plus", "parens", "excel"]))
    if style == "plus":
        text = "+" + text
    elif style == "parens" and len(parts) > 1:
        text = f"({parts[0]}) " + draw(separators).join(parts[1:])
    elif style == "excel" and number[0] != "0" and len(number) >= 7:
        text = number + ".0"  # Excel's float: a whole phone number, not a short one
    return number, text


@given(formatted_phones())
def test_formatting_never_changes_the_digits(case: tuple[str, str]) -> None:
    number, text = case
    assert normalize_phone(text) == number


@given(digits)
def test_phones_normalize_to_themselves(number: str) -> None:
    once = normalize_phone(number)
    assert normalize_phone(once) == once
    if len(number) == 11 and number.startswith("1"):
        assert once == number[1:]  # NANP: the leading 1 goes, as ring_to wants 10 digits


@given(st.integers(0, 10**15))
def test_excel_floats_are_the_integer(n: int) -> None:
    assert normalize_id(f"{n}.0") == str(n)
    assert normalize_id(str(n)) == str(n)
    exact = f"{n:.{max(len(str(n)) - 1, 0)}E}"  # all digits kept, as 5.551234567E9
    assert undo_excel_number(exact) == str(n)
    assert normalize_id(normalize_id(exact)) == normalize_id(exact)


@given(st.integers(0, 99999))
def test_zip_codes_get_their_zeros_back(n: int) -> None:
    assert normalize_zip(str(n)) == f"{n:05d}"
    assert normalize_zip(f"{n}.0") == f"{n:05d}"
    assert normalize_zip(normalize_zip(str(n))) == f"{n:05d}"


@given(st.sampled_from(["true", "false", "yes", "no", "y", "n", "1", "0", "TRUE", "False",
                        "1.0", "0.0", " Yes "]))
def test_booleans_normalize_to_themselves(text: str) -> None:
    once = normalize_bool(text)
    assert once in ("true", "false") and normalize_bool(once) == once


@given(st.sampled_from(sorted(DISPOSITIONS)), st.sampled_from([str.lower, str.title, str]),
       st.sampled_from([" ", "_"]))
def test_dispositions_normalize_to_themselves(value: str, case: object, space: str) -> None:
    text = case(value).replace(" ", space)  # type: ignore[operator]
    once = normalize_disposition(text)
    assert once == value and normalize_disposition(once) == once


moments = st.datetimes(min_value=datetime(1990, 1, 2), max_value=datetime(2026, 5, 30))


@given(moments)
def test_call_dates_normalize_to_themselves(moment: datetime) -> None:
    moment = moment.replace(microsecond=0)
    once = format_call_date(parse_call_date(moment.isoformat(sep=" "), CTX))
    assert format_call_date(parse_call_date(once, CTX)) == once
    assert once.startswith(moment.strftime("%Y-%m-%dT%H:%M:%S"))  # wall clock unchanged


@given(moments, st.booleans())
def test_us_and_day_first_dates_mean_the_same_moment(moment: datetime, dayfirst: bool) -> None:
    moment = moment.replace(second=0, microsecond=0, fold=0)
    # A wall time a clock change skips or repeats is refused (the next test's case), whatever
    # its format: this one is about the format.
    assume(moment.replace(tzinfo=CTX.zone).utcoffset()
           == moment.replace(tzinfo=CTX.zone, fold=1).utcoffset())
    ctx = RowContext(base_dir=CTX.base_dir, zone=CTX.zone, now=NOW, dayfirst=dayfirst)
    order = "%d/%m/%Y" if dayfirst else "%m/%d/%Y"
    text = moment.strftime(f"{order} %I:%M %p")
    assert parse_call_date(text, ctx).replace(tzinfo=None) == moment


@given(moments)
@example(datetime(2024, 3, 10, 2, 30))  # Chicago springs forward: never happened
@example(datetime(2024, 11, 3, 1, 30))  # and falls back: happened twice
def test_a_wall_time_is_refused_exactly_when_a_clock_change_skips_or_repeats_it(
        moment: datetime) -> None:
    wall = moment.replace(microsecond=0)
    strict = RowContext(base_dir=CTX.base_dir, zone=CTX.zone, now=NOW)
    first, second = wall.replace(tzinfo=CTX.zone), wall.replace(tzinfo=CTX.zone, fold=1)
    try:
        parsed = parse_call_date(wall.isoformat(sep=" "), strict)
    except ValueError as exc:
        assert first.utcoffset() != second.utcoffset()
        assert "--dst-times before|after" in str(exc)
    else:
        assert first.utcoffset() == second.utcoffset()
        assert parsed == first


@given(st.floats(min_value=32875, max_value=46000))
def test_excel_serials_are_days_since_1899_12_30(serial: float) -> None:
    text = f"{serial:.6f}"
    moment = parse_call_date(text, CTX).replace(tzinfo=None)
    expected = datetime(1899, 12, 30) + timedelta(days=float(text))
    assert abs((moment - expected).total_seconds()) <= 0.5


cells = st.fixed_dictionaries({
    "recording_url": st.sampled_from(["https://x.test/a.wav", "ftp://x", ""]),
    "call_date": st.sampled_from(["2025-03-04 09:15", "45720.5", "soon", "", "2031-01-01"]),
    "group_id": st.sampled_from(["12", "12.0", "x", ""]),
    "caller_id": st.sampled_from(["(617) 555-0142", "6.17555E+09", "n/a", ""]),
    "zip_code": st.sampled_from(["2134", "123456", ""]),
    "is_outbound": st.sampled_from(["yes", "maybe", ""]),
    "disposition": st.sampled_from(["busy", "VOICEMAIL", ""]),
    "external_id": st.sampled_from(["1234.0", "1.23457E+11", "PBX-1", ""]),
})


@settings(max_examples=200)
@given(cells)
def test_fast_row_path_agrees_with_the_model(values: dict[str, str]) -> None:
    try:
        fast: UploadRecord | None = validate_row(values, CTX)
        fast_columns: set[str] = set()
    except RowError as exc:
        fast, fast_columns = None, {p.column for p in exc.problems}
    try:
        slow: UploadRecord | None = UploadRecord.model_validate(values, context=CTX)
    except ValueError:
        slow = None
    assert (fast is None) == (slow is None)
    if fast is not None:
        assert fast.model_dump() == slow.model_dump()  # type: ignore[union-attr]
    else:
        assert fast_columns
