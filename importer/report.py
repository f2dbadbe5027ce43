"""Summaries and exports of runs and ledgers, for people (text, tables) and machines (CSV,
JSON). Rows are streamed from the ledger, so a report of millions of rows stays small in memory.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterable
from dataclasses import asdict, fields
from typing import Literal, TextIO

from .events import RunSummary
from .ledger import Ledger, LedgerRow, Status

Format = Literal["summary", "table", "csv", "json"]
ROW_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LedgerRow))
TABLE_COLUMNS: tuple[str, ...] = ("row_number", "status", "key", "source", "attempts", "error")
#: A spreadsheet treats a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def summary_text(summary: RunSummary) -> str:
    """The end-of-run account, a few lines for the terminal or the cron mail."""
    c = summary.counts
    seconds = summary.elapsed
    done = c["succeeded"]
    lines = []
    if summary.rows and summary.rows == c["skipped"]:
        lines.append(f"Nothing to upload: all {summary.rows} rows were already done "
                     f"(ledger {summary.ledger}).")
    else:
        parts = [f"{n} {name}" for name, n in sorted(c.items()) if n and name != "retries"]
        lines.append(f"{summary.rows} rows in {seconds:.1f}s: {', '.join(parts) or 'none'}.")
    if done and seconds > 0:
        lines.append(f"Uploaded {done} recordings, {summary.bytes_sent / 1e6:.1f} MB, "
                     f"{done / seconds:.1f} files/s.")
    if c["retries"]:
        lines.append(f"{c['retries']} attempts were retried.")
    if summary.errors:
        lines.append("Top errors:")
        lines.extend(f"  {n:>6}  {reason}" for reason, n in summary.errors.most_common(5))
    if summary.stopped:
        lines.append(f"Stopped early: {summary.stopped}. Run the same command again to go on.")
    if summary.ledger:
        lines.append(f"Ledger: {summary.ledger}")
    return "\n".join(lines)


def counts_text(ledger: Ledger) -> str:
    counts = ledger.counts()
    width = max(len(s.value) for s in Status)
    total = sum(counts.values())
    lines = [f"{s.value:<{width}}  {counts[s]:>8}" for s in Status]
    lines.append(f"{'total':<{width}}  {total:>8}")
    return "\n".join(lines)


def safe_cell(value: object) -> object:
    """A value that Excel will show as text, never run as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_rows(rows: Iterable[LedgerRow], fmt: Format, out: TextIO) -> int:
    """Write every row in ``fmt`` (table, csv or json); returns how many were written."""
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(ROW_COLUMNS)
        count = 0
        for row in rows:
            writer.writerow([safe_cell(v) for v in asdict(row).values()])
            count += 1
        return count
    if fmt == "json":
        out.write("[")
        count = 0
        for row in rows:
            out.write((",\n  " if count else "\n  ") + json.dumps(asdict(row)))
            count += 1
        out.write("\n]\n" if count else "]\n")
        return count
    return _write_table(rows, out)


def _write_table(rows: Iterable[LedgerRow], out: TextIO) -> int:
    width = max(80, shutil.get_terminal_size((100, 24)).columns)
    fixed = {"row_number": 6, "status": 9, "attempts": 4}
    flexible = width - sum(fixed.values()) - 2 * (len(TABLE_COLUMNS) - 1)
    sizes = {"key": flexible * 3 // 10, "source": flexible * 3 // 10}
    sizes["error"] = flexible - sizes["key"] - sizes["source"]
    sizes.update(fixed)
    header = {"row_number": "row", "attempts": "try"}

    def line(cells: dict[str, str]) -> str:
        return "  ".join(_fit(cells[c], sizes[c]) for c in TABLE_COLUMNS).rstrip()

    out.write(line({c: header.get(c, c) for c in TABLE_COLUMNS}) + "\n")
    count = 0
    for row in rows:
        data = asdict(row)
        out.write(line({c: "" if data[c] is None else str(data[c]) for c in TABLE_COLUMNS}) + "\n")
        count += 1
    return count


def _fit(text: str, size: int) -> str:
    text = text.replace("\n", " ")
    return text.ljust(size) if len(text) <= size else text[: size - 1] + "…"
