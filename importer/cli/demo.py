"""``convirza-import demo``: the whole product in one command, against the sandbox.

It starts the sandbox in this process on a free loopback port, imports the bundled sample
manifest through the real pipeline (password login, multipart streaming, ledger), and prints
the report. The ledger persists, so a second demo uploads nothing: that is the resume promise.

``convirza-import sandbox`` serves the same sandbox on its own, with the faults asked for,
until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import UsageError
from ..ledger.lock import LedgerLock
from ..ledger.store import Ledger
from ..observe.progress import ProgressObserver
from ..observers import Observer
from ..reports.summaries import counts_text, summary_text
from ..run.pipeline import ImportRun, Upload
from ..sandbox import STATE, STORE, Faults, SandboxConfig, serve_forever, start
from ..sandbox.ratelimits import parse_schedule
from ..sandbox.seed import default_seed, load_seed
from ..settings.resolve import Settings
from ..settings.units import parse_size
from . import logs

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


def cmd_sandbox(args: argparse.Namespace) -> int:
    users = {}
    for pair in args.user or [f"{DEMO_USER}:{DEMO_PASSWORD}"]:
        email, sep, password = pair.partition(":")
        if not sep:
            raise UsageError(f"--user expects EMAIL:PASSWORD, got {email!r}")
        users[email] = password
    try:
        seed = load_seed(args.seed_data) if args.seed_data else default_seed()
    except (OSError, ValueError) as exc:
        raise UsageError(f"--seed-data: {exc}") from None
    if args.split_answers and args.split_answers < 2:
        raise UsageError(f"--split-answers expects N >= 2, got {args.split_answers}")
    try:
        max_file_size = parse_size(args.max_file_size)
    except ValueError as exc:
        raise UsageError(f"--max-file-size: {exc}") from None
    if args.redirect_to and not args.redirect_to.startswith(("http://", "https://")):
        raise UsageError(f"--redirect-to expects an http(s) URL, got {args.redirect_to!r}")
    try:
        schedule = parse_schedule(args.rate_schedule) if args.rate_schedule else ()
    except ValueError as exc:
        raise UsageError(f"--rate-schedule: {exc}") from None
    config = SandboxConfig(
        seed=seed, users=users, static_tokens=frozenset(args.token), token_ttl=args.token_ttl,
        max_file_size=max_file_size, store_path=args.store, fetch_urls=args.fetch_urls,
        faults=Faults(fail_rate=args.fail_rate, call_list_fail_rate=args.call_list_fail_rate,
                      ambiguous_rate=args.ambiguous_rate,
                      lost_answer_rate=args.lost_answer_rate, reset_rate=args.reset_rate,
                      rate_limit=args.rate_limit, rate_burst=args.rate_burst,
                      rate_model=args.rate_model, rate_schedule=schedule,
                      latency=args.latency, seed=args.seed, redirect_to=args.redirect_to,
                      redirect_status=args.redirect_status, html_200=args.html_200,
                      echo_secrets=args.echo_secrets, split_answers=args.split_answers,
                      login_error=args.login_error))

    def announce(url: str) -> None:
        print(f"Sandbox listening on {url}", flush=True)
        print(f"  logins: {', '.join(users)}; Ctrl-C to stop", file=sys.stderr, flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(config, args.host, args.port, announce))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    logs.configure("text", logging.INFO, [])
    if not args.manifest.is_file():
        raise UsageError(f"the demo manifest {args.manifest} is missing: reinstall "
                         "convirza-import (pipx reinstall convirza-import), or pass "
                         "--manifest FILE")
    observer = ProgressObserver()
    code: int = asyncio.run(run_demo(args.ledger, args.manifest, args.concurrency,
                                     observer, print))
    LedgerLock(args.ledger).remove_if_free()  # a demo leaves its ledger, not its lock file
    return code
