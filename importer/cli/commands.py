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
    5    the work was done, but an output it was asked for could not be written: standard
         output (a reader that exited, a full disk) or --summary-json (a weightier code wins)
    130  interrupted (Ctrl-C / SIGTERM / SIGHUP); the ledger is consistent
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from tqdm.contrib.logging import logging_redirect_tqdm

from ..client.resources import RESOURCES, parse_rules
from ..errors import ImporterError, UsageError
from ..events import FanOut, Observer, stop_reason_for
from ..ledger.store import Ledger, Status
from ..observe.progress import ProgressObserver
from ..reports.outputs import atomic_text, ledger_inputs, refuse_overwrites
from ..reports.summaries import (
    Format,
    ObjectWriter,
    ledger_summary,
    summary_report_text,
    summary_text,
    write_rows,
)
from ..run import jobs
from ..run.jobs import (
    ImportJob,
    Plan,
    default_observer,
    job_text,
    plan,
    quiet_line,
    refuse_overwriting_inputs,
    retry_selection,
)
from ..run.verify import Verifier, check_outputs, findings_file, verify_text
from ..sandbox import Faults, SandboxConfig, serve_forever
from ..sandbox.seed import default_seed, load_seed
from ..settings.resolve import DECLARED, Settings, environment_secrets
from ..settings.units import parse_size
from . import demo, logs, streams
from .config import config_json, config_text, entries
from .lookup import run_lookup
from .parser import build_parser
from .stopping import until_signalled

if TYPE_CHECKING:
    from ..observe.metrics import MetricsObserver

log = logging.getLogger("importer.cli")


def exit_code_for(exc: BaseException) -> int:
    """The exit code of an error (see the module docstring; ``events.stop_reason_for`` holds
    the one mapping)."""
    reason = stop_reason_for(exc)
    return reason.exit_code if reason is not None else 1


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
    from ..observe.metrics import MetricsObserver

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
            result = asyncio.run(until_signalled(job, job.execute(), settings.stop_grace))
    finally:
        if settings.summary_json is not None:
            write_summary_json(settings.summary_json, job.result().as_dict(),
                               settings.secrets())
    if settings.quiet:
        if result.exit_code != 0:  # cron mails what a job prints: one line, only when not done
            print(logs.shown(quiet_line(result, job)), file=sys.stderr)
    else:
        if len(job.manifests) > 1 or result.not_started:
            print(logs.shown(job_text(result)))
        if job.errors_out is not None:
            invalid = result.counts.get("invalid", 0)
            print(f"{invalid} invalid rows written to {job.errors_out}" if invalid else
                  f"No invalid rows; {job.errors_out} has the header only.")
    return result.exit_code


def write_summary_json(path: Path, data: dict[str, Any], secrets: Sequence[str]) -> None:
    """``--summary-json`` written (``jobs.write_summary_json``); one that could not be is
    counted as an output lost (``streams.OUTPUT_LOST``), so that the exit code says so."""
    if not jobs.write_summary_json(path, data, secrets):
        streams.lost_output("--summary-json")


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
        verifier = Verifier(settings, ledgers, on_finding=out.write if out else None,
                            requeue_missing=args.requeue_missing)
        result = asyncio.run(until_signalled(verifier, verifier.execute()))
    if not settings.quiet:
        print(logs.shown(verify_text(result)))
        if out is not None:
            print(f"{out.count} discrepancies written to {args.output}")
    return result.exit_code


def cmd_config(args: argparse.Namespace) -> int:
    chosen = _plan(args)
    logs.remember_secrets(chosen.settings.secrets())
    found = entries(chosen)
    with _output(None, for_people=True) as out:
        out.write(config_json(found) if args.format == "json" else config_text(found))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    # --status and --run pick rows to list, --wide lays them out: alone, they ask for the
    # rows as a table, not the summary.
    selected = bool(args.status) or args.run is not None
    fmt = args.format or ("table" if (selected or args.wide) and not args.summary
                          else "summary")
    if args.run is not None and len(args.ledgers) > 1:
        raise UsageError("--run numbers are per ledger: give one ledger with --run")
    if fmt == "html" and selected:
        raise UsageError("--format html shows every row and run; --status and --run select "
                         "rows for table, csv and json")
    if args.wide and fmt != "table":
        raise UsageError("--wide is for the rows as a table (--format table)")
    refuse_overwrites({"--output": args.output},
                      [found for path in args.ledgers for found in ledger_inputs(path)])
    ledgers = [Ledger.open_readonly(path) for path in args.ledgers]
    try:
        if fmt == "html":
            from ..ledger.stats import collect
            from ..reports.html_page import render

            page = render(collect(args.ledgers))
            with _output(args.output) as out:
                out.write(page)
            return 0
        with _output(args.output, for_people=fmt in ("table", "summary")) as out:
            if args.summary or fmt == "summary":
                summary = ledger_summary(ledgers)
                out.write(json.dumps(summary, indent=2) + "\n" if fmt == "json"
                          else summary_report_text(summary) + "\n")
            else:
                statuses = [Status(s) for s in args.status]
                rows = itertools.chain.from_iterable(
                    ledger.rows(statuses, args.run) for ledger in ledgers)
                write_rows(rows, cast(Format, fmt), out, wide=args.wide)
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
        try:
            yield cast(TextIO, _Cleaning(sys.stdout, logs.shown if terminal else logs.scrubbed))
            sys.stdout.flush()
        except BrokenPipeError:
            raise  # the reader took what it wanted (`report ... | head`): see main
        except OSError as exc:  # a full disk, a terminal gone: said once, exit 5
            streams.lose(exc)
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
    if count == 0 and resource.single:
        # Asked for one object by its id: its absence is an answer a script must not take
        # for success (a list that matches nothing is an answer too, and exits 0).
        print(f"convirza-import: error: no {resource.name} {args.object_id} (the API knows no "
              f"such {resource.name}, or this login may not see it)", file=sys.stderr)
        return 1
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
        faults=Faults(fail_rate=args.fail_rate, call_list_fail_rate=args.call_list_fail_rate,
                      ambiguous_rate=args.ambiguous_rate,
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


#: The commands whose output is a by-product of their work: a reader that exits, a full disk
#: or a closed terminal must not stop them (``streams``); for the others (report, lookup,
#: config) the output is the work, and a reader that exits early took what it wanted.
WORKING = frozenset({"run", "validate", "retry", "verify", "demo", "sandbox"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code. Nothing that happens to the standard streams (closed,
    full, a reader gone, an encoding that cannot show a name) ends a command with a
    traceback, and a lost output is in the exit code (``streams``)."""
    saved = streams.prepare()
    try:
        return _main(argv)
    finally:
        streams.restore(saved)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logs.remember_secrets(environment_secrets())  # until the settings know them all
    if args.command in WORKING:
        streams.keep_going()
    try:
        code = COMMANDS[args.command](args)
    except ImporterError as exc:
        print(f"convirza-import: error: {logs.shown(str(exc))}", file=sys.stderr)
        return exit_code_for(exc)
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        print("convirza-import: interrupted", file=sys.stderr)
        return exit_code_for(exc)
    except BrokenPipeError:
        # The reader of a report, a lookup or config went away (`report ... | head`): it took
        # what it wanted, not an error of ours.
        streams.silence_stdout()
        return 0
    return streams.settle(code)
