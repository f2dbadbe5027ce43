"""The ledger's one writer: a thread that runs every write of a run, committing together the
writes that wait (group commit).

Why a thread: SQLite blocks, and a durable commit waits on the disk (``synchronous=FULL``); on
its own thread neither ever stalls the event loop. Why one: writes are serialized through one
connection anyway, and one writer that takes all the calls waiting and commits them in one
transaction makes a hundred workers finishing at once cost one fsync, not a hundred. A call
returns only after the commit that holds it, so what it wrote is durable when it returns; a
call that raises is undone alone (a savepoint) and the rest of its batch still commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ..errors import LedgerError
from ..observers import NullObserver, Observer, guarded

if TYPE_CHECKING:
    from .store import Ledger

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class _Call:
    run: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


class AsyncLedger:
    """The ledger for async code, through one writer thread with group commit.

    Every call runs on that thread, in the order made. The thread takes all the calls waiting
    and runs them in one transaction with one commit (one fsync), so a hundred workers that
    finish at once cost one disk flush, not a hundred. A call returns only after the commit
    that holds it, so what it wrote is durable when it returns; a call that raises is undone
    alone (a savepoint) and the rest of its batch still commits.
    """

    MAX_BATCH = 1000

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.batches = 0  # commits made, for benchmarks
        self.calls = 0
        self._observer: Observer = NullObserver()  # told of every commit (the metrics)
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name="ledger-writer",
                                        daemon=True)
        self._thread.start()

    @property
    def observer(self) -> Observer:
        return self._observer

    @observer.setter
    def observer(self, observer: Observer) -> None:
        """Told of every commit, on this thread: guarded, since an exception there would end
        the one writer, and every write after it would wait for an answer forever."""
        self._observer = guarded(observer)

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Call(functools.partial(fn, *args, **kwargs), future, loop))
        return await future

    async def close(self) -> None:
        """Finish every call made so far, then close the file."""
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    def _write_loop(self) -> None:
        conn = self.ledger.connection
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            results: list[tuple[bool, Any]] = []
            began = time.monotonic()
            try:
                conn.execute("BEGIN IMMEDIATE")
                for call in batch:
                    try:
                        results.append((True, call.run()))
                    except Exception as exc:  # handed to the caller, who raises it
                        results.append((False, exc))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                failure = LedgerError(f"{self.ledger.path}: could not write the ledger ({exc})")
                results = [(False, failure)] * len(batch)
            self.batches += 1
            self.calls += len(batch)
            self.observer.committed(time.monotonic() - began, len(batch))
            _deliver(batch, results)
        self.ledger.close()


def _deliver(batch: list[_Call], results: list[tuple[bool, Any]]) -> None:
    """Hand a batch's results to their callers: one wake-up of each caller's event loop for
    the whole batch, not one per call (each costs a write to the loop's self-pipe, and the
    loop a turn to read it)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Call, bool, Any]]] = {}
    for call, (ok, value) in zip(batch, results, strict=True):
        by_loop.setdefault(call.loop, []).append((call, ok, value))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the caller's loop is gone
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[_Call, bool, Any]]) -> None:
    for call, ok, value in settled:
        if call.future.done():  # the caller was cancelled; the write stands regardless
            continue
        if ok:
            call.future.set_result(value)
        else:
            call.future.set_exception(value)
