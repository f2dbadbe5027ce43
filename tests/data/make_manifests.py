"""Writes the messy manifests the tests read, as spreadsheets and exports really make them.

Run from the repository root (``.venv/bin/python tests/data/make_manifests.py``); the outputs
are committed, so the tests need neither this script nor a spreadsheet program. The workbooks
are made with openpyxl, the same library that reads them, but hold what Excel stores: dates as
date cells, numbers as floats, TRUE/FALSE as booleans, a title and a note above the header.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from openpyxl import Workbook

HERE = Path(__file__).resolve().parent
HEADER = ["External ID", "Recording File", "Call Date", "Group ID", "Caller ID", "Ring To",
          "Zip Code", "Is Outbound", "Disposition"]


def workbook() -> None:
    """Two sheets; the first has a title, a note and a blank row above its header, Excel
    date cells, floats where ids and phones were, a boolean cell, a blank row in the data, an
    Excel serial typed as a number, and an empty trailing column."""
    book = Workbook()
    calls = book.active
    assert calls is not None
    calls.title = "March calls"
    calls.append(["Call log export - ACME PBX"])             # row 1: a title
    calls.append(["Generated 2025-04-01; do not edit"])      # row 2: a note
    calls.append([])                                          # row 3: blank
    calls.append([*HEADER, None])                             # row 4: the header
    calls.append(["PBX-1", "a.wav", datetime(2025, 3, 4, 9, 15, 22), 12.0, 6175550142.0,
                  6175550199, 2134, True, "answered"])        # row 5
    calls.append([])                                          # row 6: blank
    calls.append([1234.0, "b.wav", 45720.5, 12, "+1 (617) 555-0143", 6175550199,
                  "02139", False, "busy"])                    # row 7: serial as a number
    calls.append(["PBX-3", "c.wav", "03/06/2025 7:12 PM", 14, 5.551234567e9, None,
                  1608.0, "yes", "NO ANSWER"])                # row 8
    calls.append(["PBX-4", "d.wav", datetime(2031, 1, 1), 14, "n/a", None, None, None,
                  None])                                      # row 9: future date, bad phone
    for cell in ("C5", "C9"):
        calls[cell].number_format = "yyyy-mm-dd hh:mm:ss"
    other = book.create_sheet("April calls")
    other.append(HEADER)
    other.append(["PBX-10", "e.wav", datetime(2025, 4, 2, 14, 3), 12, 6175550150,
                  None, None, None, None])
    book.save(HERE / "calls.xlsx")


def csv_files() -> None:
    """CSV as European Excel, old Windows tools and PBX exports write them."""
    # Excel "CSV UTF-8" on a European locale: BOM, semicolons, decimal commas, CRLF, a blank
    # line, trailing empty columns.
    (HERE / "bom_semicolon.csv").write_bytes(
        "\ufeffRecording File;Call Date;Group ID;Caller ID;Caller Name;Notes;;\r\n"
        "a.wav;04/03/2025 09:15;12;(617) 555-0142;Zoë;1,5 min;;\r\n"
        "\r\n"
        "b.wav;05/03/2025 14:00;12;+1 617-555-0143;José;;;\r\n".encode())
    # Excel "CSV" on a Western-European Windows: cp1252, no BOM.
    (HERE / "cp1252.csv").write_bytes(
        "recording_file,call_date,group_id,caller_id,caller_name,company_name\r\n"
        "a.wav,2025-03-04 09:15,12,6175550142,Renée Côté,Caf\u00e9 \u201cBleu\u201d\r\n".encode(
            "cp1252"))
    # Excel "Unicode Text": UTF-16 with BOM, tabs.
    (HERE / "unicode_text.txt").write_bytes(
        "recording_file\tcall_date\tgroup_id\tcaller_id\tcaller_name\r\n"
        "a.wav\t2025-03-04 09:15\t12\t6175550142\tŁukasz\r\n".encode("utf-16"))
    # A PBX export: pipes, a title line, and a 12.0 where Excel had been.
    (HERE / "pipes.txt").write_text(
        "ACME PBX call export\n"
        "recording_url|call_date|group_id|caller_id|external_id\n"
        "https://pbx.example.com/1.wav|2025-03-04T09:15:22Z|12.0|6175550142|7.0\n", "utf-8")


if __name__ == "__main__":
    workbook()
    csv_files()
