"""Broken and hostile Excel workbooks: truncated or missing parts, XML with a DTD (external
entities, billion laughs), zip bombs. Each must end in one line on stderr and exit 2, never a
traceback, without expanding an entity and without the process growing (issue 11, item 12).

Every workbook here is a real one written by openpyxl, then one part of its zip rewritten. A
workbook's parts are read at two moments: most when it is opened, its sheet row by row later
(openpyxl's read-only mode parses sheets lazily), so damage to a sheet is tried both near its
top (found while the header is looked for) and far below it (found while rows stream)."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest

from importer.cli.commands import main
from importer.errors import ManifestError
from importer.manifest.opening import open_manifest
from importer.manifest.xlsx import MAX_COMPRESSION_RATIO, MAX_PART_BYTES, MAX_SHARED_STRINGS_BYTES

ROOT = Path(__file__).resolve().parent.parent
HEADER = ["recording_file", "call_date", "group_id", "caller_id"]
SHEET = "xl/worksheets/sheet1.xml"
STRINGS = "xl/sharedStrings.xml"
NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
XXE = '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY l0 "ha">'
          + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)) + "]>\n")
PASSWD = [line for line in Path("/etc/passwd").read_text().splitlines() if line][:3]
#: The child caps its address space (a regression dies, not the machine) and prints its peak
#: resident size in KiB on stdout after the command line has run.
CHILD = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
         "sys.path.insert(0, sys.argv[1]); from importer.cli.commands import main; "
         "code = main(sys.argv[2:]); "
         "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True); "
         "sys.exit(code)")


def workbook(path: Path, rows: int = 1) -> Path:
    """A real workbook: the header, then ``rows`` rows of four cells."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER)
    for n in range(rows):
        sheet.append([f"call-{n}.wav", "2025-01-01T00:00:00Z", 12, "6175550142"])
    book.save(path)
    return path


def parts_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rewrite(path: Path, changes: dict[str, bytes | None]) -> Path:
    """Replace (or, with None, drop) parts of the workbook at ``path``, in place."""
    parts = {**parts_of(path), **changes}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            if data is not None:
                archive.writestr(name, data)
    return path


def shared_strings_workbook(path: Path, rows: int = 1) -> Path:
    """A workbook whose text cells live in ``xl/sharedStrings.xml``, as Excel writes them
    (openpyxl writes them inline): the part that openpyxl keeps in memory."""
    workbook(path, rows)
    parts = parts_of(path)
    strings: dict[str, int] = {}  # each text once, as Excel keeps them

    def to_shared(match: re.Match[str]) -> str:
        index = strings.setdefault(match.group(2), len(strings))
        return f'<c r="{match.group(1)}" t="s"><v>{index}</v></c>'

    sheet = re.sub(r'<c r="([A-Z]+\d+)" t="inlineStr"><is><t>([^<]*)</t></is></c>', to_shared,
                   parts[SHEET].decode())
    table = (f'<sst xmlns="{NS}" count="{len(strings)}" uniqueCount="{len(strings)}">'
             + "".join(f"<si><t>{s}</t></si>" for s in strings) + "</sst>")
    types = parts["[Content_Types].xml"].decode().replace(
        "</Types>", '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.'
        'openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>')
    return rewrite(path, {SHEET: sheet.encode(), STRINGS: table.encode(),
                          "[Content_Types].xml": types.encode()})


def one_line_error(err: str) -> str:
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("convirza-import: error: "), err
    for line in PASSWD:
        assert line not in err
    return err.strip()


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run`` needs credentials to start; no row here ever gets as far as sending (the one
    test that runs ``run`` past the header asks for the sandbox, ``token_env``)."""
    for name in ("CONVIRZA_USERNAME", "CONVIRZA_PASSWORD", "CONVIRZA_TOKEN_FILE",
                 "CONVIRZA_LEDGER", "CONVIRZA_SHEET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONVIRZA_TOKEN", "test-token")
    monkeypatch.setenv("CONVIRZA_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CONVIRZA_TIMEZONE", "UTC")


def refused(capsys: pytest.CaptureFixture[str], path: Path, command: str = "validate") -> str:
    """Run ``command`` on the workbook in this process: exit 2 and one line, returned."""
    assert main([command, str(path)]) == 2
    return one_line_error(capsys.readouterr().err)


def refused_after_rows(capsys: pytest.CaptureFixture[str], path: Path,
                       command: str = "validate") -> str:
    """Like ``refused``, for damage found while rows stream: the rows before it were read and
    their own problems (no such recording) logged, then the run stopped on one error line."""
    assert main([command, str(path), "--quiet"]) == 2
    return one_line_error(capsys.readouterr().err)


# --- 1. malformed parts -------------------------------------------------------------------

def cut(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


@pytest.mark.parametrize(("part", "damage", "expected"), [
    (SHEET, lambda d: cut(d, 0.5), "xl/worksheets/sheet1.xml is damaged"),
    (STRINGS, lambda d: cut(d, 0.5), "xl/sharedStrings.xml is damaged"),
    ("xl/workbook.xml", lambda d: cut(d, 0.3), "xl/workbook.xml is damaged"),
    ("xl/styles.xml", lambda d: cut(d, 0.3), "xl/styles.xml is damaged"),
    ("[Content_Types].xml", lambda d: cut(d, 0.5), "[Content_Types].xml is damaged"),
    (STRINGS, lambda d: b"\x00\xffnot xml", "xl/sharedStrings.xml is damaged"),
    ("xl/workbook.xml", lambda d: None, "xl/workbook.xml is missing"),
    (STRINGS, lambda d: None, "xl/sharedStrings.xml is missing"),
    ("[Content_Types].xml", lambda d: None, "[Content_Types].xml is missing"),
    ("xl/_rels/workbook.xml.rels", lambda d: None, "xl/_rels/workbook.xml.rels is missing"),
    (SHEET, lambda d: None, "xl/worksheets/sheet1.xml is missing"),
])
def test_a_damaged_or_missing_part_when_the_workbook_is_opened(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, part: str,
        damage: Callable[[bytes], bytes | None], expected: str) -> None:
    path = shared_strings_workbook(tmp_path / "calls.xlsx")
    rewrite(path, {part: damage(parts_of(path)[part])})
    line = refused(capsys, path)
    assert f"error: {path}: " in line and expected in line


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_sheet_damaged_far_below_the_header_stops_the_rows(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str,
        token_env: str) -> None:
    """``run`` against the sandbox (an API that is not there stops a run before its first
    row); no row is sent, since none of their recordings exists."""
    path = workbook(tmp_path / "calls.xlsx", rows=3000)
    sheet = parts_of(path)[SHEET]
    rewrite(path, {SHEET: sheet[: sheet.index(b'<row r="2900"')] + b'<row r="2900"><c r='})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CONVIRZA_LEDGER", str(tmp_path / "ledger.sqlite"))
        line = refused_after_rows(capsys, path, command)
    assert f"error: {path}: xl/worksheets/sheet1.xml is damaged after row 2899" in line


def test_a_shared_string_out_of_range(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    path = shared_strings_workbook(tmp_path / "calls.xlsx")
    rewrite(path, {SHEET: parts_of(path)[SHEET].replace(b"<v>4</v>", b"<v>99</v>")})
    line = refused_after_rows(capsys, path)
    assert "xl/worksheets/sheet1.xml is damaged after row 1: a cell refers to a shared string " \
        "that is not there" in line


def test_a_shared_string_out_of_range_far_below_the_header(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = shared_strings_workbook(tmp_path / "calls.xlsx", rows=3000)
    sheet = parts_of(path)[SHEET]
    at = sheet.index(b'<row r="2900"')
    rewrite(path, {SHEET: sheet[:at] + re.sub(rb"<v>\d+</v>", b"<v>999999</v>",
                                               sheet[at:], count=1)})
    line = refused_after_rows(capsys, path)
    assert "xl/worksheets/sheet1.xml is damaged after row 2899" in line
    assert "shared string" in line


def test_a_row_numbered_past_excels_last_row(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    """openpyxl yields an empty row for every row number a sheet skips: without a stop, row
    1,000,000,000 would keep the reader busy with empty rows for many minutes."""
    path = workbook(tmp_path / "calls.xlsx")
    sheet = parts_of(path)[SHEET]
    end = sheet.index(b"</sheetData>")
    rewrite(path, {SHEET: sheet[:end] + b'<row r="1000000000"><c r="A1000000000" '
                   b't="inlineStr"><is><t>x.wav</t></is></c></row>' + sheet[end:]})
    line = refused_after_rows(capsys, path)
    assert "xl/worksheets/sheet1.xml has rows past Excel's last row, 1,048,576" in line


def test_corrupt_compressed_data_in_the_sheet(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    path = workbook(tmp_path / "calls.xlsx", rows=3000)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(SHEET)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    middle = start + info.compress_size * 3 // 4
    data[middle:middle + 64] = bytes(64)  # deflate data zeroed: a bad block, or a bad CRC
    path.write_bytes(bytes(data))
    line = refused_after_rows(capsys, path)
    assert "xl/worksheets/sheet1.xml is damaged" in line


@pytest.mark.parametrize(("content", "expected"), [
    (b"not a zip at all", "not a readable .xlsx workbook"),
    (b"PK\x03\x04" + bytes(100), "not a readable .xlsx workbook"),
])
def test_not_a_zip(capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes,
                   expected: str) -> None:
    path = tmp_path / "calls.xlsx"
    path.write_bytes(content)
    assert expected in refused(capsys, path)


def test_a_zip_cut_short(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = workbook(tmp_path / "calls.xlsx", rows=100)
    path.write_bytes(cut(path.read_bytes(), 0.6))
    assert "not a readable .xlsx workbook" in refused(capsys, path)


# --- 1. DTDs: external entities and billion laughs --------------------------------------------

def with_entity(part: str, text: bytes, prolog: str, entity: str) -> bytes:
    """``text`` (a sheet or the shared strings) with ``prolog`` and one cell or string that
    refers to ``entity``."""
    if part == STRINGS:
        return prolog.encode() + text.replace(b"<t>call-0.wav</t>", f"<t>{entity}</t>".encode())
    return prolog.encode() + text.replace(b"<v>12</v>", f"<v>{entity}</v>".encode(), 1)


@pytest.mark.parametrize("part", [SHEET, STRINGS])
@pytest.mark.parametrize(("prolog", "entity"), [(XXE, "&e;"), (LAUGHS, "&l9;")])
def test_a_dtd_is_refused_and_no_entity_expanded(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, part: str, prolog: str,
        entity: str) -> None:
    path = shared_strings_workbook(tmp_path / "calls.xlsx")
    rewrite(path, {part: with_entity(part, parts_of(path)[part], prolog, entity)})
    line = refused(capsys, path)
    assert f"{part} declares a DTD" in line
    with pytest.raises(ManifestError):
        open_manifest(path)


def test_an_external_entity_in_an_attribute_far_below_the_header(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = workbook(tmp_path / "calls.xlsx", rows=3000)
    sheet = parts_of(path)[SHEET].replace(b'<c r="A2900"', b'<c r="&e;"')
    rewrite(path, {SHEET: XXE.encode() + sheet})
    assert "xl/worksheets/sheet1.xml declares a DTD" in refused(capsys, path)


def test_a_dtd_behind_a_comment_or_in_utf16_is_found(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    path = shared_strings_workbook(tmp_path / "calls.xlsx")
    strings = parts_of(path)[STRINGS]
    hidden = XXE.replace("<!DOCTYPE", "<!-- <sst> -->\n<?pi x?>\n<!DOCTYPE")
    rewrite(path, {STRINGS: with_entity(STRINGS, strings, hidden, "&e;")})
    assert f"{STRINGS} declares a DTD" in refused(capsys, path)
    utf16 = with_entity(STRINGS, strings, XXE, "&e;").decode().replace(
        '<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
    rewrite(path, {STRINGS: b"\xff\xfe" + utf16.encode("utf-16-le")})
    assert f"{STRINGS} declares a DTD" in refused(capsys, path)


def test_an_xml_part_in_an_encoding_no_spreadsheet_writes_is_refused(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An EBCDIC part would hide its DTD from a scan of ASCII bytes; the zip's XML is UTF-8
    or UTF-16 (OPC)."""
    path = shared_strings_workbook(tmp_path / "calls.xlsx")
    strings = parts_of(path)[STRINGS]
    rewrite(path, {STRINGS: b'<?xml version="1.0" encoding="cp037"?>'
                   + with_entity(STRINGS, strings, XXE, "&e;").decode().split("?>", 1)[1]
                   .encode("cp037")})
    assert "encoding 'cp037'" in refused(capsys, path)


# --- 2. zip bombs ---------------------------------------------------------------------------

def bomb(path: Path, part: str, head: bytes, filler: bytes, size: int, tail: bytes) -> Path:
    """Replace ``part`` by ``head``, ``filler`` repeated to ``size`` bytes, ``tail``, deflated
    as tightly as deflate goes (about 1000:1)."""
    parts = parts_of(path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in parts.items():
            if name != part:
                archive.writestr(name, data)
        with archive.open(part, "w") as out:
            out.write(head)
            block = filler * ((1 << 20) // len(filler))
            for _ in range(size // len(block)):
                out.write(block)
            out.write(tail)
    return path


def in_child(tmp_path: Path, *args: str) -> tuple[str, int]:
    """The command line in a child process: its one error line and its peak RSS in MiB."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONVIRZA_")}
    environ["CONVIRZA_TIMEZONE"] = "UTC"
    result = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), *args], cwd=tmp_path,
                            env=environ, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    return one_line_error(result.stderr), int(result.stdout.split()[-1]) // 1024


def test_a_shared_strings_bomb_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = shared_strings_workbook(tmp_path / "calls.xlsx")
    size = MAX_SHARED_STRINGS_BYTES + (16 << 20)
    strings = parts_of(path)[STRINGS]
    bomb(path, STRINGS, strings.replace(b"</sst>", b"<si><t>"), b"A", size, b"</t></si></sst>")
    assert path.stat().st_size < 2 << 20  # a ~300 KB file that would make 272+ MiB of XML
    line, peak = in_child(tmp_path, "validate", "calls.xlsx")
    assert f"{STRINGS} would be " in line and "over the limit of 256 MiB" in line
    assert peak < 300


@pytest.mark.parametrize("part", ["xl/styles.xml", "xl/workbook.xml"])
def test_a_bomb_in_a_part_read_whole_is_refused(tmp_path: Path, part: str) -> None:
    path = workbook(tmp_path / "calls.xlsx")
    text = parts_of(path)[part]
    root = re.search(rb"</(\w+)>\s*$", text)
    assert root is not None
    bomb(path, part, text[: root.start()] + b"<extLst>", b" ", MAX_PART_BYTES + (1 << 20),
         b"</extLst>" + text[root.start():])
    line, peak = in_child(tmp_path, "validate", "calls.xlsx")
    assert f"{part} would be " in line and "over the limit of 64 MiB" in line
    assert peak < 300


def test_a_sheet_that_inflates_a_thousandfold_is_refused(tmp_path: Path) -> None:
    """One row of a million cells: streaming a sheet does not bound a row, which openpyxl
    builds whole (today 20 MB of such a row grows the process by half a gigabyte)."""
    path = workbook(tmp_path / "calls.xlsx")
    sheet = parts_of(path)[SHEET]
    end = sheet.index(b"</sheetData>")
    bomb(path, SHEET, sheet[:end] + b'<row r="3">', b'<c t="inlineStr"><is><t>x</t></is></c>',
         20 << 20, b"</row>" + sheet[end:])
    line, peak = in_child(tmp_path, "validate", "calls.xlsx")
    assert f"{SHEET} would be " in line and f"{MAX_COMPRESSION_RATIO}:1" in line
    assert peak < 300


def test_zipfile_never_inflates_past_the_declared_size(tmp_path: Path) -> None:
    """What the caps rest on: Python's zipfile stops at a member's declared uncompressed size,
    whatever its compressed data would inflate to. Here the zip says 1000 bytes (and gives
    their CRC, so that nothing fails) for data that inflates to 50 MiB."""
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.xml", b"A" * (50 << 20))
    declared = 1000
    data = bytearray(path.read_bytes())
    for signature, crc_at, size_at in ((b"PK\x03\x04", 14, 22), (b"PK\x01\x02", 16, 24)):
        at = data.index(signature)
        struct.pack_into("<I", data, at + crc_at, zlib.crc32(b"A" * declared))
        struct.pack_into("<I", data, at + size_at, declared)  # uncompressed size
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive, archive.open("big.xml") as member:
        assert member.read() == b"A" * declared


def test_a_part_that_lies_about_its_size_is_read_only_that_far(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = shared_strings_workbook(tmp_path / "calls.xlsx")
    strings = parts_of(path)[STRINGS]
    bomb(path, STRINGS, strings.replace(b"</sst>", b"<si><t>"), b"A", 64 << 20,
         b"</t></si></sst>")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(STRINGS)
    assert info.file_size > 60 << 20
    # Its local header and its central directory entry both say 100 KiB now.
    struct.pack_into("<I", data, info.header_offset + 22, 100 << 10)
    central = data.index(b"PK\x01\x02")
    while data[central + 46:central + 46 + len(STRINGS)] != STRINGS.encode():
        central = data.index(b"PK\x01\x02", central + 1)
    struct.pack_into("<I", data, central + 24, 100 << 10)
    path.write_bytes(bytes(data))
    line = refused(capsys, path)
    assert f"{STRINGS} is damaged" in line


def test_parts_that_claim_more_compressed_bytes_than_the_file_holds(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Overlapping parts (the "overlapped" zip bomb) share compressed bytes: their claimed
    compressed sizes add up to more than the file."""
    path = workbook(tmp_path / "calls.xlsx")
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, at + 20, len(data) * 2)  # compressed size
    path.write_bytes(bytes(data))
    assert "more compressed bytes than the file holds" in refused(capsys, path)


def test_a_big_honest_workbook_passes_the_caps(tmp_path: Path) -> None:
    """Shared strings of unique ids and paths, as a big export has them: about 15:1."""
    path = shared_strings_workbook(tmp_path / "calls.xlsx", rows=40_000)
    assert len(parts_of(path)[STRINGS]) > 1 << 20  # so that its ratio is looked at
    manifest = open_manifest(path)
    try:
        assert sum(len(chunk) for chunk in manifest.chunks()) == 40_000
    finally:
        manifest.close()
