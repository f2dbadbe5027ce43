"""The rough edges a new user hit (issue 13, item 6), each held by a test: progress of a
resumed run, `report --status` alone, `--verbose`, wide tables, `retry` of invalid rows, a
lookup of nothing, a `--map` of a column that is not there, `run --errors-out`, short flags
and examples in `--help`, and the README's by-hand commands reading dates alike."""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

import pytest

from importer import run_import
from importer.cli.commands import main
from importer.cli.parser import build_parser

from .conftest import SandboxThread
from .helpers import good_row, many_rows, write_manifest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def mixed_ledger(workdir: Path) -> tuple[Path, Path]:
    """A run of three rows: one succeeded, one invalid (a bad phone), one failed (the API
    refuses campaign 777)."""
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="OK-1"),
        good_row(external_id="BAD-1", caller_id="call me",
                 recording_file="../sample_data/call-0002-ulaw8k.wav"),
        good_row(external_id="NO-1", campaign_id="777",
                 recording_file="../sample_data/call-0003-alaw8k.wav")])
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1
    return manifest, ledger


def test_progress_of_a_resumed_run_counts_the_rows_already_done(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 30))
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger), "--max-uploads", "20",
                 "--rate", "500"]) == 4
    capsys.readouterr()

    assert main(["run", str(manifest), "--ledger", str(ledger), "--rate", "500",
                 "--concurrency", "1", "--progress-interval", "0.001"]) == 0

    done = [int(n) for n in re.findall(r"progress: (\d+)/30 rows", capsys.readouterr().err)]
    assert done and min(done) >= 20, done  # the 20 done before count from the first line


def test_report_status_alone_lists_those_rows(workdir: Path, sandbox: SandboxThread,
                                              token_env: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _, ledger = mixed_ledger(workdir)
    capsys.readouterr()

    assert main(["report", str(ledger), "--status", "failed", "--status", "invalid"]) == 0

    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["row", "status", "key"]
    assert "ext:BAD-1" in out and "ext:NO-1" in out and "ext:OK-1" not in out


def test_verbose_logs_every_successful_row(workdir: Path, sandbox: SandboxThread,
                                           token_env: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [good_row(external_id="V-1")])

    assert main(["run", str(manifest), "-v"]) == 0
    assert re.search(r"DEBUG row 2: ext:V-1: uploaded \(84,036 bytes", capsys.readouterr().err)
    assert main(["run", str(manifest), "--ledger", str(workdir / "other.sqlite")]) == 0
    assert "uploaded" not in capsys.readouterr().err  # without --verbose, problems only


def test_report_table_wraps_long_cells_to_the_terminal(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, ledger = mixed_ledger(workdir)
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()

    assert main(["report", str(ledger), "--format", "table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and max(map(len, lines)) <= 80
    header = lines[0]
    source = "".join(line[header.index("source"):header.index("try")].strip()
                     for line in lines[1:])
    error = " ".join(line[header.index("error"):].strip() for line in lines[1:])
    assert "../sample_data/call-0002-ulaw8k.wav" in source  # whole, over several lines
    assert "caller_id: a phone number of digits, such as 5551234567" in error
    assert "…" not in "".join(lines)

    assert main(["report", str(ledger), "--format", "table", "--wide"]) == 0
    wide = capsys.readouterr().out.splitlines()
    assert len(wide) == 4  # the header and one line per row, each whole
    assert any("../sample_data/call-0002-ulaw8k.wav" in line and
               "a phone number of digits, such as 5551234567" in line for line in wide)


def test_retry_of_a_ledger_whose_only_problems_are_invalid_rows_says_what_to_do(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="OK-1"),
        good_row(external_id="BAD-1", caller_id="call me",
                 recording_file="../sample_data/call-0002-ulaw8k.wav")])
    ledger = workdir / "ledger.sqlite"
    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1
    capsys.readouterr()

    assert main(["retry", str(ledger)]) == 1

    out = capsys.readouterr().out
    assert "0 rows in" not in out
    assert "1 row is invalid" in out
    assert "fix it in the manifest and run it again with `convirza-import run" in out
    assert f"report {ledger} --status invalid" in out


def test_lookup_of_an_object_that_does_not_exist_exits_1(
        sandbox: SandboxThread, token_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lookup", "group", "999"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "convirza-import: error: no group 999 (the API knows no such " \
                           "group, or this login may not see it)\n"
    assert main(["lookup", "group", "12"]) == 0


def test_a_map_of_a_column_the_manifest_does_not_have_is_refused(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        {"From": "6175550142", "recording_file": "../sample_data/call-0001-pcm8k.wav",
         "call_date": "2025-03-04T09:15:22-05:00", "group_id": "12"}])

    for command in ("run", "validate"):
        assert main([command, str(manifest), "--map", "Frm=caller_id"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "--map names a column this manifest does not have: 'Frm' (did you mean " \
               "'From'?); its columns: From, call_date, group_id, recording_file" in err
    assert sandbox.store.count() == 0
    assert main(["run", str(manifest), "--map", "From=caller_id"]) == 0


def test_run_writes_errors_out(workdir: Path, sandbox: SandboxThread, token_env: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="OK-1"),
        good_row(external_id="BAD-1", caller_id="call me",
                 recording_file="../sample_data/call-0002-ulaw8k.wav")])
    errors = workdir / "errors.csv"

    assert main(["run", str(manifest), "--errors-out", str(errors)]) == 1

    assert "1 invalid rows written to" in capsys.readouterr().out
    with errors.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["row"], r["external_id"]) for r in rows] == [("3", "BAD-1")]
    assert "caller_id" in rows[0]["errors"]
    assert sandbox.store.count() == 1
    again = workdir / "again.csv"  # the Python API's run takes it too
    result = run_import(manifest, errors_out=again, ledger=workdir / "api.sqlite")
    assert result.exit_code == 1 and again.read_text(encoding="utf-8-sig").count("BAD-1") == 1


def test_short_flags_for_the_common_options() -> None:
    args = build_parser().parse_args(["run", "m.csv", "-v", "-q", "-n", "-c", "8", "-r", "2"])
    assert (args.verbose, args.quiet, args.dry_run, args.concurrency, args.rate) == \
        (True, True, True, "8", "2")
    args = build_parser().parse_args(["retry", "l.sqlite", "-c", "2", "-r", "1", "-q"])
    assert (args.concurrency, args.rate, args.quiet) == ("2", "1", True)


def test_every_command_ends_its_help_with_examples() -> None:
    for name, sub in subcommands().items():
        text = sub.format_help()
        tail = text.rsplit("examples:", 1)
        assert len(tail) == 2, name
        examples = [line for line in tail[1].splitlines()
                    if line.strip().startswith(f"convirza-import {name}")]
        assert 2 <= len(examples) <= 4, (name, examples)
    assert "-n, --dry-run" in subcommands()["run"].format_help()


def test_the_readme_validates_and_runs_with_the_same_timezone() -> None:
    commands = [line for line in README.splitlines()
                if re.search(r"convirza-import (validate|run) manifests/sample\.csv", line)]
    assert len(commands) >= 2
    zones = {m.group(1) if (m := re.search(r"--timezone (\S+)", line)) else None
             for line in commands}
    assert zones == {"America/New_York"}, commands
