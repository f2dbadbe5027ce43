"""A manifest's file opened warily, and what a failure to read it says.

Every read of a manifest (the sample, the rows, the encoding checks, a workbook) opens its
file here: never blocking, so that a FIFO put in place of a file does not hang the run, and
never inherited by the reader process or anything else started; a path that is not a regular
file is refused on what was really opened, not only on what ``stat`` said before.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ManifestError
from ..settings.userfiles import file_kind

#: Opening never blocks (a FIFO named calls.csv would wait for a writer for ever) and the
#: descriptor is not inherited by the reader process or anything else we start.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
    | getattr(os, "O_BINARY", 0)


def open_fd(path: Path) -> int:
    """A descriptor on ``path``, which must be a regular file (``ManifestError`` if not).

    ``open_manifest`` stat-ed the path already; this is the second guard, on what was really
    opened: non-blocking, so that a FIFO put in its place does not hang us."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        kind = file_kind(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    if kind is not None:
        os.close(fd)
        raise ManifestError(str(path), f"is {kind}, not a regular file")
    return fd


def read_failure(exc: BaseException, encoding: str) -> str:
    """Why reading the manifest failed, in one line for the user: the system's words for an
    ``OSError``, else what the csv module found malformed."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"not a well-formed CSV ({str(exc).strip()})"
