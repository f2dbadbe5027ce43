"""Summaries and exports of runs and ledgers, for people (text, tables) and machines (CSV,
JSON). Rows are streamed from the ledger, so a report of millions of rows stays small in memory.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Literal, TextIO

from ..errors import UsageError
from ..events import PaceFound, RunSummary
from ..ledger.queries import LedgerRow
from ..ledger.states import Status
from ..ledger.store import Ledger
from ..redact import printable
from ..settings.units import duration_text
from .outputs import atomic_text

Format = Literal["summary", "table", "csv", "json"]
ROW_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LedgerRow))
TABLE_COLUMNS: tuple[str, ...] = ("row_number", "status", "key", "source", "attempts", "error")
#: A spreadsheet treats a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def summary_text(summary: RunSummary, *, reasons: int = 5) -> str:
    """The end-of-run account, a few lines for the terminal or the cron mail, with the
    ``reasons`` most common problems (``validate`` asks for more: it is there to list them)."""
    c = summary.counts
    seconds = summary.elapsed
    done = c["succeeded"]
    lines = []
    if summary.rows and summary.rows == c["skipped"]:
        lines.append(f"Nothing to upload: all {summary.rows} rows were already done "
                     f"(ledger {summary.ledger}).")
    elif summary.invalid_left is not None and not summary.rows:
        lines.append(f"Nothing to retry in {summary.ledger}" + (
            "." if summary.exit_code == 0 else ", but it is not done:"))
    else:
        parts = [f"{n} {name}" for name, n in sorted(c.items())
                 if n and name not in ("retries", "other shards")]
        lines.append(f"{summary.rows} rows in {seconds:.1f}s: {', '.join(parts) or 'none'}.")
        if c["other shards"]:
            lines[-1] += f" {c['other shards']} rows of other shards passed over."
    if done and seconds > 0:
        lines.append(f"Uploaded {done} recording{'s' if done != 1 else ''}, "
                     f"{summary.bytes_sent / 1e6:.1f} MB, "
                     f"{done / seconds:.1f} files/s.")
    if c["retries"]:
        lines.append(f"{c['retries']} attempts were retried.")
    lines.extend(_identity_text(summary))
    lines.extend(pace_text(summary.pace, summary.counts["succeeded"]))
    if summary.errors:
        lines.append("Top errors:" if reasons <= 5 else
                     "Problems by reason (a row may have several):")
        lines.extend(f"  {n:>6}  {reason}" for reason, n in summary.errors.most_common(reasons))
        if len(summary.errors) > reasons:
            lines.append(f"  ... and {len(summary.errors) - reasons} other reasons")
    if summary.invalid_left:
        lines.append(_invalid_left_text(summary.invalid_left, summary.ledger or "LEDGER"))
    lines.extend(_left_text(summary))
    if summary.stopped:
        then = "Fix the manifest, then run" if summary.exit_code == 2 else "Run"
        lines.append(f"Stopped early: {summary.stopped}. {then} the same command again to go on.")
    if summary.ledger:
        lines.append(f"Ledger: {summary.ledger}")
    return "\n".join(lines)


def _identity_text(summary: RunSummary) -> list[str]:
    """What the run found already there, or left for later: rows of calls imported before,
    rows of one call, rows sharing audio with other calls, the check before sending, rows too
    new for ``--min-age``."""
    c = summary.counts
    lines = []
    if c["already imported"]:
        lines.append(f"{c['already imported']} row{'s' if c['already imported'] != 1 else ''} "
                     "named a recording already imported under another key (the same file "
                     "unchanged, or the same call: audio, date, caller and group): not sent "
                     "again (`report --status succeeded` shows each with same_as).")
    if summary.same_audio:
        n = summary.same_audio
        lines.append(f"{n} row{'s are' if n != 1 else ' is'} the same call as another row "
                     "(the same audio, date, caller and group): " +
                     ("run sends one of them." if summary.ledger is None else
                      "sent anyway (--send-same-audio)."))
    if summary.find_existing:
        lines.append(summary.find_existing)
    if c["too new"]:
        n = c["too new"]
        age = duration_text(summary.min_age) if summary.min_age else "AGE"
        lines.append(f"{n} recording{'s' if n != 1 else ''} modified within --min-age {age} "
                     f"{'were' if n != 1 else 'was'} left for the next run.")
    if summary.shared_audio:
        n = summary.shared_audio
        lines.append(f"{n} row{'s hold' if n != 1 else ' holds'} the same audio as another "
                     "call (their date, caller, group or external_id differ): imported as "
                     "calls of their own.")
    return lines


def _left_text(summary: RunSummary) -> list[str]:
    """What a retry left for a later retry or run, each with the command that sends it."""
    ledger = summary.ledger or "LEDGER"
    lines = []
    if summary.pending_left and summary.stop_reason is None:
        n = summary.pending_left
        lines.append(f"{n} row{'s are' if n != 1 else ' is'} still pending (not picked by "
                     f"--status, or not sendable yet): `convirza-import retry {ledger}` sends "
                     f"{'them' if n != 1 else 'it'}.")
    for manifest, about, why in summary.unread:
        many = f"about {about} rows" if about is not None else "rows"
        lines.append(f"{many} of {manifest} were never read (its last run {why}): "
                     f"`convirza-import run {manifest} --ledger {ledger}` sends them.")
    return lines


def _invalid_left_text(n: int, ledger: str) -> str:
    """What to do with the invalid rows a retry cannot send."""
    rows, it, they = ("row is", "it", "it") if n == 1 else ("rows are", "them", "they")
    return (f"{n} {rows} invalid: retry does not send {it}, since {they} never passed the "
            f"checks; fix {it} in the manifest and run it again with `convirza-import run "
            f"MANIFEST --ledger {ledger}` (`convirza-import report {ledger} --status invalid` "
            f"lists {it}, with what is wrong).")


def ledger_summary(ledgers: list[Ledger]) -> dict[str, Any]:
    """Counts by state, error reasons and runs of each ledger, and their total: the morning-
    after answer to "did everything arrive, and if not, why"."""
    parts = []
    total: Counter[str] = Counter()
    reasons: Counter[tuple[str, str]] = Counter()
    for ledger in ledgers:
        counts = {s.value: n for s, n in ledger.counts().items()}
        total.update(counts)
        found = ledger.reasons()
        reasons.update({(s.value, r): n for s, r, n in found})
        parts.append({
            "ledger": str(ledger.path), "counts": counts,
            "reasons": [{"status": s.value, "reason": r, "rows": n} for s, r, n in found],
            "runs": [{"run": r.id, "command": r.command, "manifest": r.manifest,
                      "started_at": r.started_at, "finished_at": r.finished_at,
                      "exit_code": r.exit_code, "counts": r.summary.get("counts", {}),
                      "reasons": r.summary.get("top_errors", {}),
                      "stopped": r.summary.get("stopped"),
                      "pace": r.summary.get("pace")} for r in ledger.runs()],
        })
    return {
        "total": {"counts": {s.value: total[s.value] for s in Status},
                  "rows": sum(total.values()),
                  "reasons": [{"status": s, "reason": r, "rows": n}
                              for (s, r), n in reasons.most_common(10)]},
        "ledgers": parts,
    }


#: A run that met this many pauses, or this share of 429s, is told the rate to ask for.
PAUSES_WORTH_A_WORD = 3
SHARE_WORTH_A_WORD = 0.02


def pace_text(pace: PaceFound | None, sent: int = 0) -> list[str]:
    """What the run learned of the API's pace, in words: where it started, what the API
    allowed, and, when the rate asked was refused often, the rate to ask for instead."""
    if pace is None:
        return []
    lines = []
    if pace.started_from is not None:
        lines.append(f"Started at the pace the API allowed on the last run of this ledger, "
                     f"about {pace.started_from:.1f} requests a second (--rate {pace.asked:g} "
                     "asked).")
    if pace.refused and pace.allowed is not None:
        n = pace.refused
        lines.append(f"The API allowed about {pace.allowed:.1f} requests a second; {n} "
                     f"answer{'s were' if n != 1 else ' was'} 429 (Too Many Requests), in "
                     f"{pace.pauses} pause{'s' if pace.pauses != 1 else ''}.")
        often = pace.pauses >= PAUSES_WORTH_A_WORD or \
            pace.refused >= SHARE_WORTH_A_WORD * (sent + pace.refused)
        if often and pace.allowed < pace.asked:
            lines.append(f"--rate {max(1, int(pace.allowed * 0.95))} would avoid them (the "
                         "ledger remembers the pace: its next run starts there).")
    return lines


def summary_report_text(summary: dict[str, Any]) -> str:
    lines: list[str] = []
    parts = summary["ledgers"]
    for part in parts:
        lines.append(f"Ledger {part['ledger']}")
        lines.extend("  " + line for line in _counts_lines(part["counts"]))
        if part["reasons"]:
            lines.append("  Reasons:")
            lines.extend(f"  {r['rows']:>8}  {r['status']:<8} {r['reason']}"
                         for r in part["reasons"][:10])
        if part["runs"]:
            lines.append("  Runs:")
            for run in part["runs"][-10:]:
                counts = ", ".join(f"{n} {k}" for k, n in sorted(run["counts"].items()) if n)
                ended = "running or killed" if run["finished_at"] is None else \
                    f"exit {run['exit_code']}"
                lines.append(f"    #{run['run']:<4} {run['command']:<8} "
                             f"{run['started_at'][:19].replace('T', ' ')}  {ended:<17} "
                             f"{counts or 'no rows'}")
                pace = PaceFound.from_dict(run.get("pace"))
                if pace is not None and pace.refused and pace.allowed is not None:
                    lines.append(f"{'':>11}the API allowed about {pace.allowed:.1f} requests "
                                 f"a second ({pace.refused} answers 429, --rate "
                                 f"{pace.asked:g} asked)")
                lines.extend(f"{'':>11}{n:>6}  {reason}"
                             for reason, n in list(run["reasons"].items())[:3])
    if len(parts) > 1:
        lines.append(f"Total over {len(parts)} ledgers")
        lines.extend("  " + line for line in _counts_lines(summary["total"]["counts"]))
        if summary["total"]["reasons"]:
            lines.append("  Reasons:")
            lines.extend(f"  {r['rows']:>8}  {r['status']:<8} {r['reason']}"
                         for r in summary["total"]["reasons"])
    return "\n".join(lines)


def _counts_lines(counts: dict[str, int]) -> list[str]:
    width = max(len(s.value) for s in Status)
    lines = [f"{s.value:<{width}}  {counts.get(s.value, 0):>8}" for s in Status]
    lines.append(f"{'total':<{width}}  {sum(counts.values()):>8}")
    return lines


def counts_text(ledger: Ledger) -> str:
    return "\n".join(_counts_lines({s.value: n for s, n in ledger.counts().items()}))


def safe_cell(value: object) -> object:
    """A value that Excel will show as text, never run as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


class InvalidRowsCsv:
    """``validate --errors-out``: the invalid rows as a CSV to fix and feed back.

    Columns: the row's number in the manifest, what is wrong with it, then the upload fields
    the manifest gives, under their own names, so that the file reads back without ``--map``.
    A recording's relative path is rewritten relative to this file's folder, so that it still
    names the same file. Every cell is made safe for Excel (``safe_cell``), and the file has a
    BOM so that Excel reads it as UTF-8. Rows are written as they are found: memory stays flat.
    """

    LEAD_COLUMNS = ("row", "errors")

    def __init__(self, out: TextIO, fields: Sequence[str], manifest_dir: Path,
                 out_dir: Path, *, path: Path | None = None) -> None:
        self._writer = csv.writer(out)
        self._fields = list(fields)
        self._manifest_dir = manifest_dir
        self._out_dir = out_dir
        self.count = 0
        self.path = path
        self._writer.writerow([*self.LEAD_COLUMNS, *self._fields])

    @classmethod
    @contextlib.contextmanager
    def create(cls, path: Path, fields: Sequence[str],
               manifest_dir: Path) -> Iterator[InvalidRowsCsv]:
        """Stream rows into ``path`` for the duration of the ``with`` block; ``path`` is
        replaced only when the block ends normally, so an aborted validate leaves the previous
        file as it was."""
        with atomic_text(path, encoding="utf-8-sig") as handle:
            yield cls(handle, fields, manifest_dir, path.resolve().parent, path=path)

    def write(self, row: int, errors: str, cells: Mapping[str, str]) -> None:
        values = dict(cells)
        source = values.get("recording_file", "").strip()
        if source and self._manifest_dir != self._out_dir:
            expanded = os.path.expanduser(source)
            if not os.path.isabs(expanded):
                absolute = os.path.abspath(os.path.join(self._manifest_dir, expanded))
                try:
                    values["recording_file"] = os.path.relpath(absolute, self._out_dir)
                except ValueError:  # another drive (Windows)
                    values["recording_file"] = absolute
        try:
            self._writer.writerow([safe_cell(v) for v in
                                   (row, errors, *(values.get(f, "") for f in self._fields))])
        except OSError as exc:
            # Raised in the middle of a run: as our own error it stops the run with one line
            # (exit 2), where a bare OSError would end it with a traceback.
            raise UsageError(f"cannot write {self.path or 'the invalid rows'}: "
                             f"{exc.strerror or exc}") from None
        self.count += 1


def write_rows(rows: Iterable[LedgerRow], fmt: Format, out: TextIO, *,
               wide: bool = False) -> int:
    """Write every row in ``fmt`` (table, csv or json); returns how many were written. A
    table wraps long cells to the terminal's width, or with ``wide`` keeps each row on one
    line, whole. Control and bidi characters (a file named ``abc<U+202E>gnp.exe.wav``) are
    shown escaped in CSV as in the table (``printable``: a spreadsheet would show them as a
    terminal does), and JSON's own way in JSON (``\\u202e``, which reads back as it was)."""
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(ROW_COLUMNS)
        count = 0
        for row in rows:
            writer.writerow([safe_cell(printable(v) if isinstance(v, str) else v)
                             for v in asdict(row).values()])
            count += 1
        return count
    if fmt == "json":  # ASCII only: every control and bidi character escaped, readable back
        out.write("[")
        count = 0
        for row in rows:
            out.write((",\n  " if count else "\n  ") + json.dumps(asdict(row)))
            count += 1
        out.write("\n]\n" if count else "]\n")
        return count
    return _write_table(rows, out, wide=wide)


def _table_widths() -> dict[str, int]:
    """The ledger table's columns sharing the terminal's width (at least 80): paths and keys
    three tenths each of what the narrow columns leave, the error the rest."""
    width = max(80, shutil.get_terminal_size((100, 24)).columns)
    fixed = {"row_number": 6, "status": 9, "attempts": 4}
    flexible = width - sum(fixed.values()) - 2 * (len(TABLE_COLUMNS) - 1)
    sizes = {"key": flexible * 3 // 10, "source": flexible * 3 // 10}
    sizes["error"] = flexible - sizes["key"] - sizes["source"]
    sizes.update(fixed)
    return sizes


def _write_table(rows: Iterable[LedgerRow], out: TextIO, *, wide: bool = False) -> int:
    """Rows as an aligned table whose long cells wrap within their column, so that a path or
    an error is read whole on a terminal of any width; ``wide``: one line a row, nothing
    wrapped (for grep, or a pager that scrolls sideways)."""
    sizes = _table_widths()
    header = {"row_number": "row", "attempts": "try"}

    def lines(cells: dict[str, str]) -> Iterator[str]:
        if wide:
            yield "  ".join(cells[c].replace("\n", " ").ljust(sizes[c])
                            for c in TABLE_COLUMNS).rstrip()
            return
        wrapped = {c: _wrap(cells[c], sizes[c]) for c in TABLE_COLUMNS}
        for i in range(max(map(len, wrapped.values()))):
            yield "  ".join((wrapped[c][i] if i < len(wrapped[c]) else "").ljust(sizes[c])
                            for c in TABLE_COLUMNS).rstrip()

    out.writelines(line + "\n" for line in lines({c: header.get(c, c) for c in TABLE_COLUMNS}))
    count = 0
    for row in rows:
        data = asdict(row)
        out.writelines(line + "\n" for line in lines(
            {c: "" if data[c] is None else str(data[c]) for c in TABLE_COLUMNS}))
        count += 1
    return count


def _wrap(text: str, size: int) -> list[str]:
    """``text`` in lines of at most ``size`` characters, broken after a space or a slash in
    the second half of a line (messages, paths), else at ``size`` (a long key or hash)."""
    text, size = " ".join(text.split()), max(size, 1)
    lines = []
    while len(text) > size:
        space, slash = text.rfind(" ", 0, size + 1), text.rfind("/", 0, size)
        if max(space, slash + 1) > size // 2:
            cut, skip = (space, 1) if space >= slash + 1 else (slash + 1, 0)
        else:
            cut, skip = size, 0
        lines.append(text[:cut])
        text = text[cut + skip:]
    return [*lines, text] if text or not lines else lines


class ObjectWriter:
    """Writes API objects as they arrive: an aligned table of ``columns``, CSV (columns of the
    first object; Excel-safe), or one JSON array of the objects exactly as the API gave them.
    Nothing is held back, so a lookup of a million calls streams."""

    def __init__(self, fmt: Format, columns: tuple[str, ...], out: TextIO) -> None:
        self.fmt = fmt
        self.columns = columns
        self.out = out
        self.count = 0
        self._csv: csv.DictWriter[str] | None = None
        self._sizes: dict[str, int] = {}

    def write(self, obj: dict[str, Any]) -> None:
        if self.fmt == "json":
            self.out.write(("[\n  " if not self.count else ",\n  ") + json.dumps(obj))
        elif self.fmt == "csv":
            if self._csv is None:
                self._csv = csv.DictWriter(self.out, fieldnames=list(obj),
                                           extrasaction="ignore")
                self._csv.writeheader()
            self._csv.writerow({k: safe_cell(_cell(v)) for k, v in obj.items()})
        else:
            if not self.count:
                self._sizes = _table_sizes(self.columns)
                self.out.write(self._line({c: c for c in self.columns}) + "\n")
            self.out.write(self._line({c: _cell(obj.get(c)) for c in self.columns}) + "\n")
        self.count += 1

    def _line(self, cells: dict[str, str]) -> str:
        return "  ".join(_fit(cells[c], self._sizes[c]) for c in self.columns).rstrip()

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.count else "[]\n")
        self.out.flush()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _table_sizes(columns: tuple[str, ...]) -> dict[str, int]:
    """Share the terminal width (at least 80) among the columns, ids narrower."""
    width = max(80, shutil.get_terminal_size((100, 24)).columns) - 2 * (len(columns) - 1)
    narrow = [c for c in columns if (c.endswith("_id") and "ext" not in c)
              or c.endswith("status")]
    sizes = {c: min(16, max(8, len(c))) for c in narrow}
    rest = [c for c in columns if c not in sizes]
    free = width - sum(sizes.values())
    for c in rest:
        sizes[c] = max(10, free // max(1, len(rest)))
    return sizes


def _fit(text: str, size: int) -> str:
    text = text.replace("\n", " ")
    return text.ljust(size) if len(text) <= size else text[: size - 1] + "…"
