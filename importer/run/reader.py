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
import hashlib
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ManifestError, Problem, RowError, reason_of
from ..ledger.admission import ALREADY, CHANGED, OTHER_SHARD, SETTLED, Admission
from ..ledger.facts import FileFacts
from ..ledger.queries import SettledKeys
from ..ledger.states import Status
from ..manifest.call_dates import RowContext
from ..manifest.identity import Identity, identify, in_shard, shard_key
from ..manifest.opening import Manifest, ManifestRow
from ..manifest.records import normalize_row, sent_fields

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
    #: A worker has something to do for this row beyond uploading it: a file to probe, or
    #: (``--check-urls``) a URL to ask. ``validate`` passes the other valid rows at once.
    needs_worker: bool = False


def _settled(key: str, identity: Identity, facts: FileFacts | None) -> str:
    """How a row whose key is done is passed over: ``SETTLED``; or, for a row known by its
    file's path alone (no external_id) whose file holds other audio than was imported,
    ``CHANGED``: another recording under the same name, which must not pass for done (nor be
    sent under the key, and the external_id, of the one imported). Unchanged size and mtime
    settle it at the cost of a ``stat``; a file merely touched costs one hash."""
    path = identity.path
    if facts is None or path is None or key != identity.recording:
        return SETTLED
    try:
        st = os.stat(path)
        if st.st_size == facts.size and st.st_mtime_ns == facts.mtime_ns:
            return SETTLED
        if st.st_size == facts.size and _sha256_of(path) == facts.sha256:
            return SETTLED
    except OSError:
        return SETTLED  # gone: nothing to import; the imported recording stays done
    return CHANGED


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _imported_files(settled: SettledKeys, paths: list[str]) -> dict[str, str]:
    """Of ``paths``, those the ledger holds as imported and that are unchanged since (size
    and mtime, from one ``stat`` each), with the key each was imported under."""
    known = settled.imported_files(paths) if paths else {}
    unchanged = {}
    for path, (key, facts) in known.items():
        try:
            st = os.stat(path)
        except OSError:
            continue  # gone or unreadable: the row is checked, and refused, as usual
        if st.st_size == facts.size and st.st_mtime_ns == facts.mtime_ns:
            unchanged[path] = key
    return unchanged


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
    #: Keep the normalized fields of every valid row, not only of those a worker must see
    #: (``--preflight`` looks their ids up).
    keep_clean: bool = False
    #: ``--shard K/N``: only rows whose key hashes to K are prepared.
    shard: tuple[int, int] | None = None
    #: ``--check-urls``: a URL row needs a worker too.
    check_urls: bool = False

    #: The run's ledger, when rows it holds as succeeded are to be passed over unread (a
    #: resumed run); ``None`` for ``validate``, whose ledger starts empty.
    ledger: Path | None = None

    def prepare_chunk(self, rows: list[ManifestRow], settled: SettledKeys | None) -> list[Prepared]:
        """The chunk's rows, each identified first (cheap), so that a row of another shard, or
        one that ``settled`` says already succeeded, costs no normalizing: a resumed run of a
        million rows with a thousand left mostly asks the ledger about keys. A row whose key
        is new but whose file the ledger holds as imported, unchanged (same size and mtime),
        is passed over too: an ``external_id`` added to an imported manifest, or edited,
        re-uploads nothing and re-hashes nothing."""
        if settled is None and self.shard is None:  # nothing to pass over: one pass
            prepare = self._prepare
            return [prepare(row) for row in rows]
        shard = self.shard
        identified = []
        for row in rows:
            identity = identify(row.values, self.ctx.base_dir, self.auto_external_id,
                                self.ctx.paths)
            key = identity.key or f"row:{self.manifest_id}:{row.number}"
            mine = shard is None or in_shard(
                shard_key(identity, self.ctx.base_dir) if identity.key else key, shard)
            identified.append((row, identity, key, mine))
        done: dict[str, FileFacts | None] = {}
        already: dict[str, str] = {}
        if settled is not None:
            done = settled([key for _, _, key, mine in identified if mine])
            already = _imported_files(settled, [
                identity.path for _, identity, key, mine in identified
                if mine and key not in done and identity.path])
        prepared = []
        for row, identity, key, mine in identified:
            path = identity.path or ""
            passed_over = OTHER_SHARD if not mine else \
                _settled(key, identity, done[key]) if key in done else \
                ALREADY if path in already else ""
            if passed_over:
                prepared.append(Prepared(Admission(
                    key=key, external_id=identity.external_id, manifest=self.manifest_id,
                    row_number=row.number, source=identity.source, status=Status.PENDING,
                    fingerprint="", recording=identity.recording, passed_over=passed_over,
                    same_as=already.get(path, "")), None, {}))
            else:
                prepared.append(self._prepare(row, identity, key))
        return prepared

    def _prepare(self, row: ManifestRow, identity: Identity | None = None,
                 key: str = "") -> Prepared:
        if identity is None:
            identity = identify(row.values, self.ctx.base_dir, self.auto_external_id,
                                self.ctx.paths)
            key = identity.key or f"row:{self.manifest_id}:{row.number}"
        try:
            if row.error is not None:
                raise RowError([Problem("", "", row.error)])
            clean = normalize_row(row.values, self.ctx)
        except RowError as exc:
            error = exc.at(row.number)
            return Prepared(Admission(
                key=key, external_id=identity.external_id, manifest=self.manifest_id,
                row_number=row.number, source=identity.source, status=Status.INVALID,
                fingerprint=_fingerprint(row.values), error=error.detail,
                reason="; ".join(reason_of(p) for p in exc.problems),
                recording=identity.recording), None, row.values if self.keep_cells else {},
                tuple(exc.problems))
        if "external_id" not in clean and identity.external_id is not None:
            clean["external_id"] = identity.external_id
        needs_worker = "recording_file" in clean or (self.check_urls and
                                                     "recording_url" in clean)
        keep = self.keep_clean or needs_worker
        cells = row.values if self.keep_cells else {}  # a valid row may yet be a duplicate
        if not self.keep_fields:
            return Prepared(Admission(
                key=key, external_id=clean.get("external_id"), manifest=self.manifest_id,
                row_number=row.number, source=identity.source, status=Status.PENDING,
                fingerprint="", recording=identity.recording), clean if keep else None,
                cells, needs_worker=needs_worker)
        fields = sent_fields(clean)
        fields_json, fingerprint = _fields_and_fingerprint(fields)
        return Prepared(Admission(
            key=key, external_id=fields.get("external_id"), manifest=self.manifest_id,
            row_number=row.number, source=identity.source, status=Status.PENDING,
            fingerprint=fingerprint, fields=fields, recording=identity.recording,
            fields_json=fields_json), clean, cells, needs_worker=needs_worker)


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
        with self._process.stdin as handle:
            pickle.dump((manifest, preparer), handle, protocol=pickle.HIGHEST_PROTOCOL)
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
