"""The CSV reader: header matching, mapping, defaults, row numbers as the sheet shows them,
and a clear error for a manifest that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from importer.errors import ManifestError
from importer.manifest.columns import canonical
from importer.manifest.opening import open_manifest


def rows_of(path: Path, **kwargs: object) -> list[tuple[int, dict[str, str]]]:
    manifest = open_manifest(path, **kwargs)  # type: ignore[arg-type]
    return [(r.number, r.values) for chunk in manifest.chunks() for r in chunk]


@pytest.mark.parametrize(("header", "name"), [
    ("Call Date", "call_date"), (" call-date ", "call_date"), ("CALL.DATE", "call_date"),
    ("Group ID", "group_id"), ("custom source type 1", "custom_source_type_1"),
])
def test_canonical(header: str, name: str) -> None:
    assert canonical(header) == name


def test_rows_keep_sheet_numbers_and_skip_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("Recording File,Call Date,Group ID,Caller ID,Notes\n"
                    "a.wav,2025-01-01T00:00:00Z,1,6175550142,hello\n"
                    "\n"
                    ",,,,\n"
                    "b.wav,2025-01-02T00:00:00Z,,6175550143,\n", encoding="utf-8-sig")
    rows = rows_of(path, defaults={"group_id": "7"}, chunk_rows=2)
    assert [n for n, _ in rows] == [2, 5]
    assert rows[0][1] == {"recording_file": "a.wav", "call_date": "2025-01-01T00:00:00Z",
                          "group_id": "1", "caller_id": "6175550142"}
    assert rows[1][1]["group_id"] == "7"  # the default fills an empty cell


def test_map_renames_columns(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("File,Start,Account,From\na.wav,2025-01-01T00:00:00Z,3,6175550142\n")
    rows = rows_of(path, column_map={"File": "recording_file", "Start": "call_date",
                                     "Account": "group_id", "from": "caller_id"})
    assert rows[0][1]["call_date"] == "2025-01-01T00:00:00Z"


def test_unknown_columns_are_warned_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "m.csv"
    path.write_text("recording_file,call_date,group_id,caller_id,Agent Notes\n"
                    "a.wav,2025-01-01T00:00:00Z,1,6175550142,x\n")
    rows_of(path)
    warnings = [r.getMessage() for r in caplog.records if "unknown column" in r.getMessage()]
    assert len(warnings) == 1 and "Agent Notes" in warnings[0]


@pytest.mark.parametrize(("content", "message"), [
    ("", "empty"),
    ("recording_file,call_date\na.wav,2025-01-01\n", "group_id, caller_id"),
    ("call_date,group_id,caller_id\n2025-01-01,1,2\n", "recording_file or recording_url"),
    ("recording_file,Recording-File,call_date,group_id,caller_id\n", "both map to"),
])
def test_broken_manifests(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(content)
    with pytest.raises(ManifestError, match=message):
        open_manifest(path)


def test_set_can_supply_a_required_column(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("recording_file,call_date,caller_id\na.wav,2025-01-01T00:00:00Z,6175550142\n")
    assert rows_of(path, defaults={"group_id": "9"})[0][1]["group_id"] == "9"


def test_bad_map_target(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("recording_file,call_date,group_id,caller_id\n")
    with pytest.raises(ManifestError, match="unknown upload field"):
        open_manifest(path, column_map={"x": "colour"})


def test_not_utf8_is_read_as_cp1252_with_a_warning(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes("recording_file,call_date,group_id,caller_id,caller_name\n"
                     "a.wav,2025-01-01T00:00:00Z,1,6175550142,Jos\xe9\n".encode("cp1252"))
    assert rows_of(path)[0][1]["caller_name"] == "Jos\xe9"
    assert any("cp1252" in r.getMessage() and "line 2" in r.getMessage()
               for r in caplog.records)


def test_encoding_can_be_forced(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes("recording_file,call_date,group_id,caller_id,caller_name\n"
                     "a.wav,2025-01-01T00:00:00Z,1,6175550142,\u0160ime\n".encode("cp1250"))
    assert rows_of(path, encoding="cp1250")[0][1]["caller_name"] == "\u0160ime"
    with pytest.raises(ManifestError, match="unknown encoding"):
        open_manifest(path, encoding="klingon")


def test_a_row_longer_than_the_header_is_named_not_shifted(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("recording_file,call_date,group_id,caller_id\n"
                    "a.wav,2025-01-01T00:00:00Z,1,617,555,0142\n"
                    "b.wav,2025-01-01T00:00:00Z,1,6175550142,,\n")
    manifest = open_manifest(path)
    first, second = next(manifest.chunks())
    assert first.error is not None and "6 cells" in first.error
    assert first.values["caller_id"] == "617"  # not shifted into the wrong columns
    assert second.error is None  # trailing empty cells are harmless


def test_unterminated_quote_is_a_manifest_error(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text('recording_file,call_date,group_id,caller_id\nb.wav,2025-01-01,1,2\n'
                    '"a.wav,2025-01-01,1,2\nc.wav,2025-01-01,1,2\nd.wav,2025-01-01,1,2\n')
    with pytest.raises(ManifestError, match=r"row 3 \(line 3\): a quoted value opened there "
                       r"is never closed .*well-formed"):
        rows_of(path)
