"""What a run does with each manifest row, decided from the row, what the ledger holds of it,
and the rows of the run that came before: ``decide(row, previous, seen) -> Decision``.

A pure function (no SQL, no clock, no message text), so every case is a table of tests: a row
new to the ledger, one done before, one of unknown outcome, one refused for good, a repeat of
an earlier row's key or recording, one passed over by the reader (done before, another shard's,
already imported under another key, changed since). The ledger reads ``previous`` and
``seen`` for a chunk, calls ``decide`` per row, and writes what each ``Decision`` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from .facts import FileFacts, facts
from .states import Status

#: Why the reader went no further with a row: it succeeded before (``SETTLED``), another
#: ``--shard`` sends it (``OTHER_SHARD``), its file, unchanged, was imported under another key
#: (``ALREADY``), or its key is done but the file at its path holds other audio (``CHANGED``).
SETTLED = "settled"
OTHER_SHARD = "other shard"
ALREADY = "already imported"
CHANGED = "changed since imported"
#: The reason recorded for a row that repeats an earlier row of its run.
DUPLICATE = "duplicate of an earlier row"


class Admission(NamedTuple):
    """A manifest row offered to the ledger: valid (``status`` pending) or invalid. (Named
    tuples here and in ``Decision``: one of each is made per manifest row.)"""

    key: str
    external_id: str | None
    manifest: str
    row_number: int
    source: str
    status: Status
    fingerprint: str
    fields: dict[str, Any] | None = None
    error: str | None = None
    reason: str | None = None  # the error without row-specific detail, for counting alike
    #: The recording as one canonical text (``file:`` and the absolute path, or ``url:`` and
    #: the URL): two rows with the same one in a run list the same recording twice.
    recording: str = ""
    #: ``fields`` already encoded as JSON, when the caller has it (it fingerprinted them).
    fields_json: str | None = None
    #: Why the reader went no further (``SETTLED``, ...): the row is neither normalized nor
    #: recorded as read, but it still takes its place in the run, so that a later row
    #: repeating its key or its recording is known as a duplicate.
    passed_over: str = ""
    #: For a row passed over as ``ALREADY``: the key its recording was imported under.
    same_as: str = ""


class Known(NamedTuple):
    """What the ledger holds of a row's key (the columns of ``KNOWN_COLUMNS``)."""

    key: str
    status: str
    fingerprint: str | None
    retryable: int
    last_outcome: str | None
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    sent_external_id: str | None

    @property
    def facts(self) -> FileFacts | None:
        return facts(self.size, self.mtime_ns, self.sha256)


KNOWN_COLUMNS = ", ".join(Known._fields)


class Verdict(StrEnum):
    """What the run should do with an admitted row."""

    SEND = "send"            # new, changed, or worth another try
    DONE = "done"            # succeeded before: skip
    UNKNOWN = "unknown"      # its last request's outcome is unknown: reconcile first
    REJECTED = "rejected"    # failed for good before, same data: skip
    DUPLICATE = "duplicate"  # the same key or recording was already admitted in this run
    INVALID = "invalid"      # recorded as invalid
    ELSEWHERE = "elsewhere"  # another shard's row
    ALREADY = "already"      # its file was imported under another key: recorded succeeded
    CHANGED = "changed"      # done, but the file at its path holds other audio now: not sent


class Record(StrEnum):
    """What the ledger writes for a row: the row as read, the row as an invalid duplicate of
    an earlier row's recording, or the row as already imported under another key."""

    AS_READ = "as read"
    AS_DUPLICATE = "as duplicate"
    AS_ALREADY = "as already imported"


class Decision(NamedTuple):
    """What the ledger decided for one admitted row, and what it writes of it (``record``)."""

    verdict: Verdict
    previous: Status | None = None
    duplicate_of: int | None = None
    #: ``DUPLICATE``: what repeats, the key or the recording.
    by: Literal["key", "recording"] | None = None
    record: Record | None = None
    #: ``ALREADY``: the key its recording was imported under.
    same_as: str | None = None
    #: What the ledger already knows of the row's file, so that an unchanged file is not hashed
    #: again: ``FileFacts`` from an earlier probe of this key.
    known: FileFacts | None = None
    #: ``UNKNOWN``: the external_id the request of unknown outcome carried (the call is looked
    #: up by it, whatever the manifest says now).
    sent_external_id: str | None = None


@dataclass
class Seen:
    """The rows of this run that came before, as far as one chunk needs them: the first row
    of each key and of each recording (loaded by the ledger from the run's table), and what
    this chunk adds (``new``, written back)."""

    keys: dict[str, int] = field(default_factory=dict)
    recordings: dict[str, int] = field(default_factory=dict)
    new: list[tuple[str, str | None, int]] = field(default_factory=list)

    def repeats(self, row: Admission) -> tuple[int | None, int | None]:
        """The earlier row with this row's key, and the earlier row with its recording (None
        for the row itself, offered again)."""
        first = self.keys.get(row.key)
        other = self.recordings.get(row.recording) if row.recording else None
        return (None if first == row.row_number else first,
                None if other == row.row_number else other)

    def take(self, row: Admission, recording: bool) -> None:
        """The row takes its place: its key, and (``recording``) its recording."""
        if row.key in self.keys:
            return
        self.keys[row.key] = row.row_number
        if recording and row.recording:
            self.recordings[row.recording] = row.row_number
        self.new.append((row.key, row.recording if recording and row.recording else None,
                         row.row_number))


def decide(row: Admission, previous: Known | None, seen: Seen) -> Decision:
    """The decision for one row (see the module docstring); ``seen`` learns of the row."""
    first, other = seen.repeats(row)
    status = None if previous is None else Status(previous.status)
    if row.passed_over:
        return _passed_over(row, status, seen, first, other)
    if first is not None:
        return Decision(Verdict.DUPLICATE, status, duplicate_of=first, by="key")
    seen.take(row, recording=other is None)
    if other is not None:
        if status is Status.SUCCEEDED:
            return Decision(Verdict.DONE, status)  # imported before under this key: leave it
        return Decision(Verdict.DUPLICATE, status, duplicate_of=other, by="recording",
                        record=Record.AS_DUPLICATE)
    if previous is None:
        return _FIRST_SEEN[row.status]
    return _again(row, previous)


def _passed_over(row: Admission, status: Status | None, seen: Seen, first: int | None,
                 other: int | None) -> Decision:
    """A row the reader passed over takes its place in the run, and nothing else; one found
    already imported under another key is recorded so, or, when an earlier row of this run
    listed its recording, as a duplicate of it (as it would be if read)."""
    done_before = row.passed_over in (SETTLED, ALREADY, CHANGED)
    if first is not None:
        if done_before:  # a repeat of a row done before is still a repeat
            return Decision(Verdict.DUPLICATE, Status.SUCCEEDED, duplicate_of=first, by="key")
        return _PASSED[row.passed_over]
    seen.take(row, recording=other is None)
    if row.passed_over != ALREADY:
        return _PASSED[row.passed_over]
    if other is not None:
        return Decision(Verdict.DUPLICATE, status, duplicate_of=other, by="recording",
                        record=Record.AS_DUPLICATE)
    return Decision(Verdict.ALREADY, status, same_as=row.same_as, record=Record.AS_ALREADY)


def _again(row: Admission, previous: Known) -> Decision:
    """A row the ledger has held before, read again."""
    status = Status(previous.status)
    if status is Status.SUCCEEDED:
        return Decision(Verdict.DONE, status)
    if status is Status.UPLOADING:
        return Decision(Verdict.UNKNOWN, status, known=previous.facts,
                        sent_external_id=previous.sent_external_id)
    same_data = previous.fingerprint == row.fingerprint
    if status is Status.FAILED and previous.last_outcome == "unknown" and \
            row.status is Status.PENDING and same_data:
        # Its last attempt may have arrived after all (as ``retry`` knows): look first.
        return Decision(Verdict.UNKNOWN, status, known=previous.facts,
                        sent_external_id=previous.sent_external_id)
    if status is Status.FAILED and not previous.retryable and same_data:
        return Decision(Verdict.REJECTED, status)
    if row.status is Status.INVALID:
        return Decision(Verdict.INVALID, status, record=Record.AS_READ)
    return Decision(Verdict.SEND, status, record=Record.AS_READ, known=previous.facts)


_FIRST_SEEN = {Status.PENDING: Decision(Verdict.SEND, record=Record.AS_READ),
               Status.INVALID: Decision(Verdict.INVALID, record=Record.AS_READ)}
_PASSED = {SETTLED: Decision(Verdict.DONE, Status.SUCCEEDED),
           OTHER_SHARD: Decision(Verdict.ELSEWHERE),
           CHANGED: Decision(Verdict.CHANGED, Status.SUCCEEDED)}


def duplicate_error(row: Admission, decision: Decision) -> str:
    """What is wrong with a row that repeats an earlier row of its run, in words: the ledger
    keeps it, the run reports it."""
    what = f"external_id {row.external_id}" if decision.by == "key" and \
        row.key.startswith("ext:") else f"recording ({row.source})"
    repeated = f"duplicate of row {decision.duplicate_of}: the same {what}"
    return f"{row.error}; {repeated}" if row.error else f"row {row.row_number}: {repeated}"
