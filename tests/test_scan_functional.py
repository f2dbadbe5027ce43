"""scan end to end: a PBX's folder tree of real recordings (and an S3 prefix in moto's server)
turned into a manifest by a template, run into the sandbox, and scanned again night after
night. Nothing of ours is mocked."""

from __future__ import annotations

import csv
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from importer.cli.commands import main

from .conftest import SAMPLES, SandboxThread, sha256_of

NAMES = {  # the sample each PBX name is a copy of
    "2024/03/01/in-6175550142-201-20240301-141503-1709302503.1.wav": "call-0001-pcm8k.wav",
    "2024/03/01/out-6175550143-202-20240301-151000-1709306200.2.wav": "call-0002-ulaw8k.wav",
    "2024/03/02/in-6175550144-201-20240302-091500-1709370900.3.mp3": "call-0005-cbr.mp3",
}


def pbx(root: Path, names: dict[str, str], age: float = 0) -> None:
    for name, sample in names.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLES / sample, path)
        if age:
            os.utime(path, (time.time() - age, time.time() - age))


def rows_of(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_pbx_folder_becomes_a_manifest_and_odd_names_are_listed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "monitor"
    pbx(root, NAMES)
    pbx(root, {"2024/03/01/voicemail-greeting.wav": "call-0003-alaw8k.wav",
               "2024/03/01/in-6175550142-201-20240301-141503-9.gsm": "call-0003-alaw8k.wav"})
    out = tmp_path / "calls.csv"

    code = main(["scan", str(root), "--template", "asterisk", "--set", "group_id=12",
                 "-o", str(out)])

    err = capsys.readouterr().err
    assert code == 1  # two names did not fit
    rows = rows_of(out)
    assert [r["external_id"] for r in rows] == ["1709302503.1", "1709306200.2", "1709370900.3"]
    assert rows[0] == {"recording_file": str(root / next(iter(NAMES))), "is_outbound": "false",
                       "caller_id": "6175550142", "call_date": "2024-03-01T14:15:03",
                       "external_id": "1709302503.1", "group_id": "12"}
    assert rows[1]["is_outbound"] == "true"
    unmatched = (tmp_path / "calls.csv.unmatched.txt").read_text().split()
    assert sorted(Path(u).name for u in unmatched) == [
        "in-6175550142-201-20240301-141503-9.gsm", "voicemail-greeting.wav"]
    assert "does not fit the template: 2024/03/01/voicemail-greeting.wav" in err


def test_run_source_template_in_one_step_then_nightly_with_since_last(
        tmp_path: Path, sandbox: SandboxThread, token_env: str) -> None:
    root = tmp_path / "monitor"
    pbx(root, NAMES, age=3 * 86400)
    ledger = tmp_path / "pbx.sqlite"
    night = ["run", str(root), "--template", "asterisk", "--set", "group_id=12",
             "--since", "last", "--ledger", str(ledger)]

    assert main(night) == 0
    assert sorted(c.file_sha256 for c in sandbox.store.calls()) == \
        sorted(sha256_of(SAMPLES / s) for s in NAMES.values())
    assert (tmp_path / "pbx.sqlite.scan.csv").is_file()

    new = {"2024/03/05/in-6175550199-203-20240305-100000-1709632800.9.wav":
           "call-0004-stereo16k.wav"}
    pbx(root, new)
    assert main(night) == 0
    scanned = rows_of(tmp_path / "pbx.sqlite.scan.csv")
    # only what is new, and the newest of the night before (listed again on purpose: the
    # ledger passes over it, so a file written in the same second as the mark is not lost)
    assert [r["external_id"] for r in scanned] == ["1709370900.3", "1709632800.9"]
    assert len(sandbox.store.calls()) == 4

    assert main(night) == 0  # the newest file is listed again on purpose: imported once
    assert len(sandbox.store.calls()) == 4


def test_an_s3_prefix_is_scanned_page_by_page_and_a_throttled_listing_is_one_line(
        tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    client = s3.client()
    client.create_bucket(Bucket="connect-recordings")
    contact = "4e6a7b48-1b2c-4d5e-8f90-123456789abc"
    client.put_object(Bucket="connect-recordings",
                      Key=f"inst/CallRecordings/2024/03/01/{contact}_20240301T14:15_UTC.wav",
                      Body=(SAMPLES / "call-0001-pcm8k.wav").read_bytes())
    out = tmp_path / "connect.csv"

    assert main(["scan", "s3://connect-recordings/inst/CallRecordings/", "--template",
                 "connect", "--set", "caller_id=6175550100", "-o", str(out)]) == 0
    [row] = rows_of(out)
    assert row["recording_file"] == ("s3://connect-recordings/inst/CallRecordings/2024/03/01/"
                                     f"{contact}_20240301T14:15_UTC.wav")
    assert row["call_date"] == "2024-03-01T14:15:00+00:00" and row["external_id"] == contact

    s3.faults.throttled.add("/connect-recordings")
    capsys.readouterr()
    assert main(["scan", "s3://connect-recordings/inst/", "--template", "connect",
                 "-o", str(tmp_path / "again.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot list it: the store kept throttling (SlowDown)" in err[0]
    assert not (tmp_path / "again.csv").exists()
