"""The ledger: one SQLite file (WAL) that remembers every row of every run, its state
(``states``), its attempts and the runs, written through one thread with group commit
(``writer``), by one process at a time (``lock``). What a run does with each row is decided by
a pure function (``admission``) from what the ledger holds."""

from .lock import LedgerLock
from .states import Status
from .store import Ledger

__all__ = ["Ledger", "LedgerLock", "Status"]
