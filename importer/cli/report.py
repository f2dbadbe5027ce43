"""``report LEDGER``: the ledger as a summary, a table, CSV, JSON, or one HTML page (its
modules imported only when asked for)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
from typing import cast

from ..errors import UsageError
from ..ledger.states import Status
from ..ledger.store import Ledger
from ..reports.exports import Format, write_rows
from ..reports.outputs import ledger_inputs, refuse_overwrites
from ..reports.summaries import ledger_summary, summary_report_text
from .output import output


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
    with contextlib.ExitStack() as opened:  # each opened is closed, if a later one fails too
        ledgers = [opened.enter_context(contextlib.closing(Ledger.open_readonly(path)))
                   for path in args.ledgers]
        if fmt == "html":
            from ..ledger.stats import collect
            from ..reports.html_page import render

            page = render(collect(args.ledgers))
            with output(args.output) as out:
                out.write(page)
            return 0
        with output(args.output, for_people=fmt in ("table", "summary")) as out:
            if args.summary or fmt == "summary":
                summary = ledger_summary(ledgers)
                out.write(json.dumps(summary, indent=2) + "\n" if fmt == "json"
                          else summary_report_text(summary) + "\n")
            else:
                statuses = [Status(s) for s in args.status]
                rows = itertools.chain.from_iterable(
                    ledger.rows(statuses, args.run) for ledger in ledgers)
                write_rows(rows, cast(Format, fmt), out, wide=args.wide)
    return 0
