"""The command line: parse, build ``Settings``, call one library function, map the outcome to
an exit code. Nothing else lives here.

Exit codes (``events.StopReason`` holds the one table; ``exit_code_for`` reads it)::

    0    every row succeeded or was already done
    1    the run finished but some rows failed or are invalid
    2    usage error; unreadable manifest or ledger; a ledger another run writes; an API URL
         answered by something else than the API (a redirect, an HTML page)
    3    authentication or permission refused: the run stopped at once
    4    stopped early by a budget (--max-errors, --max-uploads, --max-duration), because
         the API kept failing (--max-consecutive-failures), or did not answer at the start
    130  interrupted (Ctrl-C / SIGTERM); the ledger is consistent
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO, TypeVar, cast

from tqdm.contrib.logging import logging_redirect_tqdm

from . import demo, logs
from .config import config_json, config_text, entries
from .errors import ImporterError, UsageError
from .events import FanOut, Observer, stop_reason_for
from .jobs import (
    ImportJob,
    Plan,
    default_observer,
    job_text,
    plan,
    refuse_overwriting_inputs,
    retry_selection,
    write_summary_json,
)
from .ledger import Ledger, Status
from .lookup import run_lookup
from .options import MANIFEST, OUTPUT, add_flags
from .outputs import atomic_text, ledger_inputs, refuse_overwrites
from .progress import ProgressObserver
from .report import (
    ObjectWriter,
    ledger_summary,
    summary_report_text,
    summary_text,
    write_rows,
)
from .resources import RESOURCES, parse_rules
from .sandbox import Faults, SandboxConfig, serve_forever
from .sandbox.seed import default_seed, load_seed
from .settings import DECLARED, Settings, environment_secrets
from .units import parse_size
from .verify import Verifier, check_outputs, findings_file, verify_text

if TYPE_CHECKING:
    from .metrics import MetricsObserver

log = logging.getLogger("importer.cli")
T = TypeVar("T")

EPILOG = """\
environment: each option --some-name can also be set as CONVIRZA_SOME_NAME, e.g.
CONVIRZA_CONCURRENCY=8, CONVIRZA_MAP='Call Start=call_date;From=caller_id', and as some_name
in a --job file; a flag wins over a variable, which wins over the job file (see `config`).
credentials: CONVIRZA_TOKEN or --token-file FILE, or CONVIRZA_USERNAME + CONVIRZA_PASSWORD
(with CONVIRZA_CLIENT_ID, default 'system', and CONVIRZA_CLIENT_SECRET); never on the command
line, where other users could read them in the process list.
exit codes: 0 all rows done; 1 some rows failed or invalid; 2 usage error, unreadable
manifest, ledger in use, or not the API answering; 3 credentials refused; 4 stopped by a budget
or the API failing; 130 interrupted (the ledger stays consistent)."""

#: Signals closer than this to the first one are the same request to stop. ``timeout``
#: signals the program and then its whole process group, systemd every process of the unit at
#: once, a shell's Ctrl-C the whole foreground group: the copies arrive microseconds to
#: milliseconds apart, or up to some hundreds of milliseconds when a busy, shared machine
#: delays the event loop. A person who means to abort reads "stopping ..." first and then
#: presses again, which takes longer; one second separates the two with room on both sides.
#: Measured from the first signal, not the latest, so that hammering Ctrl-C still aborts.
SIGNAL_WINDOW = 1.0

#: The epilog of the commands that upload or validate, which stop gently on a signal.
RUN_EPILOG = EPILOG + f"""
stopping: Ctrl-C or SIGTERM (timeout, systemd, Kubernetes) lets uploads in flight finish,
prints the summary and exits 130; signals within {SIGNAL_WINDOW:g} s of the first are the same \
request
(timeout and systemd send two at once), a later one aborts the uploads in flight."""


def exit_code_for(exc: BaseException) -> int:
    """The exit code of an error (see the module docstring; ``events.stop_reason_for`` holds
    the one mapping)."""
    reason = stop_reason_for(exc)
    return reason.exit_code if reason is not None else 1


# --- parser ---------------------------------------------------------------------------------

def _add_options(p: argparse.ArgumentParser, command: str, *,
                 job: bool = True) -> dict[str, argparse._ArgumentGroup]:
    """The setting flags ``command`` takes (declared once, in ``settings``), ``--job`` and
    ``--verbose``; returns the groups, for the command's own flags."""
    groups = add_flags(p, command, DECLARED)
    if job:
        p.add_argument("--job", type=Path, metavar="FILE",
                       help="a job file (TOML) of settings, and the manifest for run and "
                            "validate: flags and CONVIRZA_* variables win over it")
    groups[OUTPUT].add_argument("--verbose", action="store_true",
                                help="log every row and attempt (by default, problems of the "
                                     "first 100 rows)")
    return groups


MANIFEST_HELP = "CSV (.csv, .tsv, .txt) or Excel (.xlsx, .xlsm), one row per recording"


def _add_manifest_options(groups: dict[str, argparse._ArgumentGroup]) -> None:
    groups[MANIFEST].add_argument(
        "--skip-duplicate-audio", action="store_true",
        help="the default now (audio already imported is not sent again); accepted so that "
             "older scripts keep working")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convirza-import",
        description="Bulk-import call recordings (mp3/wav) into Convirza from a CSV or Excel "
                    "manifest, "
                    "with a resumable results ledger.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_sending_commands(sub)
    _add_ledger_commands(sub)
    _add_lookup_command(sub)
    _add_sandbox_command(sub)
    _add_demo_command(sub)
    return parser


def _add_sending_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="validate and upload every row; re-run to resume",
                         description="Read MANIFEST, validate each row and file, upload them "
                                     "and record every outcome in the ledger. Running the "
                                     "same command again skips what succeeded.",
                         epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("manifest", type=Path, nargs="?", metavar="MANIFEST",
                     help=MANIFEST_HELP + " (default: the --job file's)")
    run.add_argument("--dry-run", action="store_true",
                     help="do everything but send: the same as `validate MANIFEST` (no upload, "
                          "no ledger written)")
    _add_manifest_options(_add_options(run, "run"))

    val = sub.add_parser("validate", help="check the manifest and files; send nothing",
                         description="Everything run does before sending: read the manifest, "
                                     "validate every row, probe every file. Nothing is "
                                     "uploaded and no ledger is written.",
                         epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    val.add_argument("manifest", type=Path, nargs="?", metavar="MANIFEST",
                     help=MANIFEST_HELP + " (default: the --job file's)")
    val.add_argument("--errors-out", type=Path, metavar="FILE",
                     help="write the invalid rows, with what is wrong, to FILE (CSV): fix "
                          "them there and validate FILE again")
    _add_manifest_options(_add_options(val, "validate"))

    rty = sub.add_parser("retry", help="send again the rows that failed, from the ledger alone",
                         description="Send again the rows of LEDGER that failed, with the "
                                     "metadata the ledger kept (no manifest needed). Files are "
                                     "probed again. Rows the API refused for good (4xx) are "
                                     "left alone unless --include-rejected.",
                         epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    rty.add_argument("ledger", type=Path, nargs="?", metavar="LEDGER",
                     help="a ledger file written by run (default: the --job file's)")
    rty.add_argument("--include-rejected", action="store_true",
                     help="also send rows the API refused with a 4xx (after you fixed the "
                          "cause, e.g. a group's permissions)")
    rty.add_argument("--status", action="append", choices=["failed", "uploading"], default=[],
                     help="which rows: failed (default) and/or uploading (unknown outcome: "
                          "looked up first)")
    rty.add_argument("--since", metavar="TIME",
                     help="only rows last tried at or after TIME (ISO 8601, UTC, e.g. "
                          "2025-03-04 or 2025-03-04T10:00)")
    _add_options(rty, "retry")


def _add_ledger_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ver = sub.add_parser("verify", help="look every imported row up in the API: present once, "
                                        "missing, or doubled",
                         description="The migration's proof: every row LEDGER holds as "
                                     "succeeded is looked up in the API by the external_id "
                                     "its call was sent with, and is found once (good), "
                                     "missing, or more than once (a duplicate in Convirza). "
                                     "Rows imported without an external_id are listed as "
                                     "unverifiable. Exit 0 only when every verifiable row is "
                                     "present exactly once, else 1.",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ver.add_argument("ledgers", type=Path, nargs="*", metavar="LEDGER",
                     help="ledger files written by run (default: the --job file's)")
    ver.add_argument("--output", type=Path, metavar="FILE",
                     help="write the discrepancies (missing, duplicated, unverifiable, "
                          "unchecked rows) to FILE as CSV")
    _add_options(ver, "verify")

    cfg = sub.add_parser("config", help="the effective settings and where each came from",
                         description="Print the settings a command would run with, and where "
                                     "each came from: a flag, a CONVIRZA_* variable, the job "
                                     "file, or the default. Secrets are masked. Takes every "
                                     "setting flag, to show what wins.",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    cfg.add_argument("--format", choices=["table", "json"], default="table",
                     help="an aligned table (default) or a JSON array")
    _add_options(cfg, "config")

    rep = sub.add_parser("report", help="counts and reasons, or every row as a table, CSV, JSON",
                         description="Show one or more ledgers (e.g. one per shard): counts "
                                     "by state, error reasons and runs (default), every "
                                     "recording as a table, CSV (safe to open in Excel) or a "
                                     "JSON array, or a self-contained HTML page with charts.")
    rep.add_argument("ledgers", type=Path, nargs="+", metavar="LEDGER",
                     help="ledger files written by run (several: their sum)")
    rep.add_argument("--format", choices=["summary", "table", "csv", "json", "html"],
                     default="summary",
                     help="summary: counts, reasons, runs (default); table/csv/json: every "
                          "row; html: one page with charts, needing no network (give "
                          "--output FILE.html)")
    rep.add_argument("--summary", action="store_true",
                     help="the summary (counts by state and error reason, per run and "
                          "overall); with --format json, as JSON")
    rep.add_argument("--status", action="append", choices=[s.value for s in Status],
                     default=[], help="only rows in this state (repeatable)")
    rep.add_argument("--run", type=int, metavar="N",
                     help="only rows last touched by run N (see the summary; one ledger only)")
    rep.add_argument("--output", type=Path, metavar="FILE", help="write to FILE, not stdout")


def _add_lookup_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lk = sub.add_parser("lookup", help="read-only API lookups: groups, campaigns, calls, ...",
                        description="Ask the API and print what it answers, page by page as "
                                    "it arrives. Resources: " + "; ".join(
                                        f"{r.name} ({r.help})" for r in RESOURCES.values()),
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    lk.add_argument("resource", choices=list(RESOURCES), metavar="RESOURCE",
                    help="what to look up: " + ", ".join(RESOURCES))
    lk.add_argument("object_id", nargs="?", metavar="ID",
                    help="the id, for the single-object resources (group, campaign, call)")
    lk.add_argument("--filter", action="append", default=[], metavar="RULE",
                    help="COLUMN=VALUE, or with !=, >=, <= (repeatable; all must hold), "
                         "e.g. --filter 'call_started>=2025-01-01'")
    lk.add_argument("--limit", type=int, metavar="N",
                    help="print at most N objects (default: every page)")
    lk.add_argument("--group", metavar="ID",
                    help="the group (org unit) whose custom sources to list")
    lk.add_argument("--format", choices=["table", "json", "csv"], default="table",
                    help="an 80-column table (default), CSV, or one JSON array of the objects "
                         "as the API gives them")
    lk.add_argument("--output", type=Path, metavar="FILE", help="write to FILE, not stdout")
    _add_options(lk, "lookup", job=False)


def _add_sandbox_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    _add_sandbox_faults(sbx)
    sbx.add_argument("--seed", type=int, help="seed for the injected faults (reproducible)")
    sbx.add_argument("--seed-data", metavar="FILE",
                     help="JSON file of groups, campaigns, custom_sources, callflows, "
                          "channels, numbers to serve instead of the built-in account")


def _add_sandbox_faults(sbx: argparse.ArgumentParser) -> None:
    sbx.add_argument("--fail-rate", type=float, default=0.0, metavar="F",
                     help="share of uploads answered 500, e.g. 0.1")
    sbx.add_argument("--ambiguous-rate", type=float, default=0.0, metavar="F",
                     help="share of uploads stored and then answered 500 (an unknown outcome)")
    sbx.add_argument("--lost-answer-rate", type=float, default=0.0, metavar="F",
                     help="share of uploads stored and then the connection dropped unanswered")
    sbx.add_argument("--reset-rate", type=float, default=0.0, metavar="F",
                     help="share of uploads whose connection is dropped unanswered, unstored")
    sbx.add_argument("--rate-limit", type=float, default=0.0, metavar="R",
                     help="allow R /v2 requests a second (token bucket); over it, 429 with "
                          "Retry-After")
    sbx.add_argument("--rate-burst", type=int, default=0, metavar="B",
                     help="the rate limit's bucket size (default: a fifth of a second's "
                          "worth, at least 2)")
    sbx.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                     help="delay added to every /v2 answer")
    sbx.add_argument("--redirect-to", metavar="URL",
                     help="answer every /v2 and /oauth/token request with a redirect to URL "
                          "plus the request's path and query, reading and storing nothing")
    sbx.add_argument("--redirect-status", type=int, choices=[301, 302, 303, 307, 308],
                     default=302, help="the status of --redirect-to's answers (default 302)")
    sbx.add_argument("--html-200", action="store_true",
                     help="answer every /v2 and /oauth/token request with 200 and an HTML "
                          "page (\"Welcome to nginx!\"), storing nothing")
    sbx.add_argument("--echo-secrets", action="store_true",
                     help="put the request's headers (Authorization too, also in base64) and "
                          "the token endpoint's raw login body into error answers")
    sbx.add_argument("--split-answers", type=int, default=0, metavar="N",
                     help="write every JSON answer in N >= 2 flushed pieces, 20 ms apart")
    sbx.add_argument("--login-error", type=int, default=0, metavar="STATUS",
                     help="the token endpoint answers every login with this HTTP status, "
                          "e.g. 500")


def _add_demo_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dmo = sub.add_parser("demo", help="import the bundled samples into an in-process sandbox",
                         description="Start the sandbox in this process, import the sample "
                                     "manifest, print the report. Run it twice: the second "
                                     "run uploads nothing.")
    dmo.add_argument("--ledger", type=Path, default=Path("demo.ledger.sqlite"),
                     help="ledger file (default demo.ledger.sqlite in this folder)")
    dmo.add_argument("--manifest", type=Path, default=demo.SAMPLE_MANIFEST,
                     help="manifest to import (default the bundled manifests/sample.csv)")
    dmo.add_argument("--concurrency", type=int, default=4, help="uploads at once (default 4)")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("convirza-import")
    except PackageNotFoundError:
        return "unknown"


# --- commands -------------------------------------------------------------------------------

def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The setting flags given, by field name (those not given are None)."""
    return {d.name: getattr(args, d.name, None) for d in DECLARED}


def _plan(args: argparse.Namespace, manifest: Path | None = None, *,
          reads: bool = False) -> Plan:
    return plan(_flags(args), job=getattr(args, "job", None), manifest=manifest, reads=reads)


def _settings(args: argparse.Namespace) -> Settings:
    return _plan(args).settings


def _setup_logging(settings: Settings, verbose: bool) -> None:
    level = logging.ERROR if settings.quiet else logging.DEBUG if verbose else logging.INFO
    logs.configure(settings.log_format, level, settings.secrets())


class _Stoppable(Protocol):
    def stop(self) -> None: ...


async def _until_signalled(work: _Stoppable, running: Awaitable[T]) -> T:
    """Run; the first SIGINT/SIGTERM stops gracefully, and one that comes later than
    ``SIGNAL_WINDOW`` after it aborts what is in flight. Those in between are echoes of the
    first (``timeout``, systemd), and aborting on them would leave rows ``uploading`` and no
    summary when the scheduler meant a clean stop."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    first: float | None = None

    def on_signal(signum: int) -> None:
        nonlocal first
        now = time.monotonic()
        name = signal.Signals(signum).name
        if first is None:
            first = now
            work.stop()
            log.warning("%s received; a second Ctrl-C or SIGTERM, a moment from now, aborts "
                        "what is in flight instead (uploads' rows stay 'uploading' until the "
                        "next run reconciles them)", name)
        elif now - first < SIGNAL_WINDOW:
            log.debug("%s %.3fs after the first signal: the same request to stop", name,
                      now - first)
        elif task is not None:
            log.warning("aborting: uploads in flight are left 'uploading' and will be "
                        "reconciled on the next run")
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await running
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def cmd_run(args: argparse.Namespace, upload: bool) -> int:
    upload = upload and not getattr(args, "dry_run", False)
    chosen = _plan(args, args.manifest, reads=True)
    settings = chosen.settings
    _setup_logging(settings, args.verbose)
    if args.skip_duplicate_audio:
        log.warning("--skip-duplicate-audio is the default now (audio already imported is not "
                    "sent again) and does nothing; --send-same-audio sends such rows")
    reasons = 5 if upload else 20
    metrics = _metrics(settings) if upload else None
    job = ImportJob(settings, chosen.manifests, upload=upload,
                    observer=_observer(settings, metrics),
                    errors_out=getattr(args, "errors_out", None),
                    on_summary=None if settings.quiet else lambda summary: print(
                        logs.shown(summary_text(summary, reasons=reasons))))
    refuse_overwriting_inputs(job, [("the job file", args.job)])
    return _execute(job, settings, metrics)


def cmd_retry(args: argparse.Namespace) -> int:
    chosen = _plan(args)
    settings = chosen.settings
    _setup_logging(settings, args.verbose)
    if settings.ledger is None:
        raise UsageError("retry needs a LEDGER (or --job FILE naming one)")
    metrics = _metrics(settings)
    job = ImportJob(settings, (), observer=_observer(settings, metrics),
                    retry=retry_selection(args.status, args.include_rejected, args.since),
                    on_summary=None if settings.quiet else lambda summary: print(
                        logs.shown(summary_text(summary))))
    refuse_overwriting_inputs(job, [("the job file", args.job)])
    return _execute(job, settings, metrics)


def _observer(settings: Settings, metrics: MetricsObserver | None) -> Observer:
    """The run's observers: the progress bar or line (unless ``--quiet``) and the metrics."""
    shown = default_observer(settings)
    return shown if metrics is None else FanOut(shown, metrics)


def _metrics(settings: Settings) -> MetricsObserver | None:
    """The metrics observer, when ``--metrics-port`` or ``--metrics-textfile`` asks for it;
    a shard's metrics carry its ``shard`` label."""
    if settings.metrics_port is None and settings.metrics_textfile is None:
        return None
    from .metrics import MetricsObserver

    labels = {"shard": str(settings.shard)} if settings.shard else {}
    return MetricsObserver(labels=labels, textfile=settings.metrics_textfile)


def _execute(job: ImportJob, settings: Settings, metrics: MetricsObserver | None = None) -> int:
    """Run with signals handled and metrics served if asked (each run's summary is printed as
    it ends, and for several manifests a last line for the whole job), and write the summary
    as JSON if asked."""
    redirect = logging_redirect_tqdm(loggers=[logging.getLogger("importer")]) \
        if sys.stderr.isatty() and not settings.quiet else contextlib.nullcontext()
    served = metrics.serve(settings.metrics_host, settings.metrics_port) \
        if metrics is not None and settings.metrics_port is not None \
        else contextlib.nullcontext()
    try:
        with served, redirect:
            result = asyncio.run(_until_signalled(job, job.execute()))
    finally:
        if settings.summary_json is not None:
            write_summary_json(settings.summary_json, job.result().as_dict(),
                               settings.secrets())
    if not settings.quiet:
        if len(job.manifests) > 1 or result.not_started:
            print(logs.shown(job_text(result)))
        if job.errors_out is not None:
            invalid = result.counts.get("invalid", 0)
            print(f"{invalid} invalid rows written to {job.errors_out}" if invalid else
                  f"No invalid rows; {job.errors_out} has the header only.")
    return result.exit_code


def _settings_inputs(settings: Settings) -> list[tuple[str, Path | None]]:
    """The files settings were read from, which no output may replace."""
    return [("the columns file", settings.columns_file),
            ("the token file", settings.token_file)]


def cmd_verify(args: argparse.Namespace) -> int:
    chosen = _plan(args)
    settings = chosen.settings
    _setup_logging(settings, args.verbose)
    ledgers = list(args.ledgers) or ([settings.ledger] if settings.ledger else [])
    if not ledgers:
        raise UsageError("verify needs a LEDGER (or --job FILE naming one)")
    check_outputs(args.output, ledgers, args.job)
    with findings_file(args.output) as out:
        verifier = Verifier(settings, ledgers, on_finding=out.write if out else None)
        result = asyncio.run(_until_signalled(verifier, verifier.execute()))
    if not settings.quiet:
        print(logs.shown(verify_text(result)))
        if out is not None:
            print(f"{out.count} discrepancies written to {args.output}")
    return result.exit_code


def cmd_config(args: argparse.Namespace) -> int:
    chosen = _plan(args)
    logs.remember_secrets(chosen.settings.secrets())
    found = entries(chosen)
    print(logs.shown(config_json(found) if args.format == "json" else config_text(found)),
          end="")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if args.run is not None and len(args.ledgers) > 1:
        raise UsageError("--run numbers are per ledger: give one ledger with --run")
    if args.format == "html" and (args.status or args.run is not None):
        raise UsageError("--format html shows every row and run; --status and --run select "
                         "rows for table, csv and json")
    refuse_overwrites({"--output": args.output},
                      [found for path in args.ledgers for found in ledger_inputs(path)])
    ledgers = [Ledger.open_readonly(path) for path in args.ledgers]
    try:
        if args.format == "html":
            from .html_report import render
            from .ledger_stats import collect

            page = render(collect(args.ledgers))
            with _output(args.output) as out:
                out.write(page)
            return 0
        with _output(args.output, for_people=args.format in ("table", "summary")) as out:
            if args.summary or args.format == "summary":
                summary = ledger_summary(ledgers)
                out.write(json.dumps(summary, indent=2) + "\n" if args.format == "json"
                          else summary_report_text(summary) + "\n")
            else:
                statuses = [Status(s) for s in args.status]
                rows = itertools.chain.from_iterable(
                    ledger.rows(statuses, args.run) for ledger in ledgers)
                write_rows(rows, args.format, out)
    finally:
        for ledger in ledgers:
            ledger.close()
    return 0


@contextlib.contextmanager
def _output(path: Path | None, *, for_people: bool = False) -> Iterator[TextIO]:
    """Standard output, or ``path`` written through a temporary file: a report cut short (a
    full disk, an API error half-way through a lookup) leaves the previous file whole.

    Whatever is written has our secrets blanked (a ledger written before they were, or an
    API that echoes them); text for people (a table), or anything bound for a terminal, also
    has the characters a terminal would act on escaped."""
    if path is None:
        terminal = for_people or sys.stdout.isatty()
        yield cast(TextIO, _Cleaning(sys.stdout, logs.shown if terminal else logs.scrubbed))
        return
    with atomic_text(path) as handle:
        yield cast(TextIO, _Cleaning(handle, logs.shown if for_people else logs.scrubbed))


class _Cleaning(io.TextIOBase):
    """A text stream that passes what it is given through ``clean`` on its way to ``out``."""

    def __init__(self, out: TextIO, clean: Callable[[str], str]) -> None:
        super().__init__()
        self._out = out
        self._clean = clean

    def write(self, text: str) -> int:
        self._out.write(self._clean(text))
        return len(text)

    def flush(self) -> None:
        self._out.flush()


def cmd_lookup(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(settings, args.verbose)
    resource = RESOURCES[args.resource]
    if args.object_id is not None and not resource.single:
        raise UsageError(f"lookup {resource.name} takes no ID; use --filter, e.g. "
                         f"--filter {resource.columns[0]}={args.object_id}")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    params: dict[str, str | int] = {}
    if resource.required_param:
        if args.group is None:
            raise UsageError(f"lookup {resource.name} needs --group ID")
        params[resource.required_param] = args.group
    refuse_overwrites({"--output": args.output}, _settings_inputs(settings))
    with _output(args.output) as out:
        writer = ObjectWriter(args.format, resource.columns, out)
        count = asyncio.run(run_lookup(settings, resource, writer, object_id=args.object_id,
                                       filter=parse_rules(args.filter), params=params,
                                       limit=args.limit))
    if count == 0 and not settings.quiet:
        print("no records found", file=sys.stderr)
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    users = {}
    for pair in args.user or [f"{demo.DEMO_USER}:{demo.DEMO_PASSWORD}"]:
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
    config = SandboxConfig(
        seed=seed, users=users, static_tokens=frozenset(args.token), token_ttl=args.token_ttl,
        max_file_size=max_file_size, store_path=args.store,
        faults=Faults(fail_rate=args.fail_rate, ambiguous_rate=args.ambiguous_rate,
                      lost_answer_rate=args.lost_answer_rate, reset_rate=args.reset_rate,
                      rate_limit=args.rate_limit, rate_burst=args.rate_burst,
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
    code: int = asyncio.run(demo.run_demo(args.ledger, args.manifest, args.concurrency,
                                          observer, print))
    return code


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": lambda a: cmd_run(a, upload=True),
    "validate": lambda a: cmd_run(a, upload=False),
    "retry": cmd_retry,
    "verify": cmd_verify,
    "config": cmd_config,
    "report": cmd_report,
    "lookup": cmd_lookup,
    "sandbox": cmd_sandbox,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.remember_secrets(environment_secrets())  # until the settings know them all
    try:
        return COMMANDS[args.command](args)
    except ImporterError as exc:
        print(f"convirza-import: error: {logs.shown(str(exc))}", file=sys.stderr)
        return exit_code_for(exc)
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        print("convirza-import: interrupted", file=sys.stderr)
        return exit_code_for(exc)
    except BrokenPipeError:
        # The reader went away (`report ... | head`): not an error of ours.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
