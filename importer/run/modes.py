"""What a run is for: ``run`` (upload a manifest), ``validate`` (check it, send nothing) or
``retry`` (send again what a ledger kept). Each is an object that says where rows come from,
which ledger they go through and whether anything is sent, so the engine asks the mode instead
of threading ``upload=``/``record=``/``durable=`` flags through every layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..ledger.states import Status
from ..settings.resolve import Settings


@dataclass(frozen=True)
class RetrySelection:
    """Which ledger rows ``retry`` sends again."""

    statuses: tuple[Status, ...] = (Status.FAILED, Status.PENDING)
    include_rejected: bool = False
    since: str | None = None


@dataclass(frozen=True)
class Upload:
    """``run MANIFEST``: read, check, send, and record every outcome in the ledger."""

    manifest: Path
    #: The invalid rows as a CSV to fix and feed back (``--errors-out``).
    errors_out: Path | None = None
    name: str = field(default="run", init=False)
    sends: bool = field(default=True, init=False)


@dataclass(frozen=True)
class Validate:
    """``validate MANIFEST``: everything ``run`` does before sending, with a throwaway ledger
    that decides as a run's would (duplicates included) but keeps nothing, so that what it
    calls valid is what ``run`` would send."""

    manifest: Path
    errors_out: Path | None = None
    name: str = field(default="validate", init=False)
    sends: bool = field(default=False, init=False)


@dataclass(frozen=True)
class Retry:
    """``retry LEDGER``: send again the rows ``selection`` picks (failed and pending, by
    default), from the metadata the ledger kept; no manifest needed."""

    ledger: Path
    selection: RetrySelection = RetrySelection()
    errors_out: Path | None = field(default=None, init=False)
    name: str = field(default="retry", init=False)
    sends: bool = field(default=True, init=False)


Mode = Upload | Validate | Retry


def manifest_of(mode: Mode) -> Path | None:
    return None if isinstance(mode, Retry) else mode.manifest


def ledger_path(mode: Mode, settings: Settings) -> Path:
    """The ledger a run or retry writes: ``--ledger``, else ``MANIFEST.ledger.sqlite`` beside
    the manifest. (``validate`` reads and writes a throwaway one of its own.)"""
    if isinstance(mode, Retry):
        return mode.ledger
    if settings.ledger is not None:
        return settings.ledger
    return mode.manifest.with_name(mode.manifest.name + ".ledger.sqlite")


def origin(mode: Mode, settings: Settings) -> Path:
    """What the run's rows are read from: the manifest, or the ledger a retry reads."""
    manifest = manifest_of(mode)
    return manifest if manifest is not None else ledger_path(mode, settings)
