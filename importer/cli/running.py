"""``run``, ``validate``, ``retry`` and ``verify``: the commands that work through a ledger,
with signals handled, observers attached, metrics served when asked, and their summary printed
(and written as JSON when asked). Their output is a by-product of the work: losing it never
stops them (``streams``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.contrib.logging import logging_redirect_tqdm

from ..errors import UsageError
from ..manifest.explain import explain
from ..manifest.opening import open_manifest
from ..observers import FanOut, Observer
from ..reports.summaries import summary_text
from ..run import jobs
from ..run.findings import check_outputs, findings_file, verify_text
from ..run.jobs import (
    ImportJob,
    default_observer,
    job_text,
    quiet_line,
    refuse_overwriting_inputs,
    retry_selection,
)
from ..run.verify import Verifier
from ..settings.resolve import Settings
from . import logs, streams
from .arguments import plan_of, setup_logging
from .scan import scanned_manifest
from .stopping import until_signalled

if TYPE_CHECKING:
    from ..observe.metrics import MetricsObserver

log = logging.getLogger("importer.cli")


def cmd_run(args: argparse.Namespace, upload: bool) -> int:
    upload = upload and not getattr(args, "dry_run", False)
    manifest = (scanned_manifest(args) if upload else None) or args.manifest
    chosen = plan_of(args, manifest, reads=True)
    settings = chosen.settings
    setup_logging(settings, args.verbose)
    if args.skip_duplicate_audio:
        log.warning("--skip-duplicate-audio is the default now (audio already imported is not "
                    "sent again) and does nothing; --send-same-audio sends such rows")
    if getattr(args, "explain_mapping", False):
        for manifest in chosen.manifests:
            print(logs.shown(explained(manifest, settings)) + "\n", flush=True)
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
    chosen = plan_of(args)
    settings = chosen.settings
    setup_logging(settings, args.verbose)
    if settings.ledger is None:
        raise UsageError("retry needs a LEDGER (or --job FILE naming one)")
    metrics = _metrics(settings)
    job = ImportJob(settings, (), observer=_observer(settings, metrics),
                    retry=retry_selection(args.status, args.include_rejected, args.since),
                    on_summary=None if settings.quiet else lambda summary: print(
                        logs.shown(summary_text(summary))))
    refuse_overwriting_inputs(job, [("the job file", args.job)])
    return _execute(job, settings, metrics)


def explained(path: Path, settings: Settings) -> str:
    """``validate --explain-mapping``'s account of how ``path`` is read (``manifest/explain``)."""
    s = settings
    manifest = open_manifest(path, column_map=s.column_map, defaults=s.defaults, sheet=s.sheet,
                             encoding=s.encoding, min_age=s.min_age)
    try:
        return explain(manifest, s.value_map, manifest.samples())
    finally:
        manifest.close()


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
    served = metrics.serve(settings.metrics_host, settings.metrics_port,
                           settings.metrics_linger) \
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


def cmd_verify(args: argparse.Namespace) -> int:
    chosen = plan_of(args)
    settings = chosen.settings
    setup_logging(settings, args.verbose)
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
