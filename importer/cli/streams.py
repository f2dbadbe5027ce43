"""The command line's standard streams and outputs, made so that nothing that happens to them
ends the work, and what was lost is said.

What a run prints is a by-product of its work (the ledger is the record), and ordinary things
happen to it: the reader exits (``run --job nightly.toml | head -1``), the disk is full
(``> /dev/full``), the stream was never there (``2>&-``, a daemon's closed descriptors), the
terminal cannot show a file's name (``PYTHONIOENCODING=ascii``), the terminal is closed under
the run (EIO). None of them may stop an import half-way or end it with a traceback, and none
may pass unsaid. ``prepare`` makes the streams safe for one command (``restore`` puts them
back); ``keep_going`` makes standard output one that never raises, for the commands whose
output is not their work; ``lose`` says once, on stderr, that standard output is gone;
``settle`` turns a lost output (also ``--summary-json``: ``lost_output``) into the exit code
``OUTPUT_LOST`` of a command that otherwise succeeded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from ..events import OUTPUT_LOST

__all__ = ["OUTPUT_LOST", "keep_going", "lose", "lost", "lost_output", "prepare", "restore",
           "settle", "silence_stdout"]

log = logging.getLogger("importer.cli")

#: What could not be written in this command ("standard output (Broken pipe)",
#: "--summary-json"); reset by ``prepare``.
_lost: list[str] = []


class _Unfailing(io.TextIOBase):
    """A text stream that passes everything to ``stream`` and never raises: the first failure
    to write or flush goes to ``on_failure`` and everything after it is dropped. Characters
    the stream cannot encode are written as escapes. Lines are flushed as they end, so that a
    failure is met where it happens, not in a later flush or at exit."""

    def __init__(self, stream: TextIO, on_failure: Callable[[BaseException], None]) -> None:
        super().__init__()
        self.stream = stream
        self._on_failure = on_failure
        self._failed = False

    def write(self, text: str) -> int:
        self._attempt(lambda: self._write(text))
        return len(text)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
        except UnicodeEncodeError:
            self.stream.write(text.encode("ascii", "backslashreplace").decode("ascii"))
        if "\n" in text:
            self.stream.flush()

    def flush(self) -> None:
        self._attempt(self.stream.flush)

    def _attempt(self, action: Callable[[], object]) -> None:
        if self._failed:
            return
        try:
            action()
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            self._failed = True
            self._on_failure(exc)

    def isatty(self) -> bool:
        with contextlib.suppress(OSError, ValueError):
            return self.stream.isatty()
        return False

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", None) or "utf-8"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def prepare() -> tuple[TextIO | None, TextIO | None]:
    """Make the standard streams safe for one command, and return them as they were (for
    ``restore``). A closed descriptor 0, 1 or 2 is opened on the null device (else the next
    file opened, the ledger's lock or a manifest, would take its number, and what is printed
    or logged would be written into it); characters the streams cannot encode are written as
    escapes (``\\xe9``), not raised as ``UnicodeEncodeError``; stderr never raises (an error
    line to a stderr that is closed or full has nowhere else to go)."""
    _lost.clear()
    saved = (sys.stdout, sys.stderr)
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    sys.stdout = sys.stdout if sys.stdout is not None else _text_stream(1)
    sys.stderr = sys.stderr if sys.stderr is not None else _text_stream(2)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")
    sys.stderr = _Unfailing(sys.stderr, lambda exc: None)
    return saved


def _text_stream(fd: int) -> TextIO:
    """A text stream on descriptor ``fd``, for the whole process (never closed)."""
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), errors="backslashreplace",
                            line_buffering=True)


def restore(saved: tuple[TextIO | None, TextIO | None]) -> None:
    """The standard streams as they were before ``prepare`` (for a caller of ``main`` in the
    same process: a test, a wrapper script)."""
    sys.stdout, sys.stderr = saved


def keep_going() -> None:
    """Standard output that never raises: a failure to write it is said once (``lose``) and
    what follows is dropped, while the command goes on."""
    if not isinstance(sys.stdout, _Unfailing):
        sys.stdout = _Unfailing(sys.stdout, lose)


def lose(exc: BaseException) -> None:
    """Standard output cannot be written (``exc``): say so once on stderr, and stop writing
    to it (``silence_stdout``)."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else \
        str(exc) or type(exc).__name__
    lost_output(f"standard output ({reason})")
    silence_stdout()
    log.warning("standard output cannot be written (%s): what this command prints from "
                "here on is dropped, not its work; the exit code will say so (%d, unless "
                "another says more)", reason, OUTPUT_LOST)


def lost_output(what: str) -> None:
    """``what`` (an output the command was asked for) could not be written: the exit code
    will say so (``settle``). Saying it is the caller's."""
    _lost.append(what)


def lost() -> list[str]:
    """The outputs this command could not write."""
    return list(_lost)


def silence_stdout() -> None:
    """Point descriptor 1 at the null device: what is still buffered for a stream that
    failed, and the interpreter's last flush, then go nowhere instead of failing again. (Not
    every stream has a descriptor: a test's capture has none, and needs none.)"""
    stream = sys.stdout.stream if isinstance(sys.stdout, _Unfailing) else sys.stdout
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)


def settle(code: int) -> int:
    """The command's exit code, once what it printed is flushed: ``OUTPUT_LOST`` for a
    command that otherwise succeeded (0) but could not write an output; any other code
    stands, being the weightier news. A reader that left (a broken pipe) at this last flush
    took what it wanted: the code stands."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    except (OSError, ValueError) as exc:
        lose(exc)
    return OUTPUT_LOST if _lost and code == 0 else code
