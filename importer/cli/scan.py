"""The scan command (a folder or an ``s3://`` prefix into a manifest), and ``run SOURCE
--template T``, which scans into a manifest kept beside the ledger and runs it."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..errors import UsageError
from ..manifest.templates import compile_template
from ..reports.outputs import refuse_overwrites
from ..run.scanning import ScanResult, scan, since_of
from ..settings.resolve import Settings
from . import logs
from .arguments import settings_of, setup_logging


def cmd_scan(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    setup_logging(settings, args.verbose)
    result = _scan(settings, _source(args.source), args.output)
    print(logs.shown(result.text()))
    return 1 if result.unmatched else 0


def scanned_manifest(args: argparse.Namespace) -> Path | None:
    """For ``run SOURCE --template T``: the manifest scanned from SOURCE (beside the ledger,
    ``LEDGER.scan.csv``, replaced each time), or None when no template is given."""
    settings = settings_of(args)
    if not settings.template or args.manifest is None:
        return None
    if settings.ledger is None:
        raise UsageError("run SOURCE --template needs --ledger FILE: a scanned folder or "
                         "prefix has no manifest of its own to keep the ledger beside")
    setup_logging(settings, args.verbose)
    output = settings.ledger.with_name(settings.ledger.name + ".scan.csv")
    result = _scan(settings, _source(args.manifest), output)
    print(logs.shown(result.text()), file=sys.stderr)
    return output


def _scan(settings: Settings, source: str, output: Path) -> ScanResult:
    if not settings.template:
        raise UsageError("scan needs --template T: a preset (asterisk, connect) or a template "
                         "such as '{caller_id}-{call_date:%Y%m%d-%H%M%S}-{external_id}.wav'")
    try:
        template = compile_template(settings.template)
    except ValueError as exc:
        raise UsageError(f"--template: {exc}") from None
    refuse_overwrites({"--output": output}, [("the ledger", settings.ledger)])
    result = scan(source, template, output, settings.defaults,
                  since_of(settings.scan_since, source, output))
    for name in result.shown:
        print(logs.shown(f"does not fit the template: {name}"), file=sys.stderr)
    return result


def _source(given: Path | str) -> str:
    """The SOURCE as typed: a parsed path folds ``s3://`` into ``s3:/``; undone here."""
    text = str(given)
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*):/(?!/)", r"\1://", text)
