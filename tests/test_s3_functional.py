"""s3:// recordings end to end: real wav and mp3 objects in moto's S3 server on loopback
(behind a proxy that counts requests and injects a store's faults), imported into the sandbox
by the command line. Nothing of ours is mocked."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from importer.cli.commands import main

from .conftest import SAMPLES, SandboxThread, sha256_of
from .helpers import good_row, status_of, write_manifest

_BUCKETS = itertools.count()
#: A small wav (sent from memory), a big one (streamed: over 256 KiB), an mp3.
OBJECTS = ("call-0001-pcm8k.wav", "call-0004-stereo16k.wav", "call-0005-cbr.mp3")


def bucket_with(s3: Any, names: tuple[str, ...] = OBJECTS, prefix: str = "calls/") -> str:
    bucket = f"recordings-{next(_BUCKETS)}"
    client = s3.client()
    client.create_bucket(Bucket=bucket)
    for name in names:
        client.put_object(Bucket=bucket, Key=prefix + name, Body=(SAMPLES / name).read_bytes())
    s3.reset()  # count only what the importer asks
    return bucket


def manifest_of(tmp_path: Path, urls: list[str]) -> Path:
    return write_manifest(tmp_path / "m.csv", [
        good_row(external_id=f"S-{i}", recording_file=url) for i, url in enumerate(urls)])


def test_objects_are_checked_by_ranged_reads_and_streamed_as_they_are(
        tmp_path: Path, s3: Any, sandbox: SandboxThread, token_env: str) -> None:
    bucket = bucket_with(s3)
    manifest = manifest_of(tmp_path, [f"s3://{bucket}/calls/{n}" for n in OBJECTS])
    ledger = tmp_path / "l.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 0

    got = {c.file_name: c.file_sha256 for c in sandbox.store.calls()}
    assert got == {n: sha256_of(SAMPLES / n) for n in OBJECTS}
    # one request per small object, as a plain download; the big wav (340 KB) was probed from
    # its first 256 KiB (the whole of an object small enough to send from memory), then one
    # GET (If-Match) streamed it into the upload
    assert len(s3.seen.reads("call-0001")) == 1 and len(s3.seen.requests) == 4
    big = s3.seen.reads("call-0004")
    assert [r[2] for r in big] == ["bytes=0-262143", ""]
    assert set(status_of(ledger).values()) == {"succeeded"}

    s3.reset()
    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 0
    assert s3.seen.requests == []  # done is known from the ledger: nothing read again
    assert len(sandbox.store.calls()) == len(OBJECTS)


def test_validate_reads_heads_and_an_mp3_tail_not_whole_objects(
        tmp_path: Path, s3: Any, token_env: str) -> None:
    big_mp3 = tmp_path / "long.mp3"
    frames = (SAMPLES / "call-0005-cbr.mp3").read_bytes()
    big_mp3.write_bytes(frames * 8)  # ~160 KB of CBR frames: over the head window
    bucket = bucket_with(s3, ("call-0004-stereo16k.wav",))
    s3.client().put_object(Bucket=bucket, Key="long.mp3", Body=big_mp3.read_bytes())
    s3.reset()
    manifest = manifest_of(tmp_path, [f"s3://{bucket}/calls/call-0004-stereo16k.wav",
                                      f"s3://{bucket}/long.mp3"])

    assert main(["validate", str(manifest)]) == 0

    assert s3.seen.bytes_served < 64 * 1024 * 2 + 8 * 1024 + 1
    ranges = sorted(r[2] for r in s3.seen.reads())
    assert any(r.startswith("bytes=65536-") or r.endswith(f"-{big_mp3.stat().st_size - 1}")
               for r in ranges)


def test_store_faults_are_one_reason_per_row_and_nothing_is_lost(
        tmp_path: Path, s3: Any, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    bucket = bucket_with(s3, ("call-0001-pcm8k.wav", "call-0002-ulaw8k.wav",
                              "call-0003-alaw8k.wav"))
    s3.faults.denied.add("call-0002")
    s3.faults.throttled.add("call-0003")
    manifest = manifest_of(tmp_path, [
        f"s3://{bucket}/calls/call-0001-pcm8k.wav", f"s3://{bucket}/calls/call-0002-ulaw8k.wav",
        f"s3://{bucket}/calls/call-0003-alaw8k.wav", f"s3://{bucket}/calls/missing.wav"])
    ledger = tmp_path / "l.sqlite"

    code = main(["run", str(manifest), "--ledger", str(ledger)])

    out = capsys.readouterr()
    assert code == 1
    states = status_of(ledger)
    assert states["ext:S-0"] == "succeeded"
    assert states["ext:S-1"] == "invalid" and states["ext:S-3"] == "invalid"
    assert states["ext:S-2"] == "pending"  # throttled: not the row's fault, for a later run
    with sqlite3.connect(ledger) as db:
        errors = dict(db.execute("SELECT key, error FROM recordings"))
    assert "access denied (AccessDenied)" in errors["ext:S-1"]
    assert f"s3://{bucket}/calls/missing.wav: no such object" in errors["ext:S-3"]
    assert "testing-secret-key" not in out.out + out.err

    s3.faults.throttled.clear()
    s3.faults.denied.clear()
    assert main(["retry", str(ledger)]) == 1  # the throttled row sent; two invalid are left
    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1  # still one missing
    assert sorted(c.external_id or "" for c in sandbox.store.calls()) == ["S-0", "S-1", "S-2"]


def test_expired_credentials_mid_run_stop_it_with_one_line_and_lose_nothing(
        tmp_path: Path, s3: Any, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    names = ("call-0001-pcm8k.wav", "call-0002-ulaw8k.wav", "call-0003-alaw8k.wav",
             "call-0005-cbr.mp3", "call-0006-vbr.mp3")
    bucket = bucket_with(s3, names)
    s3.faults.expire_after_reads = 2
    manifest = manifest_of(tmp_path, [f"s3://{bucket}/calls/{n}" for n in names])
    ledger = tmp_path / "l.sqlite"

    code = main(["run", str(manifest), "--ledger", str(ledger), "--concurrency", "1"])

    err = capsys.readouterr().err
    assert code == 3
    assert "refused this machine's credentials (ExpiredToken)" in err
    assert "testing-secret-key" not in err
    assert "invalid" not in status_of(ledger).values()

    s3.faults.expire_after_reads = None
    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 0
    assert sorted(c.file_name or "" for c in sandbox.store.calls()) == sorted(names)


def test_presign_sends_a_url_the_store_signed_and_keeps_it_nowhere(
        tmp_path: Path, s3: Any, sandbox: SandboxThread, token_env: str) -> None:
    bucket = bucket_with(s3)
    manifest = manifest_of(tmp_path, [f"s3://{bucket}/calls/{n}" for n in OBJECTS])
    ledger = tmp_path / "l.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger), "--presign", "15m"]) == 0

    calls = sandbox.store.calls()
    assert len(calls) == len(OBJECTS) and all(c.file_sha256 is None for c in calls)
    urls = [c.fields["recording_url"] for c in calls]
    assert all(u.startswith(s3.url) and "Signature=" in u and "Expires=" in u
               for u in urls)
    assert [r[2] for r in s3.seen.reads("call-0004")] == ["bytes=0-65535"]  # probed only
    assert "Signature=" not in ledger.read_bytes().decode("latin-1")
