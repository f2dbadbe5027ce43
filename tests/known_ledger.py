"""A ledger whose every count is known, written through the real ``Ledger`` class (a real
SQLite file), for the report's aggregation and the browser test.

Thirteen rows of one manifest that claims twenty (so seven are not read yet: both runs
stopped early), over two runs, with attempts a minute apart starting ``start``::

    rows 2-5    succeeded in run 1; row 2 after a 429 (its second attempt is a retry)
    rows 6, 7   succeeded in run 2
    row 8       failed: three answers 500 (two retries)
    row 9       unknown outcome (a timeout), then found at Convirza: reconciled
    row 10      already imported, as row 2's key (nothing sent)
    row 11      pending
    rows 12-14  invalid: two bad phone numbers, one duplicate of an earlier row
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from importer.ledger.admission import DUPLICATE, Admission
from importer.ledger.books import AttemptRecord
from importer.ledger.states import Status
from importer.ledger.store import Ledger

MANIFEST = "/data/calls.csv"
EXPECTED = 20
SIZES = {2: 1_000, 3: 2_000, 4: 3_000, 5: 4_000, 6: 5_000, 7: 6_000, 8: 7_000, 9: 8_000}
PHONE = "caller_id: a phone number of digits"


def key(row: int) -> str:
    return f"ext:R-{row}"


def default_start() -> datetime:
    """Three hours ago, to the minute: invalid rows are stamped with the real time, and the
    timeline should not stretch over weeks."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(hours=3)


def build(path: Path, start: datetime | None = None, *, error_text: str = PHONE) -> datetime:
    """Write the ledger at ``path``; returns the start of its first attempt."""
    start = start or default_start()
    ledger = Ledger.open(path, durable=False)
    try:
        run1 = ledger.begin_run("run", MANIFEST)
        rows = [Admission(key(r), f"R-{r}", MANIFEST, r, f"audio/{r}.wav", Status.PENDING, "f",
                          {"group_id": "12"}) for r in range(2, 12)]
        rows += [Admission(key(r), f"R-{r}", MANIFEST, r, f"audio/{r}.wav", Status.INVALID, "f",
                           None, f"row {r}: {error_text}", PHONE) for r in (12, 13)]
        rows.append(Admission(key(14), "R-14", MANIFEST, 14, "audio/14.wav", Status.INVALID, "f",
                              None, "row 14: duplicate of row 2", DUPLICATE))
        ledger.admit(run1, rows)

        def at(row: int, seconds: float = 0) -> str:
            moment = start + timedelta(minutes=row - 2, seconds=seconds)
            return moment.isoformat(timespec="milliseconds")

        def send(row: int, run: int) -> None:
            ledger.mark_uploading(key(row), SIZES[row], run, external_id=f"R-{row}")

        send(2, run1)
        ledger.record_attempt(AttemptRecord(key(2), at(2), 0.05, "error", 429,
                                            "Too Many Requests"))
        ledger.finish(key(2), Status.SUCCEEDED, AttemptRecord(key(2), at(2, 10), 0.4,
                                                               "succeeded", 200))
        for row in (3, 4, 5):
            send(row, run1)
            ledger.finish(key(row), Status.SUCCEEDED,
                          AttemptRecord(key(row), at(row), 0.3, "succeeded", 200))
        ledger.end_run(run1, 130, {"counts": {"succeeded": 4, "invalid": 3},
                                   "expected": EXPECTED, "stopped": "interrupted"})

        run2 = ledger.begin_run("run", MANIFEST)
        for row in (6, 7):
            send(row, run2)
            ledger.finish(key(row), Status.SUCCEEDED,
                          AttemptRecord(key(row), at(row), 0.3, "succeeded", 200))
        send(8, run2)
        for n in range(2):
            ledger.record_attempt(AttemptRecord(key(8), at(8, 10 * n), 2.0, "error", 500,
                                                "Internal Server Error"))
        ledger.finish(key(8), Status.FAILED, AttemptRecord(key(8), at(8, 30), 2.0, "error", 500,
                                                           "Internal Server Error"))
        send(9, run2)
        ledger.record_attempt(AttemptRecord(key(9), at(9), 120.0, "unknown", None,
                                            "no answer within the timeout"))
        ledger.finish(key(9), Status.SUCCEEDED, AttemptRecord(key(9), at(9, 125), 0.0,
                                                               "reconciled"))
        ledger.mark_already_imported(key(10), key(2))
        ledger.end_run(run2, 4, {"counts": {"succeeded": 2, "failed": 1, "reconciled": 1,
                                            "already imported": 1, "skipped": 4, "invalid": 3,
                                            "retries": 3},
                                 "expected": EXPECTED, "stopped": "budget: --max-uploads 4"})
    finally:
        ledger.close()
    return start
