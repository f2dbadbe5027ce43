"""The sandbox's --fetch-urls: it fetches each recording_url (loopback only), refuses what is
not audio, and records the bytes it got, so that presigned and fetched URLs are tested end to
end: here, presigned s3:// objects and a vendor's page, imported by the command line."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from importer.cli.commands import main
from importer.sandbox import SandboxConfig

from .conftest import SAMPLES, TOKEN, SandboxThread, sha256_of
from .helpers import Vendor, good_row, status_of, write_manifest

_BUCKETS = itertools.count()


@pytest.fixture
def fetching_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxThread]:
    with SandboxThread(SandboxConfig(static_tokens=frozenset({TOKEN}), fetch_urls=True)) as s:
        for name in ("CONVIRZA_USERNAME", "CONVIRZA_PASSWORD", "CONVIRZA_LEDGER"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("CONVIRZA_API_URL", s.url)
        monkeypatch.setenv("CONVIRZA_TOKEN", TOKEN)
        monkeypatch.setenv("CONVIRZA_TIMEZONE", "America/New_York")
        yield s


def test_presigned_objects_arrive_as_the_bytes_in_the_bucket(
        tmp_path: Path, s3: Any, fetching_sandbox: SandboxThread) -> None:
    bucket = f"fetched-{next(_BUCKETS)}"
    names = ("call-0001-pcm8k.wav", "call-0004-stereo16k.wav", "call-0006-vbr.mp3")
    client = s3.client()
    client.create_bucket(Bucket=bucket)
    for name in names:
        client.put_object(Bucket=bucket, Key=name, Body=(SAMPLES / name).read_bytes())
    manifest = write_manifest(tmp_path / "m.csv", [
        good_row(external_id=f"P-{i}", recording_file=f"s3://{bucket}/{n}")
        for i, n in enumerate(names)])
    ledger = tmp_path / "l.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger), "--presign"]) == 0

    got = {c.file_name: c.file_sha256 for c in fetching_sandbox.store.calls()}
    assert got == {n: sha256_of(SAMPLES / n) for n in names}
    assert set(status_of(ledger).values()) == {"succeeded"}


def test_what_is_not_audio_is_refused_and_only_loopback_is_fetched(
        tmp_path: Path, fetching_sandbox: SandboxThread) -> None:
    with Vendor() as vendor:
        manifest = write_manifest(tmp_path / "m.csv", [
            good_row(external_id="V-1", recording_file="", recording_url=f"{vendor.url}/page"),
            good_row(external_id="V-2", recording_file="",
                     recording_url="https://recordings.example.com/a.wav"),
            good_row(external_id="V-3", recording_file="",
                     recording_url=f"{vendor.url}/cdn/call-0002-ulaw8k.wav")])
        ledger = tmp_path / "l.sqlite"
        assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1

    states = status_of(ledger)
    assert states["ext:V-3"] == "succeeded" and states["ext:V-1"] == "failed"
    assert states["ext:V-2"] == "failed"
    [call] = fetching_sandbox.store.calls()
    assert call.file_sha256 == sha256_of(SAMPLES / "call-0002-ulaw8k.wav")


def test_the_sandbox_imports_nothing_of_the_importer() -> None:
    """Held by the layers contract too (pyproject.toml); said here where it matters most."""
    import ast
    source = (Path(__file__).resolve().parent.parent / "importer" / "sandbox" / "fetching.py")
    tree = ast.parse(source.read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(m.startswith("importer") for m in modules if m)
    assert all(n.level == 1 for n in ast.walk(tree)
               if isinstance(n, ast.ImportFrom) and n.module and n.level)
