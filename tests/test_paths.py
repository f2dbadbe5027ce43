"""Recording paths written on another machine: --recordings-root, Windows backslashes and
drives, and --path-map; the rules alone, then a run over the sandbox that finds every file."""

from __future__ import annotations

import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from importer.cli.commands import main
from importer.errors import RowError, UsageError
from importer.manifest.call_dates import RowContext
from importer.manifest.identity import identify
from importer.manifest.paths import PathRules, is_windows_path
from importer.manifest.records import normalize_row

from .conftest import SAMPLES, SandboxThread
from .helpers import good_row, status_of, write_manifest

BASE = Path("/data/manifests")


@pytest.mark.parametrize(("text", "windows"), [
    ("2024-03\\REC-100041.wav", True), ("C:\\exports\\a.wav", True), ("c:/exports/a.wav", True),
    ("\\\\nas\\calls\\a.wav", True), ("a/b.wav", False), ("/srv/a.wav", False),
    ("odd/na\\me.wav", False), ("plain.wav", False),
])
def test_a_windows_path_is_told_by_its_drive_share_or_only_backslashes(
        text: str, windows: bool) -> None:
    assert is_windows_path(text) is windows


def test_relative_paths_start_at_the_recordings_root() -> None:
    rules = PathRules.of(Path("/mnt/calls"), {})
    assert rules.local("2024-03\\REC-1.wav", BASE) == "/mnt/calls/2024-03/REC-1.wav"
    assert rules.local("2024-03/REC-1.wav", BASE) == "/mnt/calls/2024-03/REC-1.wav"
    assert rules.local("/abs/x.wav", BASE) == "/abs/x.wav"
    assert PathRules().local("sub\\x.wav", BASE) == "/data/manifests/sub/x.wav"


def test_a_prefix_map_moves_absolute_paths_the_longest_first_windows_without_case() -> None:
    rules = PathRules.of(None, {"C:\\exports": "/mnt/exports",
                                "C:\\exports\\2024": "/mnt/archive",
                                "\\\\nas\\calls": "/mnt/nas", "/old/root": "/new/root"})
    assert rules.local("c:\\EXPORTS\\a\\b.wav", BASE) == "/mnt/exports/a/b.wav"
    assert rules.local("C:\\exports\\2024\\b.wav", BASE) == "/mnt/archive/b.wav"
    assert rules.local("\\\\nas\\calls\\x.wav", BASE) == "/mnt/nas/x.wav"
    assert rules.local("/old/root/x.wav", BASE) == "/new/root/x.wav"
    assert rules.local("/old/rootless/x.wav", BASE) == "/old/rootless/x.wav"


def test_an_unmapped_windows_path_is_one_clear_problem_naming_the_option() -> None:
    ctx = RowContext(base_dir=BASE, zone=ZoneInfo("UTC"))
    with pytest.raises(RowError) as caught:
        normalize_row(good_row(recording_file="D:\\rec\\a.wav"), ctx)
    text = str(caught.value)
    assert "recording_file" in text and "--path-map 'D:\\rec=/local/folder'" in text
    # the row keeps a key all the same, so that it is recorded invalid, not lost
    assert identify({"recording_file": "D:\\rec\\a.wav"}, BASE, True).key


def test_a_relative_prefix_to_map_is_refused() -> None:
    with pytest.raises(UsageError, match="absolute"):
        PathRules.of(None, {"exports": "/mnt"})


def test_a_manifest_from_windows_runs_with_a_root_and_a_map(
        tmp_path: Path, sandbox: SandboxThread, token_env: str) -> None:
    samples = SAMPLES
    root = tmp_path / "recordings"
    (root / "2024-03").mkdir(parents=True)
    (tmp_path / "mnt" / "exports").mkdir(parents=True)
    shutil.copy(samples / "call-0001-pcm8k.wav", root / "2024-03" / "REC-1.wav")
    shutil.copy(samples / "call-0005-cbr.mp3", tmp_path / "mnt" / "exports" / "REC-2.mp3")
    elsewhere = tmp_path / "manifests"
    elsewhere.mkdir()
    manifest = write_manifest(elsewhere / "from-windows.csv", [
        good_row(external_id="W-1", recording_file="2024-03\\REC-1.wav"),
        good_row(external_id="W-2", recording_file="C:\\Exports\\REC-2.mp3")])
    ledger = tmp_path / "l.sqlite"

    code = main(["run", str(manifest), "--ledger", str(ledger), "--recordings-root", str(root),
                 "--path-map", f"c:\\exports={tmp_path / 'mnt' / 'exports'}"])

    assert code == 0
    assert set(status_of(ledger).values()) == {"succeeded"}
    assert sorted(c.file_name for c in sandbox.store.calls()) == ["REC-1.wav", "REC-2.mp3"]


def test_errors_out_keeps_recording_paths_that_do_not_start_beside_the_manifest(
        tmp_path: Path) -> None:
    """--errors-out rewrites a relative path for the folder it is written in; not a path under
    --recordings-root, a Windows path, nor an object's URL, which are where they are."""
    root = tmp_path / "recordings"
    root.mkdir()
    manifest = write_manifest(tmp_path / "m.csv", [
        good_row(external_id="E-1", recording_file="2024\\missing.wav"),
        good_row(external_id="E-2", recording_file="s3://bucket/calls/a.wav", caller_id="x"),
        good_row(external_id="E-3", recording_file="sub/missing.wav")])
    (tmp_path / "out").mkdir()
    errors = tmp_path / "out" / "errors.csv"

    assert main(["validate", str(manifest), "--recordings-root", str(root),
                 "--errors-out", str(errors), "--timezone", "UTC"]) == 1

    text = errors.read_text(encoding="utf-8-sig")
    assert "2024\\missing.wav" in text and "s3://bucket/calls/a.wav" in text
    assert ",sub/missing.wav\n" in text  # as written, not made relative to out/
