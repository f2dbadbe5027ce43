"""The command line's grammar: every command, its arguments, its help and its examples.
Setting flags come from the declarations in ``settings`` (``options.add_flags``); what each
command does is ``cli``'s business."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..client.resources import RESOURCES
from ..ledger.states import Status
from ..settings.options import MANIFEST, OUTPUT, add_flags
from ..settings.resolve import DECLARED
from . import demo
from .stopping import SIGNAL_WINDOW

EPILOG = """\
environment: each option --some-name can also be set as CONVIRZA_SOME_NAME, e.g.
CONVIRZA_CONCURRENCY=8, CONVIRZA_MAP='Call Start=call_date;From=caller_id', and as some_name
in a --job file; a flag wins over a variable, which wins over the job file (see `config`).
credentials: CONVIRZA_TOKEN or --token-file FILE, or CONVIRZA_USERNAME + CONVIRZA_PASSWORD
(with CONVIRZA_CLIENT_ID, default 'system', and CONVIRZA_CLIENT_SECRET); never on the command
line, where other users could read them in the process list.
exit codes: 0 all rows done; 1 some rows failed or invalid; 2 usage error, unreadable
manifest, ledger in use, or not the API answering; 3 credentials refused; 4 stopped by a budget
or the API failing; 5 done, but stdout or --summary-json could not be written; 130 interrupted
(the ledger stays consistent)."""

#: The epilog of the commands that upload or validate, which stop gently on a signal.
RUN_EPILOG = EPILOG + f"""
stopping: Ctrl-C, SIGTERM or SIGHUP (timeout, systemd, Kubernetes, a closed terminal) lets
uploads in flight finish, prints the summary and exits 130; signals within {SIGNAL_WINDOW:g} s
of the first are the same request (timeout and systemd send two at once), a later one aborts
the uploads in flight."""


def _add_options(p: argparse.ArgumentParser, command: str, *,
                 job: bool = True) -> dict[str, argparse._ArgumentGroup]:
    """The setting flags ``command`` takes (declared once, in ``settings``), ``--job`` and
    ``--verbose``; returns the groups, for the command's own flags."""
    groups = add_flags(p, command, DECLARED)
    if job:
        p.add_argument("--job", type=Path, metavar="FILE",
                       help="a job file (TOML) of settings, and the manifest for run and "
                            "validate: flags and CONVIRZA_* variables win over it")
    groups[OUTPUT].add_argument("-v", "--verbose", action="store_true",
                                help="log every row and attempt (by default, problems of the "
                                     "first 100 rows)")
    return groups


#: Help laid out as written: the epilogs' lines and the examples kept as they are.
RAW = argparse.RawDescriptionHelpFormatter

#: Two or three examples at the end of each command's --help, the commonest uses first.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "run": ("calls.csv --timezone America/New_York",
            'calls.xlsx --sheet "March calls" --columns mapping.toml -c 8 -r 4',
            "--job /etc/convirza/nightly.toml --quiet"),
    "validate": ("calls.csv --timezone America/Chicago --errors-out calls.errors.csv",
                 'calls.csv --map "Call Start=call_date" --set group_id=12 --preflight',
                 "--job nightly.toml"),
    "retry": ("calls.csv.ledger.sqlite",
              "calls.csv.ledger.sqlite --status failed --status uploading --since 2025-03-04",
              "--job nightly.toml --include-rejected"),
    "verify": ("calls.csv.ledger.sqlite --output verify.csv",
               "ledger-0.sqlite ledger-1.sqlite -r 2"),
    "config": ("--job nightly.toml", "--job nightly.toml --rate 2 --format json"),
    "report": ("calls.csv.ledger.sqlite",
               "calls.csv.ledger.sqlite --status failed --status invalid",
               "ledger-*.sqlite --format html --output migration.html"),
    "lookup": ("groups", "campaigns --filter group_id=12 --format csv",
               "call-details --filter external_id=PBX-2024-000101"),
    "sandbox": ("--port 8765 --token dev-token",
                "--port 8765 --token dev-token --rate-limit 5 --fail-rate 0.1 --seed 7"),
    "demo": ("", "--ledger /tmp/demo.sqlite --concurrency 8"),
    "scan": ("/var/spool/asterisk/monitor --template asterisk --set group_id=12 -o calls.csv",
             "s3://acme-connect/CallRecordings/ --template connect --since last -o calls.csv",
             "exports/ --template '{caller_id}-{ring_to}-{call_date:%Y%m%d-%H%M%S}-"
             "{external_id}.wav' -o calls.csv"),
}


def _epilog(command: str, before: str = "") -> str:
    """``before`` (the environment, credentials, exit codes), then the command's examples."""
    examples = "\n".join(f"  convirza-import {command} {example}".rstrip()
                         for example in EXAMPLES[command])
    return (before + "\n\n" if before else "") + "examples:\n" + examples


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
        epilog=EPILOG, formatter_class=RAW)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_sending_commands(sub)
    _add_scan_command(sub)
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
                         epilog=_epilog("run", RUN_EPILOG), formatter_class=RAW)
    run.add_argument("manifest", type=Path, nargs="?", metavar="MANIFEST",
                     help=MANIFEST_HELP + " (default: the --job file's); with --template, "
                          "a folder or an s3:// prefix to scan first (see scan)")
    run.add_argument("--errors-out", type=Path, metavar="FILE",
                     help="write the invalid rows, with what is wrong, to FILE (CSV): fix "
                          "them there, then run FILE with the same --ledger")
    run.add_argument("-n", "--dry-run", action="store_true",
                     help="do everything but send: the same as `validate MANIFEST` (no upload, "
                          "no ledger written)")
    _add_manifest_options(_add_options(run, "run"))

    val = sub.add_parser("validate", help="check the manifest and files; send nothing",
                         description="Everything run does before sending: read the manifest, "
                                     "validate every row, probe every file. Nothing is "
                                     "uploaded and no ledger is written.",
                         epilog=_epilog("validate", RUN_EPILOG), formatter_class=RAW)
    val.add_argument("manifest", type=Path, nargs="?", metavar="MANIFEST",
                     help=MANIFEST_HELP + " (default: the --job file's)")
    val.add_argument("--errors-out", type=Path, metavar="FILE",
                     help="write the invalid rows, with what is wrong, to FILE (CSV): fix "
                          "them there and validate FILE again")
    val.add_argument("--explain-mapping", action="store_true",
                     help="first print which column feeds which upload field (by its header, "
                          "mapped, a default, ignored) with its first three values")
    _add_manifest_options(_add_options(val, "validate"))

    rty = sub.add_parser("retry", help="send again the rows that failed, from the ledger alone",
                         description="Send again the rows of LEDGER that failed, and send "
                                     "those still pending (a run stopped early, rows verify "
                                     "found missing), with the metadata the ledger kept (no "
                                     "manifest needed). Files are probed again. Rows the API "
                                     "refused for good (4xx) are left alone unless "
                                     "--include-rejected. Exit 0 only when nothing is left: "
                                     "rows still pending, or rows a stopped run never read, "
                                     "exit 1 with the command that sends them.",
                         epilog=_epilog("retry", RUN_EPILOG), formatter_class=RAW)
    rty.add_argument("ledger", type=Path, nargs="?", metavar="LEDGER",
                     help="a ledger file written by run (default: the --job file's)")
    rty.add_argument("--include-rejected", action="store_true",
                     help="also send rows the API refused with a 4xx (after you fixed the "
                          "cause, e.g. a group's permissions)")
    rty.add_argument("--status", action="append", choices=["failed", "pending", "uploading"],
                     default=[],
                     help="which rows: failed and pending (default), and/or uploading "
                          "(unknown outcome: looked up first)")
    rty.add_argument("--since", metavar="TIME",
                     help="only rows last tried at or after TIME (ISO 8601, UTC, e.g. "
                          "2025-03-04 or 2025-03-04T10:00)")
    _add_options(rty, "retry")


def _add_scan_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scn = sub.add_parser("scan", help="a folder or an s3:// prefix of recordings into a "
                                      "manifest, from each file's name",
                         description="Walk SOURCE (a folder, or an s3:// prefix) and write a "
                                     "manifest with a row per .wav or .mp3 whose name fits "
                                     "--template; names that do not fit are listed, not "
                                     "guessed. Exit 0 when every file fit, else 1.",
                         epilog=_epilog("scan", EPILOG), formatter_class=RAW)
    scn.add_argument("source", metavar="SOURCE", help="a folder, or a prefix s3://bucket/folder/")
    scn.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                     help="the manifest to write (CSV, replaced whole); beside it "
                          "FILE.unmatched.txt lists the names that did not fit, and FILE.mark "
                          "the newest file seen (--since last)")
    _add_options(scn, "scan")


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
                         epilog=_epilog("verify", EPILOG), formatter_class=RAW)
    ver.add_argument("ledgers", type=Path, nargs="*", metavar="LEDGER",
                     help="ledger files written by run (default: the --job file's)")
    ver.add_argument("--output", type=Path, metavar="FILE",
                     help="write the discrepancies (missing, duplicated, unverifiable, "
                          "unchecked rows) to FILE as CSV")
    ver.add_argument("--requeue-missing", action="store_true",
                     help="put the rows whose call is missing back to pending (their data "
                          "kept), so that `retry LEDGER` sends them; takes the ledger's lock")
    _add_options(ver, "verify")

    cfg = sub.add_parser("config", help="the effective settings and where each came from",
                         description="Print the settings a command would run with, and where "
                                     "each came from: a flag, a CONVIRZA_* variable, the job "
                                     "file, or the default. Secrets are masked. Takes every "
                                     "setting flag, to show what wins.",
                         epilog=_epilog("config", EPILOG), formatter_class=RAW)
    cfg.add_argument("--format", choices=["table", "json"], default="table",
                     help="an aligned table (default) or a JSON array")
    _add_options(cfg, "config")

    rep = sub.add_parser("report", help="counts and reasons, or every row as a table, CSV, JSON",
                         description="Show one or more ledgers (e.g. one per shard): counts "
                                     "by state, error reasons and runs (default), every "
                                     "recording as a table, CSV (safe to open in Excel) or a "
                                     "JSON array, or a self-contained HTML page with charts.",
                         epilog=_epilog("report"), formatter_class=RAW)
    rep.add_argument("ledgers", type=Path, nargs="+", metavar="LEDGER",
                     help="ledger files written by run (several: their sum)")
    rep.add_argument("--format", choices=["summary", "table", "csv", "json", "html"],
                     help="summary: counts, reasons, runs (default; with --status, --run or "
                          "--wide: table); table/csv/json: every row; html: one page with charts, "
                          "needing no network (give "
                          "--output FILE.html)")
    rep.add_argument("--summary", action="store_true",
                     help="the summary (counts by state and error reason, per run and "
                          "overall); with --format json, as JSON")
    rep.add_argument("--status", action="append", choices=[s.value for s in Status],
                     default=[], help="only rows in this state (repeatable)")
    rep.add_argument("--run", type=int, metavar="N",
                     help="only rows last touched by run N (see the summary; one ledger only)")
    rep.add_argument("--wide", action="store_true",
                     help="table: each row on one line, its cells whole (default: long cells "
                          "wrapped to fit the terminal's width)")
    rep.add_argument("--output", type=Path, metavar="FILE", help="write to FILE, not stdout")


def _add_lookup_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lk = sub.add_parser("lookup", help="read-only API lookups: groups, campaigns, calls, ...",
                        description="Ask the API and print what it answers, page by page as "
                                    "it arrives. Resources: " + "; ".join(
                                        f"{r.name} ({r.help})" for r in RESOURCES.values()),
                        epilog=_epilog("lookup", EPILOG), formatter_class=RAW)
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
                                     "until Ctrl-C.",
                         epilog=_epilog("sandbox"), formatter_class=RAW)
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
    sbx.add_argument("--fetch-urls", action="store_true",
                     help="fetch each recording_url as Convirza would (loopback URLs only), "
                          "refuse what is not mp3 or wav, and record the bytes it got")
    _add_sandbox_faults(sbx)
    sbx.add_argument("--seed", type=int, help="seed for the injected faults (reproducible)")
    sbx.add_argument("--seed-data", metavar="FILE",
                     help="JSON file of groups, campaigns, custom_sources, callflows, "
                          "channels, numbers to serve instead of the built-in account")


def _add_sandbox_faults(sbx: argparse.ArgumentParser) -> None:
    sbx.add_argument("--call-list-fail-rate", type=float, default=0.0, metavar="F",
                     help="share of call lookups (GET /v2/call/list) answered 500")
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
    sbx.add_argument("--rate-model", choices=("bucket", "sliding", "fixed"), default="bucket",
                     help="how the rate limit is kept: a token bucket (default), a sliding or "
                          "a fixed one-second window")
    sbx.add_argument("--rate-schedule", metavar="S:R,...",
                     help="a limit that changes: R requests a second from S seconds after the "
                          "first request (e.g. 0:20,30:10,60:20)")
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
                                     "run uploads nothing.",
                         epilog=_epilog("demo"), formatter_class=RAW)
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
