"""Where a command whose output is the work (report, lookup, config) writes it: standard
output with secrets blanked and terminal controls escaped, or a file replaced whole or not at
all."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO, cast

from ..reports.outputs import atomic_text
from . import logs, streams


@contextlib.contextmanager
def output(path: Path | None, *, for_people: bool = False) -> Iterator[TextIO]:
    """Standard output, or ``path`` written through a temporary file: a report cut short (a
    full disk, an API error half-way through a lookup) leaves the previous file whole.

    Whatever is written has our secrets blanked (a ledger written before they were, or an
    API that echoes them); text for people (a table), or anything bound for a terminal, also
    has the characters a terminal would act on escaped."""
    if path is None:
        terminal = for_people or sys.stdout.isatty()
        try:
            yield cast(TextIO, _Cleaning(sys.stdout, logs.shown if terminal else logs.scrubbed))
            sys.stdout.flush()
        except BrokenPipeError:
            raise  # the reader took what it wanted (`report ... | head`): see main
        except OSError as exc:  # a full disk, a terminal gone: said once, exit 5
            streams.lose(exc)
        return
    with atomic_text(path) as handle:
        yield cast(TextIO, _Cleaning(handle, logs.shown if for_people else logs.scrubbed))


class _Cleaning(io.TextIOBase):
    """A text stream that passes what it is given through ``clean`` on its way to ``out``."""

    def __init__(self, out: TextIO, clean: Callable[[str], str]) -> None:
        super().__init__()
        self._out = out
        self._clean = clean

    def write(self, text: str) -> int:
        self._out.write(self._clean(text))
        return len(text)

    def flush(self) -> None:
        self._out.flush()
