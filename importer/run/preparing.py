"""A manifest row made ready for the ledger: identified (cheaply first, so a resumed run
passes over what is done without normalizing it), normalized with every problem of the row at
once (its cells, its names, its file), fingerprinted. ``RowPreparer`` is what the reader runs
on each chunk, in a thread or in its second process (``reader``), so it is picklable and holds
plain settings, not the run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..audio.probing import probe
from ..errors import AudioError, MachineError, Problem, RowError, reason_of
from ..ledger.admission import ALREADY, CHANGED, OTHER_SHARD, SETTLED, Admission
from ..ledger.facts import FileFacts
from ..ledger.queries import SettledKeys
from ..ledger.states import Status
from ..manifest.call_dates import RowContext
from ..manifest.identity import Identity, identify, in_shard, recording_path, shard_key
from ..manifest.opening import ManifestRow
from ..manifest.records import in_field_order, normalize_row, sent_fields


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
    #: The largest recording taken (``--max-file-size``): the file of a row found invalid
    #: for its cells is checked too (exists, readable, audio, not too big), so that the
    #: errors list every problem of the row at once. 0: not checked.
    files: int = 0

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
            if row.error is None and self.files:
                exc = RowError(in_field_order(
                    exc.problems + self._file_problems(row.values, exc.problems)))
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


    def _file_problems(self, values: Mapping[str, str],
                       problems: list[Problem]) -> list[Problem]:
        """What is wrong with the file of a row already invalid for its cells (its headers
        are read, it is not hashed); nothing when its cell was the problem."""
        text = (values.get("recording_file") or "").strip()
        if not text or any(p.column == "recording_file" for p in problems):
            return []
        try:
            path = recording_path(text, self.ctx.base_dir, self.ctx.paths)
            if isinstance(path, Path):  # an object is checked by the store's own answers
                probe(path, self.files, digest=False)
        except AudioError as exc:
            return [Problem("recording_file", text, exc.reason)]
        except (ValueError, OSError, MachineError):
            return []  # a path the cell check refused, or this machine's trouble: not the row's
        return []
