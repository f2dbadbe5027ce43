"""Normalizers that undo what spreadsheets do to data, and the row model's error reporting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from importer.errors import RowError
from importer.manifest.call_dates import RowContext, format_call_date, parse_call_date, resolve_zone
from importer.manifest.identity import identify, shard_key
from importer.manifest.normalizers import (
    normalize_bool,
    normalize_disposition,
    normalize_external_id,
    normalize_id,
    normalize_phone,
    normalize_ten_digit_phone,
    normalize_zip,
)
from importer.manifest.records import validate_row

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CTX = RowContext(base_dir=Path("/data/manifests"), zone=ZoneInfo("America/New_York"), now=NOW)


@pytest.mark.parametrize(("raw", "clean"), [
    ("12", "12"), ("12.0", "12"), (" 12 ", "12"), ("0012", "12"), ("1.2E3", "1200"),
])
def test_ids(raw: str, clean: str) -> None:
    assert normalize_id(raw) == clean


FULL_WIDTH_12 = "\uff11\uff12"  # digits to str.isdigit(), but not to the API


@pytest.mark.parametrize("raw", ["12.5", "abc", "", "-3", FULL_WIDTH_12])
def test_bad_ids(raw: str) -> None:
    with pytest.raises(ValueError, match="whole number"):
        normalize_id(raw)


@pytest.mark.parametrize(("raw", "clean"), [
    ("(555) 123-4567", "5551234567"),
    ("+1 555-123-4567", "5551234567"),
    ("1-555-123-4567", "5551234567"),
    ("555.123.4567", "5551234567"),
    ("5551234567.0", "5551234567"),
    ("5.551234567E9", "5551234567"),
    ("+44 20 7946 0958", "442079460958"),
    ("555.0000", "5550000"),        # a dot in a phone, not an Excel float
    ("555.0100", "5550100"),
])
def test_phones(raw: str, clean: str) -> None:
    assert normalize_phone(raw) == clean


@pytest.mark.parametrize("raw", ["call me", "555-CALL-NOW", "12", "1234567890123456"])
def test_bad_phones(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_phone(raw)


@pytest.mark.parametrize("raw", ["6.17555E+09", "6.2E9"])
def test_phones_excel_rounded_are_refused_not_padded_with_zeros(raw: str) -> None:
    with pytest.raises(ValueError, match="Excel rounded"):
        normalize_phone(raw)


def test_external_ids_excel_stored_as_numbers() -> None:
    assert normalize_external_id("1234.0") == "1234"
    assert normalize_external_id("1.234E3") == "1234"
    assert normalize_external_id("PBX-0012") == "PBX-0012"  # text stays text
    with pytest.raises(ValueError, match="Excel rounded"):
        normalize_external_id("1.23457E+11")


def test_ring_to_needs_ten_digits() -> None:
    assert normalize_ten_digit_phone("+1 (617) 555-0199") == "6175550199"
    with pytest.raises(ValueError, match="10-digit"):
        normalize_ten_digit_phone("+44 20 7946 0958")


@pytest.mark.parametrize(("raw", "clean"), [
    ("02134", "02134"), ("2134", "02134"), ("2134.0", "02134"), ("02134-1234", "02134"),
])
def test_zip(raw: str, clean: str) -> None:
    assert normalize_zip(raw) == clean


@pytest.mark.parametrize("raw", ["123456", "MA", "0213a"])
def test_bad_zip(raw: str) -> None:
    with pytest.raises(ValueError, match="5-digit"):
        normalize_zip(raw)


@pytest.mark.parametrize(("raw", "clean"), [
    ("TRUE", "true"), ("yes", "true"), ("Y", "true"), ("1", "true"), ("1.0", "true"),
    ("False", "false"), ("no", "false"), ("n", "false"), ("0", "false"),
])
def test_bools(raw: str, clean: str) -> None:
    assert normalize_bool(raw) == clean


def test_disposition() -> None:
    assert normalize_disposition(" no answer ") == "NO ANSWER"
    assert normalize_disposition("no_answer") == "NO ANSWER"
    with pytest.raises(ValueError, match="ANSWERED"):
        normalize_disposition("VOICEMAIL")


@pytest.mark.parametrize(("raw", "sent"), [
    ("2025-03-04T09:15:22-05:00", "2025-03-04T09:15:22-05:00"),
    ("2025-03-04T14:15:22Z", "2025-03-04T14:15:22Z"),
    ("2025-03-04 09:15:22", "2025-03-04T09:15:22-05:00"),   # zone from the context
    ("2025-07-04 09:15", "2025-07-04T09:15:00-04:00"),      # daylight time in July
    ("03/04/2025 9:15 AM", "2025-03-04T09:15:00-05:00"),
    ("03/04/2025 21:15", "2025-03-04T21:15:00-05:00"),
    ("45720.5", "2025-03-04T12:00:00-05:00"),               # an Excel serial number
])
def test_call_dates(raw: str, sent: str) -> None:
    assert format_call_date(parse_call_date(raw, CTX)) == sent


def test_dayfirst() -> None:
    ctx = RowContext(base_dir=CTX.base_dir, zone=CTX.zone, now=NOW, dayfirst=True)
    assert format_call_date(parse_call_date("04/03/2025 09:15", ctx)) == "2025-03-04T09:15:00-05:00"
    assert format_call_date(parse_call_date("04.03.2025 09:15", ctx)) == "2025-03-04T09:15:00-05:00"
    assert format_call_date(parse_call_date("04/03/2025 09:15", CTX)) == "2025-04-03T09:15:00-04:00"
    with pytest.raises(ValueError, match="DD/MM/YYYY"):
        parse_call_date("31/31/2025 09:15", ctx)


@pytest.mark.parametrize(("raw", "why"), [
    ("03/10/2024 2:30 AM", "the hour the clocks skip"),         # spring forward: no 2:30
    ("2024-03-10 02:00", "the hour the clocks skip"),
    ("11/03/2024 1:30 AM", "the hour the clocks repeat"),       # fall back: 1:30 twice
])
def test_local_times_a_clock_change_skips_or_repeats_are_refused(raw: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        parse_call_date(raw, CTX)
    assert "America/New_York" in str(caught.value)
    assert "--dst-times before|after" in str(caught.value)


@pytest.mark.parametrize(("raw", "dst", "sent"), [
    # Before: the offset in force before the change; after: the one after it.
    ("03/10/2024 2:30 AM", "before", "2024-03-10T02:30:00-05:00"),
    ("03/10/2024 2:30 AM", "after", "2024-03-10T02:30:00-04:00"),
    ("11/03/2024 1:30 AM", "before", "2024-11-03T01:30:00-04:00"),
    ("11/03/2024 1:30 AM", "after", "2024-11-03T01:30:00-05:00"),
    ("11/03/2024 3:30 AM", "refuse", "2024-11-03T03:30:00-05:00"),  # after the change: fine
])
def test_dst_times_picks_a_side_of_the_change(raw: str, dst: str, sent: str) -> None:
    ctx = RowContext(base_dir=CTX.base_dir, zone=CTX.zone, now=NOW, dst=dst)
    assert format_call_date(parse_call_date(raw, ctx)) == sent


def test_excel_serial_rounds_to_the_second() -> None:
    # 14:04:00 is 0.586111... of a day; a float's last digit must not make it 14:03:59.
    assert format_call_date(parse_call_date("45720.5861111111", CTX)).endswith("T14:04:00-05:00")


def test_the_zone_of_a_machine_without_a_named_zone(tmp_path: Path) -> None:
    copy = tmp_path / "localtime"  # a copy, not a link, as some containers have
    copy.write_bytes(Path("/usr/share/zoneinfo/Europe/Paris").read_bytes())
    zone, name = resolve_zone(None, localtime=copy)
    assert str(copy) in name
    assert datetime(2025, 7, 1, 12, tzinfo=zone).utcoffset() == timedelta(hours=2)
    assert resolve_zone(None, localtime=tmp_path / "absent") == (UTC, "UTC")
    assert resolve_zone("Europe/Paris")[1] == "Europe/Paris"
    with pytest.raises(ValueError, match="IANA"):
        resolve_zone("Mars/Olympus")


@pytest.mark.parametrize(("raw", "reason"), [
    ("yesterday", "date and time"),
    ("1989-12-31T23:00:00Z", "after 1990"),
    ("2026-06-02T00:00:00Z", "not in the future"),
])
def test_bad_call_dates(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_call_date(raw, CTX)


def test_row_errors_name_every_problem() -> None:
    with pytest.raises(RowError) as caught:
        validate_row({"call_date": "soon", "caller_id": "x", "recording_file": "a.wav"}, CTX)
    problems = {p.column: p for p in caught.value.problems}
    assert set(problems) == {"call_date", "caller_id", "group_id"}
    assert problems["call_date"].value == "soon"
    assert "required" in problems["group_id"].expected


def test_exactly_one_source() -> None:
    base = {"call_date": "2025-01-01T00:00:00Z", "group_id": "1", "caller_id": "6175550142"}
    with pytest.raises(RowError, match="exactly one"):
        validate_row(base, CTX)
    with pytest.raises(RowError, match="exactly one"):
        validate_row({**base, "recording_file": "a.wav",
                      "recording_url": "https://x.test/a.wav"}, CTX)
    with pytest.raises(RowError, match="http"):
        validate_row({**base, "recording_url": "ftp://x.test/a.wav"}, CTX)
    record = validate_row({**base, "recording_file": "../audio/a.wav"}, CTX)
    assert record.recording_file == Path("/data/audio/a.wav")


def test_form_fields_are_in_documented_order_and_skip_empty() -> None:
    record = validate_row({"caller_id": "6175550142", "group_id": "1", "city": " ",
                           "call_date": "2025-01-01T00:00:00Z",
                           "recording_url": "https://x.test/a.wav"}, CTX)
    assert [n for n, _ in record.form_fields()] == ["recording_url", "call_date", "group_id",
                                                    "caller_id"]


def test_identity() -> None:
    base = Path("/data/manifests")
    given = identify({"external_id": "1234.0", "recording_file": "a.wav"}, base, True)
    assert (given.key, given.external_id) == ("ext:1234", "1234")
    by_path = identify({"recording_file": "../audio/a.wav"}, base, True)
    # The file itself: not a path relative to whichever manifest names it.
    assert by_path.key == "file:/data/audio/a.wav" == by_path.recording
    assert shard_key(by_path, base) == "file:../audio/a.wav"  # shards as before
    elsewhere = identify({"recording_file": "a.wav"}, Path("/data/night2"), True)
    assert elsewhere.key == "file:/data/night2/a.wav" != \
        identify({"recording_file": "a.wav"}, Path("/data/night1"), True).key
    assert by_path.external_id is not None and by_path.external_id.startswith("cvzimp-")
    # Stable: the same source always gives the same id; another source another one.
    same = identify({"recording_file": "../audio/./a.wav"}, base, True)
    assert (same.key, same.external_id) == (by_path.key, by_path.external_id)
    assert identify({"recording_file": "../audio/b.wav"}, base, True).external_id != \
        by_path.external_id
    assert identify({"recording_file": "a.wav"}, base, False).external_id is None
    assert identify({"recording_url": "https://x.test/a.wav"}, base, True).key == \
        "url:https://x.test/a.wav"
