"""The states of a recording in the ledger, what each one promises, and the legal moves.

::

    pending    known and valid, not sent yet in this state's run
    uploading  a request was (or was about to be) sent: the outcome is UNKNOWN. This is written
               durably before the request leaves, so after a crash a row found here may or may
               not exist at Convirza and must be reconciled before it is sent again.
    succeeded  the API acknowledged the upload (final: never sent again), or the recording
               was found already imported under another key (``same_as`` names it: the same
               file unchanged, or the same audio bytes), so it was not sent again
    failed     every attempt failed; ``retryable`` says whether sending again could help
    invalid    never passed local validation (manifest cell or audio file); never sent

Legal moves are listed in ``TRANSITIONS``; anything else raises ``LedgerError``, so a bug can
not, say, turn a ``succeeded`` row back into ``uploading`` and import a call twice.
"""

from __future__ import annotations

from enum import StrEnum

from ..errors import LedgerError


class Status(StrEnum):
    PENDING = "pending"
    UPLOADING = "uploading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INVALID = "invalid"


#: ``-> succeeded`` from anything but ``succeeded`` itself is also "found already imported under
#: another key" (``same_as``): nothing is sent, so no request can be in doubt.
TRANSITIONS: dict[Status | None, frozenset[Status]] = {
    None: frozenset({Status.PENDING, Status.INVALID, Status.SUCCEEDED}),
    Status.PENDING: frozenset({Status.PENDING, Status.UPLOADING, Status.INVALID,
                               Status.SUCCEEDED}),
    # uploading -> uploading is the next attempt; -> pending is "reconciled: never arrived".
    Status.UPLOADING: frozenset({Status.UPLOADING, Status.SUCCEEDED, Status.FAILED,
                                 Status.PENDING, Status.INVALID}),
    # failed -> succeeded: an attempt of unknown outcome was found at Convirza (reconciled).
    Status.FAILED: frozenset({Status.PENDING, Status.UPLOADING, Status.INVALID,
                              Status.SUCCEEDED}),
    Status.INVALID: frozenset({Status.PENDING, Status.INVALID, Status.SUCCEEDED}),
    Status.SUCCEEDED: frozenset(),
}


def check(key: str, current: Status | None, to: Status) -> None:
    """``LedgerError`` unless ``current -> to`` is a legal move."""
    if to not in TRANSITIONS[current]:
        was = current.value if current else "absent"
        raise LedgerError(f"{key}: illegal ledger transition {was} -> {to.value}")
