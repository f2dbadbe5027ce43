"""The reader over real messy files (``tests/data``, made by ``make_manifests.py``): European
CSV, cp1252, UTF-16 "Unicode Text", pipes under a title line, and an Excel workbook with a
title row, two sheets, date cells, floats and booleans. Row numbers are the sheet's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from importer.errors import ManifestError, RowError
from importer.manifest.call_dates import RowContext
from importer.manifest.opening import open_manifest
from importer.manifest.records import validate_row

DATA = Path(__file__).resolve().parent / "data"
CTX = RowContext(base_dir=DATA, zone=ZoneInfo("America/New_York"),
                 now=datetime(2026, 6, 1, tzinfo=UTC))


def rows_of(name: str, **kwargs: object) -> dict[int, dict[str, str]]:
    manifest = open_manifest(DATA / name, **kwargs)  # type: ignore[arg-type]
    try:
        return {r.number: r.values for chunk in manifest.chunks() for r in chunk}
    finally:
        manifest.close()


def test_european_csv_bom_semicolons_blank_line_trailing_columns() -> None:
    rows = rows_of("bom_semicolon.csv")
    assert sorted(rows) == [2, 4]  # row 3 is blank, and still counts
    assert rows[2]["recording_file"] == "a.wav"  # no BOM glued to the first header
    assert rows[2]["caller_name"] == "Zoë"
    assert "1,5 min" not in rows[2].values()  # the decimal comma is not a delimiter
    day_first = RowContext(base_dir=DATA, zone=CTX.zone, now=CTX.now, dayfirst=True)
    assert validate_row(rows[2], day_first).call_date == "2025-03-04T09:15:00-05:00"


def test_cp1252_falls_back_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    rows = rows_of("cp1252.csv")
    assert rows[2]["caller_name"] == "Renée Côté"
    assert rows[2]["company_name"] == "Café \u201cBleu\u201d"
    [warning] = [r.getMessage() for r in caplog.records if "cp1252" in r.getMessage()]
    assert "line 2" in warning and "--encoding" in warning


def test_utf16_unicode_text_with_tabs() -> None:
    assert rows_of("unicode_text.txt")[2]["caller_name"] == "Łukasz"


def test_pipes_below_a_title_line() -> None:
    rows = rows_of("pipes.txt")
    assert list(rows) == [3]
    record = validate_row(rows[3], CTX)
    assert (record.group_id, record.external_id) == ("12", "7")


def test_workbook_header_below_title_rows_and_real_row_numbers() -> None:
    manifest = open_manifest(DATA / "calls.xlsx")
    manifest.close()
    assert manifest.header_row == 4
    rows = rows_of("calls.xlsx")
    assert sorted(rows) == [5, 7, 8, 9]  # row 6 is blank; numbers are Excel's


def test_workbook_cells_read_as_excel_shows_them() -> None:
    rows = rows_of("calls.xlsx")
    first = rows[5]
    # A date cell, floats that were whole numbers, an int that lost its zero, a boolean.
    assert first["call_date"] == "2025-03-04 09:15:22"
    assert (first["group_id"], first["caller_id"]) == ("12", "6175550142")
    assert first["is_outbound"] == "TRUE"
    assert rows[7]["external_id"] == "1234"
    record = validate_row(first, CTX)
    assert record.call_date == "2025-03-04T09:15:22-05:00"
    assert (record.zip_code, record.is_outbound, record.disposition) == ("02134", "true",
                                                                         "ANSWERED")
    serial = validate_row(rows[7], CTX)  # a serial typed as a number
    assert serial.call_date == "2025-03-04T12:00:00-05:00"
    assert serial.is_outbound == "false"
    assert validate_row(rows[8], CTX).caller_id == "5551234567"  # 5.551234567E9 as a float


def test_workbook_row_errors_name_row_column_value() -> None:
    with pytest.raises(RowError) as caught:
        validate_row(rows_of("calls.xlsx")[9], CTX)
    problems = {p.column: p for p in caught.value.problems}
    assert set(problems) == {"call_date", "caller_id"}
    assert problems["call_date"].value == "2031-01-01 00:00:00"
    assert "future" in problems["call_date"].expected


def test_second_sheet_by_name() -> None:
    assert list(rows_of("calls.xlsx", sheet="April calls")) == [2]
    assert list(rows_of("calls.xlsx", sheet="april CALLS")) == [2]
    with pytest.raises(ManifestError, match="'March calls', 'April calls'"):
        open_manifest(DATA / "calls.xlsx", sheet="May")


def test_header_needs_two_fields_after_mapping(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("Exported calls\nFile,Start,group_id,caller_id\na.wav,2025-01-01,1,2\n")
    # Unmapped, "File,Start,..." names two fields (group_id, caller_id) but lacks the rest.
    with pytest.raises(ManifestError, match="recording_file or recording_url"):
        open_manifest(path)
    manifest = open_manifest(path, column_map={"File": "recording_file", "Start": "call_date"})
    assert manifest.header_row == 2


@pytest.mark.parametrize(("name", "content", "message"), [
    ("old.xls", b"\xd0\xcf\x11\xe0rest", "save it as"),
    ("sheet.ods", b"PK\x03\x04", "OpenDocument"),
    ("m.pdf", b"%PDF", "CSV UTF-8"),
    ("renamed.csv", b"PK\x03\x04rest", "rename it to .xlsx"),
    ("renamed.xlsx", b"\xd0\xcf\x11\xe0rest", ".xls"),
    ("broken.xlsx", b"not a zip at all", "not a readable .xlsx"),
])
def test_unreadable_types_say_what_to_do(tmp_path: Path, name: str, content: bytes,
                                         message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ManifestError, match=message):
        open_manifest(tmp_path / name)


def test_our_own_excel_safe_quote_is_undone(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("recording_file,call_date,group_id,caller_id,caller_name\n"
                    "a.wav,2025-01-01T00:00:00Z,1,'+1 617-555-0142,'=HYPERLINK\n")
    values = rows_of_path(path)
    assert values["caller_id"] == "+1 617-555-0142"
    assert values["caller_name"] == "=HYPERLINK"


def rows_of_path(path: Path) -> dict[str, str]:
    manifest = open_manifest(path)
    [[row]] = list(manifest.chunks())
    return row.values
