"""``scan``: a folder or an ``s3://`` prefix of recordings turned into a manifest, each row's
call facts read from its file's name by a template (``manifest.templates``), ``--set`` defaults
beside them. A name that does not fit is listed (in ``OUTPUT.unmatched.txt`` and the first
few on stderr), never guessed at. ``--since`` (a time, an age such as ``26h``, or ``last``:
the newest file the previous scan into the same output saw, kept in ``OUTPUT.mark``) lists
only what is new in a growing tree; what the ledger already holds is passed over by the run
anyway, so a file seen twice is still imported once.

The listing is streamed into the manifest, so memory stays flat however many files there are.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from ..errors import AudioError, MachineError, ManifestError, UsageError
from ..manifest.templates import Template
from ..reports.outputs import atomic_text
from ..settings.units import parse_duration
from ..sources.listing import Listed, list_folder, list_objects, prefix_url
from ..sources.locations import is_object_url
from ..sources.objects import ObjectStore

log = logging.getLogger("importer.scan")

#: Names that did not fit, said on stderr (all of them are in the unmatched file).
SHOWN = 20


@dataclass
class ScanResult:
    """What a scan found: files listed, rows written, names that did not fit, the newest
    modification time seen (the next ``--since last``)."""

    output: Path
    listed: int = 0
    rows: int = 0
    unmatched: int = 0
    newest: float | None = None
    shown: list[str] = field(default_factory=list)

    def text(self) -> str:
        line = f"{self.listed:,} files listed: {self.rows:,} rows written to {self.output}"
        if self.unmatched:
            line += (f"; {self.unmatched:,} did not fit the template (listed in "
                     f"{unmatched_path(self.output)})")
        return line


def unmatched_path(output: Path) -> Path:
    return output.with_name(output.name + ".unmatched.txt")


def mark_path(output: Path) -> Path:
    return output.with_name(output.name + ".mark")


def since_of(text: str | None, source: str, output: Path, now: float | None = None) -> float | None:
    """``--since`` as epoch seconds: an ISO 8601 time (UTC unless it says), an age (``26h``:
    that long before now), or ``last`` (the previous scan's mark; everything when none)."""
    if not text:
        return None
    if text == "last":
        try:
            mark = json.loads(mark_path(output).read_text())
        except (OSError, ValueError):
            return None
        if mark.get("source") != source:
            raise UsageError(f"--since last: {mark_path(output)} is the mark of "
                             f"{mark.get('source')}, not of {source}")
        return float(mark["newest"]) if mark.get("newest") is not None else None
    try:
        when = datetime.fromisoformat(text)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    except ValueError:
        pass
    try:
        return (time.time() if now is None else now) - parse_duration(text)
    except ValueError:
        raise UsageError(f"--since {text}: expected a time (2025-03-04T02:00), an age (26h) "
                         "or last") from None


def scan(source: str, template: Template, output: Path, defaults: Mapping[str, str],
         since: float | None = None) -> ScanResult:
    """Write the manifest of ``source`` to ``output`` (replaced whole), and its mark."""
    result = ScanResult(output)
    columns = ["recording_file", *(f if f != "direction" else "is_outbound"
                                   for f in template.fields)]
    columns += [name for name in defaults if name not in columns]
    with atomic_text(output) as out, atomic_text(unmatched_path(output)) as missed:
        writer = csv.DictWriter(out, columns)
        writer.writeheader()
        asyncio.run(_write(source, template, since, defaults, writer, missed, result))
    if not result.unmatched:
        unmatched_path(output).unlink(missing_ok=True)
    with atomic_text(mark_path(output)) as mark:
        json.dump({"source": source, "newest": result.newest}, mark)
    return result


async def _write(source: str, template: Template, since: float | None,
                 defaults: Mapping[str, str], writer: csv.DictWriter[str], missed: TextIO,
                 result: ScanResult) -> None:
    async for item in _listing(source, since):
        result.listed += 1
        result.newest = item.modified if result.newest is None else \
            max(result.newest, item.modified)
        fields = template.match(item.relative) if item.is_audio else None
        if fields is None:
            result.unmatched += 1
            missed.write(item.location + "\n")
            if len(result.shown) < SHOWN:
                result.shown.append(item.relative)
            continue
        writer.writerow({**defaults, **fields, "recording_file": item.location})
        result.rows += 1


async def _listing(source: str, since: float | None) -> AsyncIterator[Listed]:
    """The files of a folder or a prefix; a listing that fails is one line for the scan."""
    if not is_object_url(source):
        folder = Path(source)
        if not folder.is_dir():
            raise ManifestError(source, "no such folder to scan")
        for item in list_folder(folder, since):
            yield item
        return
    try:
        prefix = prefix_url(source)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    store = ObjectStore()
    try:
        async for item in list_objects(store, prefix, since):
            yield item
    except (AudioError, MachineError) as exc:  # refused credentials stay themselves (exit 3)
        raise ManifestError(source, f"cannot list it: {exc.reason}") from None
    finally:
        await store.close()
