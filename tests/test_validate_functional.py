"""``validate`` and ``run`` over messy manifests end to end: duplicates by recording, the
errors CSV fed back, a mapping file, Excel sheets, and the reader in a second process."""

from __future__ import annotations

import csv
import shutil
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from importer.cli.commands import main
from importer.ledger.states import Status
from importer.ledger.store import Ledger
from importer.manifest.call_dates import RowContext
from importer.manifest.opening import open_manifest
from importer.run.preparing import RowPreparer
from importer.run.reader import open_reader

from .conftest import SandboxThread
from .helpers import good_row, status_of, write_manifest

DATA = Path(__file__).resolve().parent / "data"


def test_same_file_or_url_twice_is_a_duplicate_also_on_rerun(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="X-1"),
        good_row(external_id="X-2", recording_file="../sample_data/./call-0001-pcm8k.wav"),
        good_row(external_id="X-3", recording_file="",
                 recording_url="https://pbx.test/1.wav"),
        good_row(external_id="X-4", recording_file="",
                 recording_url="https://pbx.test/1.wav"),
    ])
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1

    assert status_of(ledger) == {"ext:X-1": "succeeded", "ext:X-2": "invalid",
                                "ext:X-3": "succeeded", "ext:X-4": "invalid"}
    opened = Ledger.open(ledger)
    errors = {r.row_number: r.error or "" for r in opened.rows([Status.INVALID])}
    opened.close()
    assert "duplicate of row 2: the same recording" in errors[3]
    assert "duplicate of row 4" in errors[5]
    uploads = sandbox.store.count()
    # Again: the first rows are done, and their recordings still count as listed.
    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1
    assert sandbox.store.count() == uploads == 2


def test_validate_summary_and_errors_out_fed_back(tmp_path: Path, workdir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(),
        good_row(external_id="X-2", caller_id="call me", call_date="soon",
                 recording_file="../sample_data/call-0005-cbr.mp3"),
        good_row(external_id="X-3", recording_file="../sample_data/none.wav"),
        good_row(external_id="X-4", caller_id="=1+2", recording_file="../sample_data/./"
                 "call-0001-pcm8k.wav"),
        good_row(external_id="X-5", recording_file="", recording_url="https://pbx.test/1.wav"),
        good_row(external_id="X-6", recording_file="", recording_url="https://pbx.test/1.wav"),
    ])
    out = tmp_path / "elsewhere" / "errors.csv"
    out.parent.mkdir()

    code = main(["validate", str(manifest), "--errors-out", str(out),
                 "--timezone", "America/New_York"])

    assert code == 1
    printed = capsys.readouterr().out
    assert "6 rows" in printed and "2 valid" in printed and "4 invalid" in printed
    assert "caller_id: a phone number" in printed and "duplicate of an earlier row" in printed
    with out.open(encoding="utf-8-sig", newline="") as handle:
        written = {int(r["row"]): r for r in csv.DictReader(handle)}
    assert sorted(written) == [3, 4, 5, 7]
    assert written[7]["recording_url"] == "https://pbx.test/1.wav"  # cells of a duplicate too
    assert "duplicate of row 6" in written[7]["errors"]
    assert "caller_id" in written[3]["errors"] and "'call me'" in written[3]["errors"]
    assert "not found" in written[4]["errors"]
    assert written[5]["caller_id"] == "'=1+2"  # safe to open in Excel
    # Paths still name the same files from the errors file's folder.
    assert (out.parent / written[3]["recording_file"]).resolve() == \
        (workdir / "sample_data" / "call-0005-cbr.mp3").resolve()

    # Fix the sheet as a user would, and feed it back.
    written[3].update(caller_id="(617) 555-0142", call_date="2025-03-04 09:15")
    written[4].update(recording_file=written[3]["recording_file"].replace("call-0005-cbr.mp3",
                                                                          "call-0006-vbr.mp3"))
    written[5].update(caller_id="'+1 617-555-0142", external_id="X-1")
    del written[7]
    with out.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(written[3]))
        writer.writeheader()
        writer.writerows(written.values())
    assert main(["validate", str(out), "--timezone", "America/New_York"]) == 0


def test_mapping_file_and_flags(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = workdir / "manifests" / "pbx.csv"
    manifest.write_text("File;Start;From;Account\n"
                        "../sample_data/call-0001-pcm8k.wav;04/03/2025 09:15;6175550142;\n")
    mapping = workdir / "mapping.toml"
    mapping.write_text('[columns]\nFile = "recording_file"\nStart = "call_date"\n'
                       'From = "caller_id"\n"Account" = "group_id"\n\n[defaults]\ngroup_id = 7\n')

    assert main(["validate", str(manifest), "--columns", str(mapping), "--dayfirst",
                 "--timezone", "UTC"]) == 0
    assert "1 valid" in capsys.readouterr().out
    mapping.write_text("[colums]\n")
    assert main(["validate", str(manifest), "--columns", str(mapping)]) == 2
    assert "unknown section" in capsys.readouterr().err


def test_excel_sheet_through_the_command_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    book = tmp_path / "calls.xlsx"
    shutil.copy(DATA / "calls.xlsx", book)
    for name in "abcde":
        shutil.copy(next((Path(__file__).parent.parent / "sample_data").glob("*.wav")),
                    tmp_path / f"{name}.wav")

    assert main(["validate", str(book), "--timezone", "America/New_York"]) == 1
    out = capsys.readouterr()
    assert "4 rows" in out.out and "3 valid" in out.out
    assert "row 9" in out.err  # the sheet's own row number
    assert main(["validate", str(book), "--sheet", "April calls"]) == 0
    assert main(["validate", str(book), "--sheet", "June"]) == 2
    assert "no sheet named 'June'" in capsys.readouterr().err


def test_the_reader_process_gives_what_the_thread_gives(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.csv", [
        good_row(external_id=f"X-{i}", recording_file=f"{i}.wav",
                 call_date="2025-03-04 09:15" if i % 2 else "2025-03-04T09:15:00Z",
                 caller_id="bad" if i % 7 == 0 else "(617) 555-0142")
        for i in range(2500)])
    ctx = RowContext(base_dir=tmp_path, zone=ZoneInfo("America/New_York"),
                     now=datetime(2026, 1, 1, tzinfo=UTC))
    preparer = RowPreparer("m.csv", str(manifest), ctx, True, keep_fields=True,
                           keep_cells=True)
    results = []
    naive: list[int] = []
    for min_bytes in (0, 10**12):  # in a process, then in this thread
        opened = open_manifest(manifest)
        reader = open_reader(opened, preparer, lambda: naive.append(1),
                             process_min_bytes=min_bytes)
        chunks = []
        while (chunk := reader.next_chunk()) is not None:
            chunks.extend(chunk)
        reader.close()
        opened.close()
        results.append(chunks)
    in_process, in_thread = results
    assert len(in_process) == 2500 and in_process == in_thread
    assert naive  # the child says when it read a date without a zone


def test_row_problems_are_logged_up_to_a_cap_then_pointed_to(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A systematic error (every date wrong) names the first rows and says where the rest
    are, instead of flooding the terminal; the summary still counts every row."""
    rows = [good_row(external_id=f"D-{i}", call_date="soon",
                     recording_file="", recording_url=f"https://pbx.test/{i}.wav")
            for i in range(130)]
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows)

    assert main(["validate", str(manifest)]) == 1

    captured = capsys.readouterr()
    logged = [line for line in captured.err.splitlines() if "call_date" in line]
    assert len(logged) == 100 and "row 2:" in logged[0] and "row 101:" in logged[-1]
    assert "more rows have problems" in captured.err and "--errors-out" in captured.err
    assert "130 rows" in captured.out and "130 invalid" in captured.out

    assert main(["validate", str(manifest), "--verbose"]) == 1
    assert sum("call_date" in line for line in capsys.readouterr().err.splitlines()) == 130


def test_a_local_time_the_clocks_skip_is_an_invalid_row_until_a_side_is_chosen(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """03/10/2024 2:30 AM never happened in New York (the clocks went from 2:00 to 3:00);
    sent with a guessed offset, the call would be filed an hour off."""
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(call_date="03/10/2024 2:30 AM")])
    ledger = workdir / "l.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1
    assert sandbox.store.count() == 0
    err = capsys.readouterr().err
    assert "row 2: call_date: a local time that happened once in America/New_York (this one " \
           "falls in the hour the clocks skip for daylight saving time)" in err
    assert status_of(ledger) == {"ext:X-1": "invalid"}

    assert main(["run", str(manifest), "--ledger", str(ledger), "--dst-times", "after"]) == 0
    [call] = sandbox.store.calls()
    assert call.fields["call_date"] == "2024-03-10T02:30:00-04:00"
