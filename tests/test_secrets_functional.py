"""Secrets stay secret even when the server echoes them (issue 11, item 13): a server that puts
the request's headers (the token, and its base64) or the login's raw form (the password and the
client secret, URL-encoded) into its error messages must not get them into anything we write or
print: the summary, --summary-json, every report format, the ledger, the logs. And what a
terminal would act on, in a manifest's cells or headers, is shown escaped, never emitted. Real
HTTP to the sandbox with its --echo-secrets fault, real SQLite, real files."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from importer.cli.commands import main
from importer.redact import Redactor, printable

from .conftest import TOKEN, SandboxThread
from .helpers import good_row, write_manifest

PASSWORD = "p@ss wörd&x=1/2"
CLIENT_SECRET = "cs-0123456789abcdef"


def leaks(text: str, secret: str) -> list[str]:
    """The forms of ``secret`` found in ``text``: as it is, URL-encoded, in base64 (alone, and
    as the value of an Authorization header)."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret),
             base64.b64encode(secret.encode()).decode(),
             base64.b64encode(f"Bearer {secret}".encode()).decode()}
    return sorted(f for f in forms if f in text)


def everything_written(workdir: Path, ledger: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """All a user can see after a run: what it printed, the summary JSON, the ledger's every
    text, and every format of report."""
    out = capsys.readouterr()
    seen = [out.out, out.err, (workdir / "summary.json").read_text()]
    with sqlite3.connect(ledger) as conn:
        seen.extend(conn.iterdump())
    conn.close()
    for fmt in ("table", "csv", "json", "summary", "html"):
        assert main(["report", str(ledger), "--format", fmt]) == 0
        report = workdir / f"report.{fmt}"
        assert main(["report", str(ledger), "--format", fmt, "--output", str(report)]) == 0
        seen.append(report.read_text())
    assert main(["report", str(ledger), "--summary", "--format", "json"]) == 0
    printed = capsys.readouterr()
    seen.extend([printed.out, printed.err])
    return "\n".join(seen)


def test_an_echoed_token_is_written_nowhere(workdir: Path, sandbox: SandboxThread,
                                            token_env: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.set_faults(echo_secrets=True)
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="E1", group_id="999999")])  # refused, with the headers echoed
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger), "--summary-json",
                 str(workdir / "summary.json")]) == 1

    seen = everything_written(workdir, ledger, capsys)
    assert "You are unauthorized for this group" in seen  # the message itself is kept
    assert "request headers" in seen and "***" in seen
    assert leaks(seen, TOKEN) == []


def test_an_echoed_login_is_written_nowhere(workdir: Path, sandbox: SandboxThread,
                                            token_env: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The token endpoint refuses the login and echoes its raw form: the password and the
    client secret, URL-encoded as the form carried them."""
    sandbox.set_faults(echo_secrets=True)
    monkeypatch.delenv("CONVIRZA_TOKEN")
    monkeypatch.setenv("CONVIRZA_USERNAME", "demo@example.com")
    monkeypatch.setenv("CONVIRZA_PASSWORD", PASSWORD)  # not the sandbox's: refused
    monkeypatch.setenv("CONVIRZA_CLIENT_SECRET", CLIENT_SECRET)
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger", str(ledger),
                 "--summary-json", str(workdir / "summary.json")]) == 3

    seen = everything_written(workdir, ledger, capsys)
    assert "request body" in seen  # the echo did reach us, and was blanked
    assert leaks(seen, PASSWORD) == [] and leaks(seen, CLIENT_SECRET) == []


def test_every_form_of_a_secret_is_blanked() -> None:
    redact = Redactor([TOKEN, PASSWORD])
    for prefix in ("", "x", "xy", "Bearer "):  # every base64 alignment
        echoed = base64.b64encode(f"{prefix}{TOKEN}!".encode()).decode()
        cleaned = redact(echoed)
        # At most a few characters either side survive: two bytes of the token at each end,
        # not enough to use it.
        kept = len(base64.b64encode(prefix.encode()))
        assert "***" in cleaned and len(cleaned) <= kept + len("***") + 12
    for form in (PASSWORD, quote(PASSWORD, safe=""), quote_plus(PASSWORD),
                 quote_plus(PASSWORD).lower(), json.dumps(PASSWORD)[1:-1]):
        assert redact(f"body: grant_type=password&password={form}&x=1") == \
            "body: grant_type=password&password=***&x=1"
    assert Redactor(["abc"])("abc") == "abc"  # too short to be a credential


def test_terminal_escapes_in_cells_and_headers_are_shown_escaped(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = workdir / "manifests" / "m.csv"
    manifest.write_text(
        "external_id,recording_file,call_date,group_id,caller_id,\x1b[2JEvil\n"
        "A1,../sample_data/call-0001-pcm8k.wav,2025-03-04T09:15:22-05:00,12,"
        "\x1b]0;owned\x07,x\n", encoding="utf-8")
    ledger = workdir / "ledger.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger)]) == 1
    assert main(["report", str(ledger), "--format", "table"]) == 0

    out = capsys.readouterr()
    for text in (out.out, out.err):
        assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[2JEvil" in out.err  # the unknown column, named as it is
    assert "\\x1b]0;owned\\x07" in out.err + out.out
    assert printable("a\u202eb\tc\nd") == "a\\u202eb\tc\nd"
