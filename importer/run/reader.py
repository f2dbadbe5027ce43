"""The reader: manifest rows made ready for the ledger (normalized, identified, fingerprinted),
chunk by chunk, in a thread or, for a big CSV, in a second process.

Why a process: reading and normalizing a row is pure Python, and so is most of admitting it;
under one GIL the two take turns on one core however many the machine has. In a second process
the reader runs on the other core while this one admits and dispatches, which is what lets
``validate`` check a million rows in well under a minute on two cores. It only pays for a
manifest big enough to repay the child's start (an interpreter and our imports, about half a
second), so small manifests, workbooks (whose open file cannot be handed over) and anything
else use a thread; both run the same ``RowPreparer``.

The child is a fresh interpreter, not a fork (the parent has threads, and a fork copies their
locks), sends one pickled chunk at a time through a pipe (whose 1 MiB buffer is the
back-pressure: it never gets more than a few chunks ahead), never sees Ctrl-C (the parent
decides when to stop it) and ends when the pipe breaks.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ManifestError
from ..ledger.admission import Admission
from ..ledger.queries import SettledKeys
from ..manifest.opening import Manifest, ManifestRow
from .preparing import Prepared, RowPreparer

log = logging.getLogger("importer.reader")

#: A CSV at least this big is read in a second process.
PROCESS_MIN_BYTES = 8_000_000
#: The pipe from the reader process holds this much: a few chunks, a bounded few MB.
PIPE_BYTES = 1 << 20
#: Of every ``RAW_OF[1]`` chunks, ``RAW_OF[0]`` are sent as read and prepared in the parent:
#: admitting a row costs the parent about half what reading and preparing it costs the child,
#: so the parent's core has room for some of the preparing, and the two processes then
#: finish together (measured with bench/manifest.py).
RAW_OF = (1, 3)


class ChunkReader:
    """Prepared chunks of a manifest, one per ``next_chunk()`` call (blocking: call it from a
    thread), ``None`` at the end; ``close()`` when done or stopping early."""

    def next_chunk(self) -> list[Prepared] | None:
        raise NotImplementedError

    def close(self) -> None:
        return None


def _settled_keys(preparer: RowPreparer) -> SettledKeys | None:
    return None if preparer.ledger is None else SettledKeys(preparer.ledger)


class _ThreadReader(ChunkReader):
    def __init__(self, manifest: Manifest, preparer: RowPreparer) -> None:
        self._chunks = manifest.chunks()
        self._preparer = preparer
        self._settled = _settled_keys(preparer)

    def next_chunk(self) -> list[Prepared] | None:
        chunk = next(self._chunks, None)
        return None if chunk is None else self._preparer.prepare_chunk(chunk, self._settled)

    def close(self) -> None:
        if self._settled is not None:
            self._settled.close()


_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)
#: The child's whole program: find this package where the parent found it, then run.
_CHILD_CODE = ("import sys; sys.path.insert(0, sys.argv[1]); "
               "from importer.run.reader import child_main; child_main()")


def child_main() -> None:
    """The reader process: reads ``(manifest, preparer)`` pickled on stdin, writes every chunk
    of the manifest, prepared, as pickled messages on stdout, then an end (or what broke)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    out = sys.stdout.buffer
    naive = [False]

    def saw_naive_date() -> None:
        naive[0] = True

    def send(message: tuple[str, Any, bool]) -> None:
        pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    try:
        manifest, preparer = pickle.load(sys.stdin.buffer)
        preparer = replace(preparer, ctx=replace(preparer.ctx, on_naive_date=saw_naive_date))
        settled = _settled_keys(preparer)
        for number, chunk in enumerate(manifest.chunks()):
            # Plain tuples: a named tuple costs a Python call to pickle, a plain one none.
            if number % RAW_OF[1] < RAW_OF[0]:
                send(("raw", [tuple(row) for row in chunk], False))
                continue
            rows = [(tuple(p.admission), *p[1:])
                    for p in preparer.prepare_chunk(chunk, settled)]
            send(("rows", rows, naive[0]))
            naive[0] = False
        send(("end", None, False))
    except ManifestError as exc:
        send(("broken", (exc.path, exc.reason), False))
    except (BrokenPipeError, OSError):  # the parent is gone or stopped reading
        pass
    except BaseException:  # a bug: the parent raises it with this traceback
        send(("crash", traceback.format_exc(), False))


class _ProcessReader(ChunkReader):
    """A child interpreter started as a plain command (``python -c``), not through
    multiprocessing: spawning through multiprocessing re-imports the parent's main script,
    which breaks any program that embeds the importer without an ``if __name__`` guard. In
    its own session, so that Ctrl-C on the terminal reaches only the parent."""

    def __init__(self, manifest: Manifest, preparer: RowPreparer, local: RowPreparer,
                 on_naive_date: Callable[[], None] | None) -> None:
        self._local = local  # prepares the chunks that come as read
        self._settled = _settled_keys(local)
        self._process = subprocess.Popen(
            [sys.executable, "-c", _CHILD_CODE, _PACKAGE_ROOT], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, bufsize=1 << 16, start_new_session=True)
        assert self._process.stdin is not None and self._process.stdout is not None
        self._out = self._process.stdout
        # A roomier pipe lets the child run a few chunks ahead instead of waiting at every
        # send for the parent to come back for more (Linux; elsewhere the default stays).
        with contextlib.suppress(ImportError, AttributeError, OSError):
            import fcntl

            fcntl.fcntl(self._out.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        try:
            with self._process.stdin as handle:
                pickle.dump((manifest, preparer), handle, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:  # a child that died at once, a value that would not pickle
            self._process.kill()
            self._process.wait()
            self._out.close()
            raise
        self._on_naive_date = on_naive_date
        self._done = False

    def next_chunk(self) -> list[Prepared] | None:
        if self._done:
            return None
        try:
            kind, payload, naive = pickle.load(self._out)
        except (EOFError, pickle.UnpicklingError):
            self._done = True
            raise RuntimeError("the reader process ended without a word (exit code "
                               f"{self._process.wait()})") from None
        if naive and self._on_naive_date is not None:
            self._on_naive_date()
        if kind == "rows":
            admission, prepared = Admission._make, Prepared
            return [prepared(admission(a), *rest) for a, *rest in payload]
        if kind == "raw":
            return self._local.prepare_chunk([ManifestRow._make(row) for row in payload],
                                             self._settled)
        self._done = True
        if kind == "broken":
            raise ManifestError(*payload)
        if kind == "crash":
            raise RuntimeError(f"the reader process failed:\n{payload}")
        return None

    def close(self) -> None:
        if self._settled is not None:
            self._settled.close()
        self._out.close()  # a child still writing gets a broken pipe and ends
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _picklable(value: object) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # e.g. a zone read from /etc/localtime has no name to pickle by
        return False
    return True


def open_reader(manifest: Manifest, preparer: RowPreparer,
                on_naive_date: Callable[[], None] | None,
                process_min_bytes: int = PROCESS_MIN_BYTES) -> ChunkReader:
    """A reader of ``manifest`` in a second process when that pays (see the module
    docstring), else in the caller's threads."""
    portable = replace(preparer, ctx=replace(preparer.ctx, on_naive_date=None))
    local = replace(preparer, ctx=replace(preparer.ctx, on_naive_date=on_naive_date))
    try:
        big = manifest.path.stat().st_size >= process_min_bytes
    except OSError:
        big = False
    if big and manifest.portable and sys.executable and _picklable(portable):
        return _ProcessReader(manifest, portable, local, on_naive_date)
    return _ThreadReader(manifest, local)
