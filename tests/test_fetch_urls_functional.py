"""--fetch-urls end to end: recording URLs behind a vendor's credentials (a loopback server
with basic auth, a key header, a redirect to another host) fetched by the importer, checked and
sent as files to the sandbox. Nothing of ours is mocked."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from importer.cli.commands import main

from .conftest import SAMPLES, SandboxThread, sha256_of
from .helpers import Vendor, good_row, status_of, write_manifest


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    with Vendor() as server:
        yield server


@pytest.fixture
def netrc_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose ~/.netrc holds the vendor's login for 127.0.0.1 (and only there)."""
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login {Vendor.USER} password {Vendor.PASSWORD}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    return home


def test_urls_behind_basic_auth_are_fetched_checked_and_sent_as_files(
        tmp_path: Path, vendor: Vendor, netrc_home: Path, sandbox: SandboxThread,
        token_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(tmp_path / "m.csv", [
        good_row(external_id="U-1", recording_file="",
                 recording_url=f"{vendor.url}/rec/call-0001-pcm8k.wav?sig=abc"),
        good_row(external_id="U-2", recording_file="",
                 recording_url=f"{vendor.url}/rec/call-0004-stereo16k.wav"),
        good_row(external_id="U-3", recording_file="",
                 recording_url=f"{vendor.url}/moved/call-0005-cbr.mp3"),
        good_row(external_id="U-4", recording_file="", recording_url=f"{vendor.url}/page"),
    ])
    ledger = tmp_path / "l.sqlite"

    code = main(["run", str(manifest), "--ledger", str(ledger), "--fetch-urls"])

    out = capsys.readouterr()
    assert code == 1
    got = {c.external_id: c.file_sha256 for c in sandbox.store.calls()}
    assert got == {"U-1": sha256_of(SAMPLES / "call-0001-pcm8k.wav"),
                   "U-2": sha256_of(SAMPLES / "call-0004-stereo16k.wav"),
                   "U-3": sha256_of(SAMPLES / "call-0005-cbr.mp3")}
    assert all("recording_url" not in c.fields for c in sandbox.store.calls())
    # the redirect to another host carried no credentials
    assert vendor.cdn_headers and all("Authorization" not in h for h in vendor.cdn_headers)
    assert status_of(ledger)["ext:U-4"] == "invalid"
    with sqlite3.connect(ledger) as db:
        kept = "\n".join(str(r) for r in db.execute("SELECT * FROM recordings"))
    assert Vendor.PASSWORD not in kept + out.out + out.err
    assert "sig=abc" not in out.err
    with sqlite3.connect(ledger) as db:  # where each came from, not this run's scratch file
        paths = dict(db.execute("SELECT key, path FROM recordings WHERE status = 'succeeded'"))
    assert paths["ext:U-1"] == f"{vendor.url}/rec/call-0001-pcm8k.wav"
    assert all(not str(p).startswith(tempfile.gettempdir()) for p in paths.values()), paths


def test_a_key_header_comes_from_a_variable_and_refused_credentials_are_one_reason(
        tmp_path: Path, vendor: Vendor, sandbox: SandboxThread, token_env: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    manifest = write_manifest(tmp_path / "m.csv", [
        good_row(external_id="K-1", recording_file="",
                 recording_url=f"{vendor.url}/key/call-0002-ulaw8k.wav"),
        good_row(external_id="K-2", recording_file="",
                 recording_url=f"{vendor.url}/rec/call-0003-alaw8k.wav")])
    ledger = tmp_path / "l.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger), "--fetch-urls",
                 "--url-header", "X-Api-Key=VENDOR_KEY"]) == 2  # the variable is not set
    assert "VENDOR_KEY is not set" in capsys.readouterr().err

    monkeypatch.setenv("VENDOR_KEY", Vendor.KEY)
    code = main(["run", str(manifest), "--ledger", str(ledger), "--fetch-urls",
                 "--url-header", "X-Api-Key=VENDOR_KEY"])

    out = capsys.readouterr()
    assert code == 1
    assert [c.external_id for c in sandbox.store.calls()] == ["K-1"]
    with sqlite3.connect(ledger) as db:
        error = db.execute("SELECT error FROM recordings WHERE key = 'ext:K-2'").fetchone()[0]
    assert "HTTP 401: credentials were refused" in error
    assert Vendor.KEY not in out.out + out.err + error
