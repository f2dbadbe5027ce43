"""``convirza-import demo``: the whole product in one command, against the sandbox.

It starts the sandbox in this process on a free loopback port, imports the bundled sample
manifest through the real pipeline (password login, multipart streaming, ledger), and prints
the report. The ledger persists, so a second demo uploads nothing: that is the resume promise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..events import Observer
from ..ledger.store import Ledger
from ..reports.summaries import counts_text, summary_text
from ..run.pipeline import ImportRun, Upload
from ..sandbox import STATE, STORE, SandboxConfig, start
from ..settings.resolve import Settings

DEMO_USER = "demo@example.com"
DEMO_PASSWORD = "demo-password"  # a sandbox-only credential, known to everyone
_PACKAGE = Path(__file__).resolve().parent.parent


def _sample_manifest() -> Path:
    """The demo's manifest, wherever the tool runs from: an installed wheel carries it as
    package data (``importer/_demo``, built from the repository's ``manifests/`` and
    ``sample_data/``); a checkout, or an editable install, has the repository's own."""
    for base in (_PACKAGE / "_demo", _PACKAGE.parent):
        found = base / "manifests" / "sample.csv"
        if found.is_file():
            return found
    return _PACKAGE / "_demo" / "manifests" / "sample.csv"  # named by the error that follows


SAMPLE_MANIFEST = _sample_manifest()


async def run_demo(ledger: Path, manifest: Path, concurrency: int,
                   observer: Observer, say: Callable[[str], None]) -> int:
    """Import ``manifest`` into a fresh in-process sandbox; returns the run's exit code."""
    runner, url = await start(SandboxConfig(users={DEMO_USER: DEMO_PASSWORD}))
    try:
        say(f"Sandbox API listening on {url} (login {DEMO_USER}).")
        settings = Settings.load({
            "api_url": url, "username": DEMO_USER, "password": DEMO_PASSWORD,
            "ledger": ledger, "concurrency": concurrency, "rate": 20.0,
            "timezone": "America/New_York",
        }, environ={})
        summary = await ImportRun(settings, Upload(manifest), observer=observer).execute()
        app = runner.app
        say(summary_text(summary))
        logins = app[STATE].logins
        say(f"The sandbox received {app[STORE].count()} uploads in this demo "
            f"({logins} login{'' if logins == 1 else 's'}).")
        opened = Ledger.open_readonly(ledger)
        try:
            say("Ledger by state:\n" + counts_text(opened))
        finally:
            opened.close()
        say(f"See every row: convirza-import report {ledger} --format table\n"
            f"Run `convirza-import demo` again: nothing is uploaded twice. Delete {ledger} to "
            "start over.")
        if manifest == SAMPLE_MANIFEST:
            say(f"The sample manifest is {manifest}; template.csv beside it has every column.")
        return summary.exit_code
    finally:
        await runner.cleanup()
