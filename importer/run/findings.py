"""What ``verify`` found, told: each row's call present once, missing, doubled, unverifiable
or unchecked (``CallVerdict``), the discrepancies (``Finding``), the result with its exit code,
the ``--output`` CSV written as they are found, and the closing account with what to do next.
"""

from __future__ import annotations

import contextlib
import csv
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from ..events import StopReason
from ..reports.exports import safe_cell
from ..reports.outputs import atomic_text, ledger_inputs, refuse_overwrites


class CallVerdict(StrEnum):
    """What verify found of the call a ledger row stands for."""

    PRESENT = "present"            # found once: good
    MISSING = "missing"            # not found
    DUPLICATED = "duplicated"      # found more than once: a duplicate in Convirza
    UNVERIFIABLE = "unverifiable"  # no external_id to look for
    UNCHECKED = "unchecked"        # the lookup failed (the API's error is in ``detail``)


@dataclass(frozen=True)
class Finding:
    """One ledger row whose call is not in Convirza exactly once, or cannot be looked for."""

    verdict: CallVerdict
    ledger: str
    manifest: str | None
    row_number: int | None
    key: str
    external_id: str | None
    same_as: str | None
    group_id: str | None
    found: int | None
    call_ids: str
    detail: str = ""


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify`` found: ledger rows and calls by verdict, the requests it took, the
    discrepancies (the first ``KEEP``), and why it stopped early, if it did."""

    ledgers: tuple[Path, ...]
    rows: Mapping[str, int]
    calls: Mapping[str, int]
    requests: int
    findings: tuple[Finding, ...]
    elapsed: float
    stop_reason: StopReason | None = None
    stopped: str | None = None
    #: ``--requeue-missing``: rows put back to pending, by ledger (``retry`` sends them).
    requeued: Mapping[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 when every row that can be verified is in Convirza exactly once (rows without an
        external_id do not count against it), 1 otherwise, or the stop's own code."""
        if self.stop_reason is not None:
            return self.stop_reason.exit_code
        bad = (CallVerdict.MISSING, CallVerdict.DUPLICATED, CallVerdict.UNCHECKED)
        return 1 if any(self.rows.get(v, 0) for v in bad) else 0

    def as_dict(self) -> dict[str, Any]:
        return {"ledgers": [str(p) for p in self.ledgers], "rows": dict(self.rows),
                "calls": dict(self.calls), "requests": self.requests,
                "elapsed_seconds": round(self.elapsed, 3), "exit_code": self.exit_code,
                "stop_reason": self.stop_reason.name.lower() if self.stop_reason else None,
                "stopped": self.stopped, "requeued": dict(self.requeued)}


FINDING_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Finding))


class FindingsCsv:
    """``verify --output``: the discrepancies as CSV, one line per ledger row, safe to open in
    Excel (a BOM, formula-like cells quoted), written as they are found."""

    def __init__(self, out: TextIO) -> None:
        self._writer = csv.writer(out)
        self._writer.writerow(FINDING_COLUMNS)
        self.count = 0

    @classmethod
    @contextlib.contextmanager
    def create(cls, path: Path) -> Iterator[FindingsCsv]:
        """Written through a temporary file: a verify that fails or is aborted leaves the
        previous file whole (one stopped by a first Ctrl-C writes what it found)."""
        with atomic_text(path, encoding="utf-8-sig") as handle:
            yield cls(handle)

    def write(self, finding: Finding) -> None:
        self._writer.writerow([safe_cell("" if v is None else v) for v in astuple(finding)])
        self.count += 1


@contextlib.contextmanager
def findings_file(path: Path | None) -> Iterator[FindingsCsv | None]:
    """``--output``'s writer, or None when no file was asked for."""
    if path is None:
        yield None
        return
    with FindingsCsv.create(path) as out:
        yield out


def check_outputs(output: Path | None, ledgers: Sequence[Path], job: Path | None) -> None:
    """Refuse, before any request, an ``--output`` that is one of the inputs: a ledger or its
    companions, or the job file."""
    refuse_overwrites({"--output": output},
                      [found for path in ledgers for found in ledger_inputs(path)]
                      + [("the job file", job)])


def _next_steps(result: VerifyResult) -> list[str]:
    """What to do about what was found, with the commands that do it."""
    lines = []
    ledgers = " ".join(str(p) for p in result.ledgers)
    for ledger, n in result.requeued.items():
        lines.append(f"{n} row{'s' if n != 1 else ''} put back to pending: "
                     f"`convirza-import retry {ledger}` sends {'them' if n != 1 else 'it'}.")
    missing = result.rows.get(CallVerdict.MISSING, 0)
    if missing and not result.requeued:
        lines.append(f"Missing calls: `convirza-import verify {ledgers} --requeue-missing` puts "
                     f"their {missing} rows back to pending; then `convirza-import retry "
                     f"LEDGER` sends them." if len(result.ledgers) > 1 else
                     f"Missing calls: `convirza-import verify {ledgers} --requeue-missing` puts "
                     f"their {missing} rows back to pending; then `convirza-import retry "
                     f"{ledgers}` sends them.")
    removals: list[str] = []
    for finding in result.findings:
        if finding.verdict is CallVerdict.DUPLICATED and finding.call_ids:
            ids = sorted(int(i) for i in finding.call_ids.split())
            removals.extend(f"remove call {i} (external_id {finding.external_id}; keep "
                            f"{ids[0]})" for i in ids[1:])
    if removals:
        lines.append("Duplicates in Convirza: keep one call of each (the oldest here) and remove "
                     "the others:")
        lines.extend(f"  {line}" for line in dict.fromkeys(removals))
    return lines


def verify_text(result: VerifyResult, *, shown: int = 10) -> str:
    """The end-of-verify account, with the first ``shown`` discrepancies."""
    rows, calls = Counter(result.rows), Counter(result.calls)
    looked = sum(calls.values())
    lines = [f"Verified {sum(rows.values()) - rows[CallVerdict.UNVERIFIABLE]} succeeded rows "
             f"({looked} calls) in {result.elapsed:.1f}s with {result.requests} requests: "
             f"{calls[CallVerdict.PRESENT]} calls present once, "
             f"{calls[CallVerdict.MISSING]} missing, "
             f"{calls[CallVerdict.DUPLICATED]} present more than once (duplicates in Convirza)"
             + (f", {calls[CallVerdict.UNCHECKED]} not checked (the lookup failed)"
                if calls[CallVerdict.UNCHECKED] else "") + "."]
    if rows[CallVerdict.UNVERIFIABLE]:
        lines.append(f"{rows[CallVerdict.UNVERIFIABLE]} rows are unverifiable (imported without an "
                     "external_id): they do not count against the result.")
    else:
        lines.append("No row is unverifiable: every succeeded row has an external_id.")
    problems = [f for f in result.findings if f.verdict is not CallVerdict.UNVERIFIABLE]
    for finding in problems[:shown]:
        where = f"row {finding.row_number} of {finding.manifest}" if finding.manifest else \
            finding.key
        extra = f" (calls {finding.call_ids})" if finding.call_ids else ""
        lines.append(f"  {finding.verdict.value:<10} {where}: external_id "
                     f"{finding.external_id}{extra}")
    if len(problems) > shown:
        lines.append("  ... and more: --output FILE writes every one")
    lines.extend(_next_steps(result))
    if result.stopped:
        lines.append(f"Stopped early: {result.stopped}; rows not looked up are not counted.")
    return "\n".join(lines)
