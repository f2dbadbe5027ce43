"""The command line's entry: the table of commands and the one mapping of what happened to
an exit code. Each command parses, builds ``Settings``, calls one library function and returns
its code; they live with their kind: ``running`` (run, validate, retry, verify), ``report``,
``config``, ``lookup``, ``demo`` (demo and sandbox).

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
import sys
from collections.abc import Callable, Sequence

from ..errors import ImporterError
from ..events import stop_reason_for
from ..settings.resolve import environment_secrets
from . import logs, streams
from .config import cmd_config
from .demo import cmd_demo, cmd_sandbox
from .lookup import cmd_lookup
from .parser import build_parser
from .report import cmd_report
from .running import cmd_retry, cmd_run, cmd_verify
from .scan import cmd_scan


def exit_code_for(exc: BaseException) -> int:
    """The exit code of an error (see the module docstring; ``events.stop_reason_for`` holds
    the one mapping)."""
    reason = stop_reason_for(exc)
    return reason.exit_code if reason is not None else 1


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
    "scan": cmd_scan,
}


#: The commands whose output is a by-product of their work: a reader that exits, a full disk
#: or a closed terminal must not stop them (``streams``); for the others (report, lookup,
#: config) the output is the work, and a reader that exits early took what it wanted.
WORKING = frozenset({"run", "validate", "retry", "verify", "demo", "sandbox", "scan"})


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
