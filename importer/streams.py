"""The command line's standard streams, made so that nothing that happens to them ends the work.

What a command prints is a by-product of its work (the ledger is the record), and ordinary
things happen to it: the reader exits (``run --job nightly.toml | head -1``), the disk is full
(``> /dev/full``), the stream was never there (``2>&-``, a daemon's closed descriptors), the
terminal cannot show a file's name (``PYTHONIOENCODING=ascii``), the terminal is closed under
the run (EIO). None of them may stop an import half-way, end it with a traceback, or go
unsaid. ``prepare`` makes the streams safe before anything runs; ``say`` prints a line and, when
standard output fails, remembers why (``lost``), says so once on stderr and drops the rest;
``settle`` gives the exit code that says so (``OUTPUT_LOST``) to a command that otherwise
succeeded.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import sys
from typing import TextIO

from .events import OUTPUT_LOST

__all__ = ["OUTPUT_LOST", "complain", "lose", "lost", "prepare", "say", "settle",
           "silence_stdout"]

log = logging.getLogger("importer.cli")

#: Why standard output could not be written, once it could not (reset by ``prepare``).
_lost: str | None = None


def prepare() -> None:
    """Make the standard streams safe for one command: a closed descriptor 0, 1 or 2 is
    opened on the null device (else the next file opened, the ledger's lock or a manifest,
    would take its number, and what is printed or logged would be written into it), a missing
    ``sys.stdout``/``sys.stderr`` is made again on it, and characters the streams cannot
    encode are written as escapes (``\\xe9``) rather than raise ``UnicodeEncodeError``."""
    global _lost
    _lost = None
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdout is None:
        sys.stdout = _text_stream(1)
    if sys.stderr is None:
        sys.stderr = _text_stream(2)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def _text_stream(fd: int) -> TextIO:
    """A text stream on descriptor ``fd``, for the whole process (never closed)."""
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), errors="backslashreplace",
                            line_buffering=True)


def say(text: str, end: str = "\n") -> None:
    """Print ``text`` (and ``end``) to standard output at once; when that fails, the failure
    is remembered and said (``lose``), and nothing more is printed."""
    if _lost is not None:
        return
    try:
        sys.stdout.write(text + end)
        sys.stdout.flush()
    except UnicodeEncodeError:  # a stream that would not take escapes (not ours to set up)
        say(text.encode("ascii", "backslashreplace").decode("ascii"), end)
    except (OSError, ValueError) as exc:  # ValueError: the stream is closed
        lose(exc)


def lose(exc: BaseException) -> None:
    """Standard output cannot be written (``exc``): say so once on stderr, and stop writing
    to it (``silence_stdout``)."""
    global _lost
    if _lost is not None:
        return
    _lost = _reason(exc)
    silence_stdout()
    log.warning("standard output cannot be written (%s): the rest of what this command "
                "prints is dropped; the work goes on, and the exit code says so (%d, unless "
                "another says more)", _lost, OUTPUT_LOST)


def lost() -> str | None:
    """Why standard output could not be written, if it could not."""
    return _lost


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.strerror or errno.errorcode.get(exc.errno, str(exc.errno))
    return str(exc) or type(exc).__name__


def settle(code: int) -> int:
    """The command's exit code, once what it printed is flushed: ``OUTPUT_LOST`` for a
    command that otherwise succeeded (0) but could not write its output; any other code
    stands, being the weightier news. A reader that left (a broken pipe) at this last flush
    took what it wanted: the code stands."""
    if _lost is None:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()
        except (OSError, ValueError) as exc:
            lose(exc)
    return OUTPUT_LOST if _lost is not None and code == 0 else code


def silence_stdout() -> None:
    """Point descriptor 1 at the null device: what is still buffered for a stream that
    failed, and the interpreter's last flush, then go nowhere instead of failing again. (Not
    every stream has a descriptor: a test's capture has none, and needs none.)"""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = sys.stdout.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)


def complain(text: str) -> None:
    """Write an error line to stderr, if stderr can be written at all (closed or full, it
    cannot: the exit code still says what happened)."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)
