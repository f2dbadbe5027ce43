"""Who watches a run, and how the run is kept safe from them: the ``Observer`` protocol, the
observer that does nothing, and observers guarded and fanned out. Apart from ``events`` (what
is told) because this is who listens: the ledger's writer thread and the client tell them too.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from .events import Outcome, RequestEvent, RowEvent, RunSummary

log = logging.getLogger("importer.events")


class Observer(Protocol):
    """Watches a run. ``started`` hands over the live summary, which the run keeps current.

    The methods with a body do nothing by default, so an observer that subclasses this one
    needs only the events it cares about; the progress bar ignores requests and commits, the
    metrics use them."""

    def started(self, summary: RunSummary) -> None: ...

    def row(self, event: RowEvent) -> None: ...

    def passed(self, outcome: Outcome, n: int) -> None:
        """``n`` rows that ended as ``outcome`` with nothing to say of each (``add_many``)."""

    def finished(self, summary: RunSummary) -> None: ...

    def request_started(self, method: str, path: str) -> None:
        """A request left the rate limiter for the API: in flight until ``request_finished``."""
        return None

    def request_finished(self, event: RequestEvent) -> None:
        """A request of ``request_started`` ended, answered or not."""
        return None

    def committed(self, seconds: float, calls: int) -> None:
        """The ledger made one group commit of ``calls`` writes, durable after ``seconds``.

        Called on the ledger's writer thread, not the event loop: keep it short, and safe to
        run beside the other methods."""
        return None


class NullObserver(Observer):
    def started(self, summary: RunSummary) -> None:
        return None

    def row(self, event: RowEvent) -> None:
        return None

    def passed(self, outcome: Outcome, n: int) -> None:
        return None

    def finished(self, summary: RunSummary) -> None:
        return None


class Guarded(Observer):
    """An observer whose failures never reach the run: the first exception it raises is
    logged (one line) and detaches it, so that a bug in a progress display, a metrics sink or
    a caller's own observer can neither end the run, leave its rows ``uploading``, nor kill
    the ledger's writer thread (which tells ``committed``) and so hang every write. A method
    it lacks (an observer written before that event existed) is skipped, said once."""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        self._detached = False
        self._missing: set[str] = set()
        self._lock = threading.Lock()  # ``committed`` comes from the ledger's writer thread

    def _tell(self, event: str, *args: object) -> None:
        if self._detached:
            return
        method = getattr(self.observer, event, None)
        if method is None:
            with self._lock:
                if event not in self._missing:
                    self._missing.add(event)
                    log.warning("the observer %s has no %s(): it is not told of those events",
                                type(self.observer).__name__, event)
            return
        try:
            method(*args)
        except Exception as exc:
            with self._lock:
                if self._detached:
                    return
                self._detached = True
            text = " ".join(str(exc).split()) or "no message"
            log.warning("the observer %s failed in %s() (%s: %s); it is detached, and the run "
                        "goes on without it", type(self.observer).__name__, event,
                        type(exc).__name__, text)

    def started(self, summary: RunSummary) -> None:
        self._tell("started", summary)

    def row(self, event: RowEvent) -> None:
        self._tell("row", event)

    def passed(self, outcome: Outcome, n: int) -> None:
        self._tell("passed", outcome, n)

    def finished(self, summary: RunSummary) -> None:
        self._tell("finished", summary)

    def request_started(self, method: str, path: str) -> None:
        self._tell("request_started", method, path)

    def request_finished(self, event: RequestEvent) -> None:
        self._tell("request_finished", event)

    def committed(self, seconds: float, calls: int) -> None:
        self._tell("committed", seconds, calls)


def guarded(observer: Observer | None) -> Observer:
    """``observer`` made safe to call from the run (``Guarded``); nothing when None."""
    if observer is None:
        return NullObserver()
    if isinstance(observer, (Guarded, FanOut)) or type(observer) is NullObserver:
        return observer  # already guarded (a FanOut guards each of its own), or harmless
    return Guarded(observer)


class FanOut(Observer):
    """Several observers of one run (the progress bar and the metrics), each told every event,
    in the order given; each is guarded on its own, so that one failing leaves the others."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = tuple(guarded(o) for o in observers)

    def started(self, summary: RunSummary) -> None:
        for observer in self.observers:
            observer.started(summary)

    def row(self, event: RowEvent) -> None:
        for observer in self.observers:
            observer.row(event)

    def passed(self, outcome: Outcome, n: int) -> None:
        for observer in self.observers:
            observer.passed(outcome, n)

    def finished(self, summary: RunSummary) -> None:
        for observer in self.observers:
            observer.finished(summary)

    def request_started(self, method: str, path: str) -> None:
        for observer in self.observers:
            observer.request_started(method, path)

    def request_finished(self, event: RequestEvent) -> None:
        for observer in self.observers:
            observer.request_finished(event)

    def committed(self, seconds: float, calls: int) -> None:
        for observer in self.observers:
            observer.committed(seconds, calls)
