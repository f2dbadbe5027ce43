"""One writer per ledger: a run or retry holds ``LEDGER.lock`` for as long as it writes.

Two runs on one ledger would each read a row as ``pending`` and each send it. SQLite's own
locks serialize transactions, not runs, so the run holds an advisory lock of its own for its
whole life: ``flock`` on a file beside the ledger (not on the ledger itself: a POSIX lock on a
file SQLite also has open would be dropped when either closes it). The kernel releases it when
the process ends, however it ends (``kill -9``, a power cut), so a holder that died never locks
the ledger for good. The lock file says who holds it (pid, host, since when, what command), so
that the run refused can name the holder; it stays on disk between runs (removing it would let
two runs lock two different files of the same name).

``report`` takes no lock: it reads through SQLite's WAL, beside a writer, without blocking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import LedgerBusy, LedgerError

#: How often a run that waits for the ledger (``--wait-for-ledger``) tries again.
POLL_SECONDS = 0.5
#: Reads of a lock file found empty (its holder about to write it), 10 ms apart.
HOLDER_READS = 20

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; one run per ledger is on the user
    fcntl = None  # type: ignore[assignment]


def lock_path(ledger: Path) -> Path:
    """The lock file of a ledger, by its resolved path: a symlink to the ledger is the same
    ledger, and locks the same file."""
    real = ledger.resolve()
    return real.with_name(real.name + ".lock")


class LedgerLock:
    """The exclusive right to write one ledger, for one process at a time."""

    def __init__(self, ledger: Path) -> None:
        self.ledger = ledger
        self.path = lock_path(ledger)
        self._fd: int | None = None

    def try_acquire(self, command: str) -> dict[str, Any] | None:
        """Take the lock and say so in the file; or, when another process holds it, what the
        file says of that holder (the lock is not taken)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LedgerError(f"{self.ledger}: cannot create its lock file {self.path} "
                              f"({exc.strerror}); a run needs to write beside its ledger") \
                from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd)
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    return holder
                raise LedgerError(f"{self.ledger}: cannot lock {self.path} "
                                  f"({exc.strerror})") from None
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.now(UTC).isoformat(timespec="seconds"), "command": command}
        with contextlib.suppress(OSError):  # who holds it is a courtesy; the lock is the flock
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self._fd = fd
        return None

    async def acquire(self, command: str, wait: float | None = 0.0,
                      on_wait: Callable[[str], None] | None = None) -> None:
        """Take the lock, or raise ``LedgerBusy`` naming the holder. ``wait``: seconds to keep
        trying (None: as long as it takes), telling ``on_wait`` once who is waited for."""
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        told = False
        # In a thread: a holder that has not yet said who it is is waited for (_read_holder).
        while (holder := await asyncio.to_thread(self.try_acquire, command)) is not None:
            if deadline is not None and loop.time() >= deadline:
                raise LedgerBusy(self.ledger, describe(holder), waited=bool(wait))
            if not told and on_wait is not None:
                on_wait(f"waiting for the ledger {self.ledger}, in use by {describe(holder)}")
                told = True
            await asyncio.sleep(POLL_SECONDS)

    def remove_if_free(self) -> bool:
        """Remove the lock file when no process holds it (taken, unlinked, dropped): for the
        demo, which leaves nothing behind it does not need. A run keeps its lock file, since
        another process may be about to open it."""
        if self.try_acquire("cleanup") is not None:
            return False
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        finally:
            self.release()
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _read_holder(fd: int) -> dict[str, Any]:
    """What the lock file says of its holder. A holder writes it just after it takes the lock,
    so one that has only just taken it gets a moment to say who it is."""
    for _ in range(HOLDER_READS):
        try:
            data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            data = {}
        if isinstance(data, dict) and data:
            return data
        time.sleep(0.01)
    return {}


def describe(holder: dict[str, Any]) -> str:
    """``pid 4242 on host db-1 since 2026-12-01T05:00:00+00:00 (run calls.csv)``, from what
    the lock file says (a holder that had not yet written it is "another process")."""
    if "pid" not in holder:
        return "another process"
    text = f"pid {holder['pid']} on host {holder.get('host', '?')}"
    if holder.get("since"):
        text += f" since {holder['since']}"
    if holder.get("command"):
        text += f" ({holder['command']})"
    return text
