"""The command line: parse, build ``Settings``, call one library function, map the outcome to
an exit code. Nothing else lives here.

Exit codes (one table, used by ``exit_code_for``)::

    0    every row succeeded or was already done
    1    the run finished but some rows failed or are invalid
    2    usage error, unreadable manifest or ledger
    3    authentication or permission refused: the run stopped at once
    130  interrupted (Ctrl-C / SIGTERM); the ledger is consistent
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.contrib.logging import logging_redirect_tqdm

from . import demo, logs
from .errors import AuthError, ImporterError, LedgerError, ManifestError, UsageError
from .events import Observer, RunSummary
from .ledger import Ledger, Status
from .pipeline import ImportRun
from .progress import ProgressObserver
from .report import counts_text, summary_text, write_rows
from .sandbox import Faults, SandboxConfig, serve_forever
from .settings import Settings, parse_assignments, parse_size

log = logging.getLogger("importer.cli")

EPILOG = """\
environment: each option --some-name can also be set as CONVIRZA_SOME_NAME, e.g.
CONVIRZA_CONCURRENCY=8, CONVIRZA_MAP='Call Start=call_date;From=caller_id' (flags win).
credentials: CONVIRZA_TOKEN or --token-file FILE, or CONVIRZA_USERNAME + CONVIRZA_PASSWORD
(with CONVIRZA_CLIENT_ID, default 'system', and CONVIRZA_CLIENT_SECRET); never on the command
line, where other users could read them in the process list.
exit codes: 0 all rows done; 1 some rows failed or invalid; 2 usage error or unreadable
manifest; 3 credentials refused; 130 interrupted (the ledger stays consistent)."""


def exit_code_for(exc: BaseException) -> int:
    """The one mapping from errors to exit codes (see the module docstring)."""
    if isinstance(exc, AuthError):
        return 3
    if isinstance(exc, (UsageError, ManifestError, LedgerError)):
        return 2
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        return 130
    return 1


# --- parser ---------------------------------------------------------------------------------

def _add_settings_options(p: argparse.ArgumentParser, *, upload: bool) -> None:
    g = p.add_argument_group("manifest")
    g.add_argument("--map", dest="column_map", action="append", default=[],
                   metavar="COLUMN=FIELD",
                   help="read the manifest column COLUMN as upload field FIELD (repeatable), "
                        "e.g. --map 'Call Start=call_date'")
    g.add_argument("--set", dest="defaults", action="append", default=[],
                   metavar="FIELD=VALUE",
                   help="value of FIELD for rows that leave it empty (repeatable), "
                        "e.g. --set group_id=12")
    g.add_argument("--columns", dest="columns_file", type=Path, metavar="FILE",
                   help="TOML file of [columns] (COLUMN = FIELD) and [defaults] (FIELD = "
                        "VALUE); --map and --set win over it")
    g.add_argument("--sheet", metavar="NAME",
                   help="the sheet of an Excel workbook to read (default: the first)")
    g.add_argument("--encoding", metavar="NAME",
                   help="text encoding of a CSV manifest, e.g. cp1252 (default: UTF-8 with "
                        "or without BOM, else cp1252 with a warning)")
    g.add_argument("--timezone", metavar="ZONE",
                   help="IANA zone for call dates written without one (default: this "
                        "machine's zone, named in a warning)")
    g.add_argument("--dayfirst", action="store_const", const=True, default=None,
                   help="read dates such as 04/03/2025 day first (4 March), not month first")
    g.add_argument("--max-file-size", metavar="SIZE",
                   help="refuse recordings bigger than this, e.g. 50MB, 1GiB (default 50MB)")
    g.add_argument("--no-auto-external-id", dest="auto_external_id", action="store_const",
                   const=False, default=None,
                   help="do not send a derived external_id for rows that have none")
    g.add_argument("--concurrency", type=int, metavar="N",
                   help="files probed or uploaded at once (default 4)")
    if upload:
        a = p.add_argument_group("API")
        a.add_argument("--api-url", metavar="URL",
                       help="API root, to which /v2/... is appended "
                            "(default https://apicfa.convirza.com)")
        a.add_argument("--token-file", metavar="FILE",
                       help="read the bearer token from FILE (instead of CONVIRZA_TOKEN)")
        a.add_argument("--ledger", type=Path, metavar="FILE",
                       help="results ledger (default: MANIFEST.ledger.sqlite beside the "
                            "manifest); re-running with the same ledger resumes")
        a.add_argument("--rate", type=float, metavar="R",
                       help="requests per second, over all workers (default 5)")
        a.add_argument("--burst", type=int, metavar="B",
                       help="requests allowed back to back (default 1: evenly spaced)")
        a.add_argument("--max-attempts", type=int, metavar="N",
                       help="attempts per recording on retryable errors (default 5)")
        a.add_argument("--timeout", dest="read_timeout", type=float, metavar="SECONDS",
                       help="longest wait for the server to answer (default 120)")
        a.add_argument("--file-field", choices=["recording_file", "file"],
                       help="multipart name of the audio part (older API: file)")
    o = p.add_argument_group("output")
    o.add_argument("--quiet", action="store_const", const=True, default=None,
                   help="print only errors (the exit code tells the rest)")
    o.add_argument("--verbose", action="store_true", help="log every row and attempt")
    o.add_argument("--log-format", choices=["text", "json"],
                   help="log lines as text (default) or JSON objects")


MANIFEST_HELP = "CSV (.csv, .tsv, .txt) or Excel (.xlsx, .xlsm), one row per recording"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convirza-import",
        description="Bulk-import call recordings (mp3/wav) into Convirza from a CSV or Excel "
                    "manifest, "
                    "with a resumable results ledger.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="validate and upload every row; re-run to resume",
                         description="Read MANIFEST, validate each row and file, upload them "
                                     "and record every outcome in the ledger. Running the "
                                     "same command again skips what succeeded.",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("manifest", type=Path, metavar="MANIFEST", help=MANIFEST_HELP)
    _add_settings_options(run, upload=True)

    val = sub.add_parser("validate", help="check the manifest and files; send nothing",
                         description="Everything run does before sending: read the manifest, "
                                     "validate every row, probe every file. Nothing is "
                                     "uploaded and no ledger is written.",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    val.add_argument("manifest", type=Path, metavar="MANIFEST", help=MANIFEST_HELP)
    val.add_argument("--errors-out", type=Path, metavar="FILE",
                     help="write the invalid rows, with what is wrong, to FILE (CSV): fix "
                          "them there and validate FILE again")
    _add_settings_options(val, upload=False)

    rep = sub.add_parser("report", help="counts by state, or every row as a table, CSV or JSON",
                         description="Show a ledger: counts by state (default), or every "
                                     "recording as a table, CSV (safe to open in Excel) or a "
                                     "JSON array.")
    rep.add_argument("ledger", type=Path, metavar="LEDGER", help="a ledger file written by run")
    rep.add_argument("--format", choices=["summary", "table", "csv", "json"], default="summary",
                     help="summary: counts by state (default); table/csv/json: every row")
    rep.add_argument("--status", action="append", choices=[s.value for s in Status],
                     default=[], help="only rows in this state (repeatable)")
    rep.add_argument("--output", type=Path, metavar="FILE", help="write to FILE, not stdout")

    sbx = sub.add_parser("sandbox", help="run a local Convirza-compatible API server",
                         description="A stand-in for Convirza's API on loopback, for trying "
                                     "the importer and for tests. Prints its URL, then serves "
                                     "until Ctrl-C.")
    sbx.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sbx.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    sbx.add_argument("--user", action="append", default=[], metavar="EMAIL:PASSWORD",
                     help="a login the token endpoint accepts (repeatable; default "
                          f"{demo.DEMO_USER}:{demo.DEMO_PASSWORD})")
    sbx.add_argument("--token", action="append", default=[], metavar="TOKEN",
                     help="a fixed bearer token to accept (repeatable; sandbox only)")
    sbx.add_argument("--token-ttl", type=float, default=3600.0, metavar="SECONDS",
                     help="lifetime of issued tokens (default 3600)")
    sbx.add_argument("--max-file-size", default="50MB", metavar="SIZE",
                     help="uploads above this get 413 (default 50MB)")
    sbx.add_argument("--store", default=":memory:", metavar="FILE",
                     help="keep received calls in this SQLite file (default: memory)")
    sbx.add_argument("--fail-rate", type=float, default=0.0, metavar="F",
                     help="share of uploads answered 500, e.g. 0.1")
    sbx.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                     help="delay added to every /v2 answer")
    sbx.add_argument("--seed", type=int, help="seed for the injected faults (reproducible)")

    dmo = sub.add_parser("demo", help="import the bundled samples into an in-process sandbox",
                         description="Start the sandbox in this process, import the sample "
                                     "manifest, print the report. Run it twice: the second "
                                     "run uploads nothing.")
    dmo.add_argument("--ledger", type=Path, default=Path("demo.ledger.sqlite"),
                     help="ledger file (default demo.ledger.sqlite in this folder)")
    dmo.add_argument("--manifest", type=Path, default=demo.SAMPLE_MANIFEST,
                     help="manifest to import (default the bundled manifests/sample.csv)")
    dmo.add_argument("--concurrency", type=int, default=4, help="uploads at once (default 4)")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("convirza-import")
    except PackageNotFoundError:
        return "unknown"


# --- commands -------------------------------------------------------------------------------

def _settings(args: argparse.Namespace) -> Settings:
    flags: dict[str, Any] = {
        name: getattr(args, name, None)
        for name in ("api_url", "token_file", "ledger", "concurrency", "rate", "burst",
                     "max_attempts", "read_timeout", "timezone", "file_field",
                     "auto_external_id", "quiet", "log_format", "columns_file", "sheet",
                     "encoding", "dayfirst")
    }
    if args.max_file_size is not None:
        flags["max_file_size"] = parse_size(args.max_file_size)
    if args.defaults:
        flags["defaults"] = parse_assignments(args.defaults, "--set")
    if args.column_map:
        flags["column_map"] = parse_assignments(args.column_map, "--map")
    return Settings.load(flags)


def _setup_logging(settings: Settings, verbose: bool) -> None:
    level = logging.ERROR if settings.quiet else logging.DEBUG if verbose else logging.INFO
    logs.configure(settings.log_format, level, settings.secrets())


def _observer(settings: Settings) -> Observer:
    if settings.quiet:
        from .events import NullObserver

        return NullObserver()
    return ProgressObserver(interval=settings.progress_interval)


async def _run_until_signalled(run: ImportRun) -> RunSummary:
    """Run; the first SIGINT/SIGTERM stops gracefully, the second aborts what is in flight."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            run.stop()
        elif task is not None:
            log.warning("aborting: uploads in flight are left 'uploading' and will be "
                        "reconciled on the next run")
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await run.execute()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def cmd_run(args: argparse.Namespace, upload: bool) -> int:
    settings = _settings(args)
    _setup_logging(settings, args.verbose)
    errors_out: Path | None = getattr(args, "errors_out", None)
    run = ImportRun(settings, args.manifest, upload=upload, observer=_observer(settings),
                    errors_out=errors_out)
    redirect = logging_redirect_tqdm(loggers=[logging.getLogger("importer")]) \
        if sys.stderr.isatty() and not settings.quiet else contextlib.nullcontext()
    with redirect:
        summary = asyncio.run(_run_until_signalled(run))
    if not settings.quiet:
        print(summary_text(summary, reasons=5 if upload else 20))
        if errors_out is not None:
            invalid = summary.counts["invalid"]
            print(f"{invalid} invalid rows written to {errors_out}" if invalid else
                  f"No invalid rows; {errors_out} has the header only.")
    return summary.exit_code


def cmd_report(args: argparse.Namespace) -> int:
    ledger = Ledger.open(args.ledger, create=False)
    try:
        with _output(args.output) as out:
            if args.format == "summary":
                out.write(counts_text(ledger) + "\n")
            else:
                write_rows(ledger.rows([Status(s) for s in args.status]), args.format, out)
    finally:
        ledger.close()
    return 0


@contextlib.contextmanager
def _output(path: Path | None) -> Any:
    if path is None:
        yield sys.stdout
        return
    try:
        with path.open("w", encoding="utf-8", newline="") as handle:
            yield handle
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def cmd_sandbox(args: argparse.Namespace) -> int:
    users = {}
    for pair in args.user or [f"{demo.DEMO_USER}:{demo.DEMO_PASSWORD}"]:
        email, sep, password = pair.partition(":")
        if not sep:
            raise UsageError(f"--user expects EMAIL:PASSWORD, got {email!r}")
        users[email] = password
    config = SandboxConfig(
        users=users, static_tokens=frozenset(args.token), token_ttl=args.token_ttl,
        max_file_size=parse_size(args.max_file_size), store_path=args.store,
        faults=Faults(fail_rate=args.fail_rate, latency=args.latency, seed=args.seed))

    def announce(url: str) -> None:
        print(f"Sandbox listening on {url}", flush=True)
        print(f"  logins: {', '.join(users)}; Ctrl-C to stop", file=sys.stderr, flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(config, args.host, args.port, announce))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    logs.configure("text", logging.INFO, [])
    if not args.manifest.is_file():
        raise UsageError(f"the demo manifest {args.manifest} is missing; run the demo from a "
                         "checkout of the repository, or pass --manifest")
    observer = ProgressObserver()
    code: int = asyncio.run(demo.run_demo(args.ledger, args.manifest, args.concurrency,
                                          observer, print))
    return code


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": lambda a: cmd_run(a, upload=True),
    "validate": lambda a: cmd_run(a, upload=False),
    "report": cmd_report,
    "sandbox": cmd_sandbox,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ImporterError as exc:
        print(f"convirza-import: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        print("convirza-import: interrupted", file=sys.stderr)
        return exit_code_for(exc)
    except BrokenPipeError:
        # The reader went away (`report ... | head`): not an error of ours.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
