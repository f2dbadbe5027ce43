"""What the ledger knows of a row's file: its size and mtime when it was last probed, and its
sha256 then. While size and mtime are unchanged, the sha256 is taken as known: a resumed run
does not hash again what it hashed before, and a file changed since it was imported is told
apart from one merely touched. Read (``queries``), decided on (``admission``) and kept
(``store``) by the ledger; the run checks a file against them.
"""

from __future__ import annotations

from typing import NamedTuple


class FileFacts(NamedTuple):
    """A file as last probed: when its size and mtime are still these, so is its sha256."""

    size: int
    mtime_ns: int
    sha256: str


def facts(size: int | None, mtime_ns: int | None, sha256: str | None) -> FileFacts | None:
    """The facts of a file as the ledger's columns hold them, or None when a probe has not
    filled them all."""
    if size is None or mtime_ns is None or sha256 is None:
        return None
    return FileFacts(size, mtime_ns, sha256)
