"""A command stopped by a signal: the first Ctrl-C, SIGTERM or SIGHUP stops gently (uploads in
flight finish, the summary is printed), a later one aborts what is in flight. SIGHUP is a
terminal closed under a run (an ssh session dropped), or ``kill -HUP``: by default it would kill
the process between two writes, leaving the run's record without its counts. Only the command
line installs this; a scheduler that embeds the importer owns its signals."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

log = logging.getLogger("importer.cli")
T = TypeVar("T")

#: Signals closer than this to the first one are the same request to stop. ``timeout``
#: signals the program and then its whole process group, systemd every process of the unit at
#: once, a shell's Ctrl-C the whole foreground group: the copies arrive microseconds to
#: milliseconds apart, or up to some hundreds of milliseconds when a busy, shared machine
#: delays the event loop. A person who means to abort reads "stopping ..." first and then
#: presses again, which takes longer; one second separates the two with room on both sides.
#: Measured from the first signal, not the latest, so that hammering Ctrl-C still aborts.
SIGNAL_WINDOW = 1.0


#: The signals that ask a command to stop.
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stoppable(Protocol):
    def stop(self) -> None: ...


async def until_signalled(work: Stoppable, running: Awaitable[T],
                          grace: float | None = None) -> T:
    """Run; the first SIGINT/SIGTERM/SIGHUP stops gracefully, and one that comes later than
    ``SIGNAL_WINDOW`` after it aborts what is in flight. Those in between are echoes of the
    first (``timeout``, systemd), and aborting on them would leave rows ``uploading`` and no
    summary when the scheduler meant a clean stop. A gentle stop waits only for the requests
    already on the wire, and for at most ``grace`` seconds (``--stop-grace``): a scheduler
    waits that long and then kills, so past it the run aborts on its own, as a second signal
    would, with the ledger consistent."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    first: float | None = None

    def out_of_grace() -> None:
        if task is not None and not task.done():
            log.warning("uploads in flight did not end within --stop-grace %gs of the stop: "
                        "aborting; their rows stay 'uploading' and will be reconciled on the "
                        "next run", grace)
            task.cancel()

    def on_signal(signum: int) -> None:
        nonlocal first
        now = time.monotonic()
        name = signal.Signals(signum).name
        if first is None:
            first = now
            work.stop()
            if grace is not None:
                loop.call_later(grace, out_of_grace)
            log.warning("%s received; a second Ctrl-C or SIGTERM, a moment from now, aborts "
                        "what is in flight instead (uploads' rows stay 'uploading' until the "
                        "next run reconciles them)", name)
        elif now - first < SIGNAL_WINDOW:
            log.debug("%s %.3fs after the first signal: the same request to stop", name,
                      now - first)
        elif task is not None:
            log.warning("aborting: uploads in flight are left 'uploading' and will be "
                        "reconciled on the next run")
            task.cancel()

    for sig in STOPPING:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await running
    finally:
        for sig in STOPPING:
            loop.remove_signal_handler(sig)
