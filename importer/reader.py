"""The reader: manifest rows made ready for the ledger (normalized, identified, fingerprinted),
chunk by chunk, in a thread or, for a big CSV, in a second process.

Why a process: reading and normalizing a row is pure Python, and so is most of admitting it;
under one GIL the two take turns on one core however many the machine has. In a second process
the reader runs on the other core while this one admits and dispatches, which is what lets
``validate`` check a million rows in well under a minute on two cores. It only pays for a
manifest big enough to repay the child's start (an interpreter and our imports, about half a
second), so small manifests, workbooks (whose open file cannot be handed over) and anything
else use a thread; both run the same ``RowPreparer``.

The child is spawned, not forked (the parent has threads, and a fork copies their locks), sends
one pickled chunk at a time through a pipe (whose small buffer is the back-pressure: it never
gets more than a chunk or two ahead), ignores Ctrl-C (the parent decides when to stop it) and
exits when the pipe breaks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import pickle
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from .errors import ManifestError, Problem, RowError
from .ledger import Admission, Status
from .manifest import Manifest, ManifestRow
from .records import RowContext, RowInvalid, identify, normalize_row, sent_fields

log = logging.getLogger(__name__)

#: A CSV at least this big is read in a second process.
PROCESS_MIN_BYTES = 8_000_000


class Prepared(NamedTuple):
    """A row read and checked: ``clean`` (what ``normalize_row`` made of it) for a valid row
    that goes on to a worker (``None`` when nothing is left to do after the ledger's decision,
    as for a URL in ``validate``), ``problems`` for an invalid one. The ``UploadRecord`` is
    built later, only for rows that go on to a worker: building a pydantic model is the
    dearest step, and most rows of a re-run or of a ``validate`` never need one."""

    admission: Admission
    clean: dict[str, Any] | None
    cells: dict[str, str]
    problems: tuple[Problem, ...] = ()


def _fingerprint(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _fields_and_fingerprint(fields: dict[str, str]) -> tuple[str, str]:
    """The fields as the ledger keeps them (JSON) and their fingerprint, from one encoding."""
    text = json.dumps(fields, sort_keys=True)
    return text, hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RowPreparer:
    """Everything that happens to a row before the ledger sees it. Picklable (a second process
    runs it too), so it holds plain settings, not the run."""

    manifest_name: str
    manifest_id: str
    ctx: RowContext
    auto_external_id: bool
    #: ``validate`` keeps no rows in its ledger: their JSON and fingerprint are not made, and
    #: a row with no file to probe needs nothing more after the ledger's decision.
    keep_fields: bool
    #: The cells as read are kept for ``--errors-out`` only.
    keep_cells: bool = False

    def prepare(self, row: ManifestRow) -> Prepared:
        identity = identify(row.values, self.ctx.base_dir, self.auto_external_id)
        key = identity.key or f"row:{self.manifest_id}:{row.number}"
        try:
            if row.error is not None:
                raise RowInvalid([Problem("", "", row.error)])
            clean = normalize_row(row.values, self.ctx)
        except RowInvalid as exc:
            error = RowError(self.manifest_name, row.number, exc.problems)
            return Prepared(Admission(
                key=key, external_id=identity.external_id, manifest=self.manifest_id,
                row_number=row.number, source=identity.source, status=Status.INVALID,
                fingerprint=_fingerprint(row.values), error=str(error),
                recording=identity.recording), None, row.values if self.keep_cells else {},
                tuple(exc.problems))
        if "external_id" not in clean and identity.external_id is not None:
            clean["external_id"] = identity.external_id
        to_worker = self.keep_fields or "recording_file" in clean
        cells = row.values if self.keep_cells and to_worker else {}
        if not self.keep_fields:
            return Prepared(Admission(
                key=key, external_id=clean.get("external_id"), manifest=self.manifest_id,
                row_number=row.number, source=identity.source, status=Status.PENDING,
                fingerprint="", recording=identity.recording), clean if to_worker else None,
                cells)
        fields = sent_fields(clean)
        fields_json, fingerprint = _fields_and_fingerprint(fields)
        return Prepared(Admission(
            key=key, external_id=fields.get("external_id"), manifest=self.manifest_id,
            row_number=row.number, source=identity.source, status=Status.PENDING,
            fingerprint=fingerprint, fields=fields, recording=identity.recording,
            fields_json=fields_json), clean, cells)


class ChunkReader:
    """Prepared chunks of a manifest, one per ``next_chunk()`` call (blocking: call it from a
    thread), ``None`` at the end; ``close()`` when done or stopping early."""

    def next_chunk(self) -> list[Prepared] | None:
        raise NotImplementedError

    def close(self) -> None:
        return None


class _ThreadReader(ChunkReader):
    def __init__(self, manifest: Manifest, preparer: RowPreparer) -> None:
        self._chunks = manifest.chunks()
        self._preparer = preparer

    def next_chunk(self) -> list[Prepared] | None:
        chunk = next(self._chunks, None)
        return None if chunk is None else [self._preparer.prepare(row) for row in chunk]


_STATUS_AT = Admission._fields.index("status")
_STATUSES = {s.value: s for s in Status}


def _to_wire(chunk: list[Prepared]) -> list[tuple[Any, ...]]:
    """Plain tuples and strings: named tuples and enums cost a call each to unpickle."""
    return [((*p.admission[:_STATUS_AT], p.admission.status.value,
              *p.admission[_STATUS_AT + 1:]), *p[1:]) for p in chunk]


def _from_wire(rows: list[tuple[Any, ...]]) -> list[Prepared]:
    make_admission, make_prepared = Admission._make, Prepared._make
    out = []
    for admission, *rest in rows:
        fields = list(admission)
        fields[_STATUS_AT] = _STATUSES[fields[_STATUS_AT]]
        out.append(make_prepared((make_admission(fields), *rest)))
    return out


def _child(conn: Connection, manifest: Manifest, preparer: RowPreparer) -> None:
    """The reader process: every chunk of ``manifest``, prepared, down ``conn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us; Ctrl-C reaches both
    naive = [False]

    def saw_naive_date() -> None:
        naive[0] = True

    preparer = replace(preparer, ctx=replace(preparer.ctx, on_naive_date=saw_naive_date))
    try:
        for chunk in manifest.chunks():
            conn.send(("rows", _to_wire([preparer.prepare(row) for row in chunk]), naive[0]))
            naive[0] = False
        conn.send(("end", None, False))
    except ManifestError as exc:
        conn.send(("broken", (exc.path, exc.reason), False))
    except (BrokenPipeError, EOFError):  # the parent is gone or stopped reading
        pass
    except BaseException:  # a bug: the parent raises it with this traceback
        conn.send(("crash", traceback.format_exc(), False))
    finally:
        conn.close()


class _ProcessReader(ChunkReader):
    def __init__(self, manifest: Manifest, preparer: RowPreparer,
                 on_naive_date: Callable[[], None] | None) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, args=(child_end, manifest, preparer),
                                        name="convirza-reader", daemon=True)
        self._process.start()
        child_end.close()
        self._on_naive_date = on_naive_date
        self._done = False

    def next_chunk(self) -> list[Prepared] | None:
        if self._done:
            return None
        try:
            kind, payload, naive = self._conn.recv()
        except EOFError:
            self._done = True
            raise RuntimeError("the reader process ended without a word "
                               f"(exit code {self._process.exitcode})") from None
        if naive and self._on_naive_date is not None:
            self._on_naive_date()
        if kind == "rows":
            return _from_wire(payload)
        self._done = True
        if kind == "broken":
            raise ManifestError(*payload)
        if kind == "crash":
            raise RuntimeError(f"the reader process failed:\n{payload}")
        return None

    def close(self) -> None:
        self._conn.close()
        self._process.join(timeout=5)
        if self._process.is_alive():  # stopped early: it is blocked on a full pipe
            self._process.terminate()
            self._process.join()


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
    try:
        big = manifest.path.stat().st_size >= process_min_bytes
    except OSError:
        big = False
    if big and manifest.portable and _picklable(portable):
        return _ProcessReader(manifest, portable, on_naive_date)
    local = replace(preparer, ctx=replace(preparer.ctx, on_naive_date=on_naive_date))
    return _ThreadReader(manifest, local)
