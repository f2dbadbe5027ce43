"""A command's parsed arguments as the library takes them: the setting flags by field name,
the plan (settings, job file, manifests), and the logging a command sets up."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ..run.jobs import Plan, plan
from ..settings.resolve import DECLARED, Settings
from . import logs


def flags(args: argparse.Namespace) -> dict[str, Any]:
    """The setting flags given, by field name (those not given are None)."""
    return {d.name: getattr(args, d.name, None) for d in DECLARED}


def plan_of(args: argparse.Namespace, manifest: Path | None = None, *,
            reads: bool = False) -> Plan:
    """What the command works on (settings, manifests), from its flags and its ``--job``;
    ``reads``: the command reads manifests, so it needs one."""
    return plan(flags(args), job=getattr(args, "job", None), manifest=manifest, reads=reads)


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings alone, for a command that works on no manifest."""
    return plan_of(args).settings


def setup_logging(settings: Settings, verbose: bool) -> None:
    """Logs to stderr as the settings ask (``--quiet``, ``--log-format``), with their secrets
    blanked from every line."""
    level = logging.ERROR if settings.quiet else logging.DEBUG if verbose else logging.INFO
    logs.configure(settings.log_format, level, settings.secrets())


def settings_inputs(settings: Settings) -> list[tuple[str, Path | None]]:
    """The files settings were read from, which no output may replace."""
    return [("the columns file", settings.columns_file),
            ("the token file", settings.token_file)]
