"""The run: a manifest (or a ledger's failed rows) through the ledger and the client. A bounded
queue between the reader and the workers; each worker checks a row's recording, claims the row,
sends it and settles it; guards stop the run on a budget or a failing API. ``jobs`` runs one
command's manifests in turn; ``verify`` looks every imported row up afterwards."""

from .findings import VerifyResult
from .jobs import ImportJob, ImportResult
from .pipeline import ImportRun
from .verify import Verifier

__all__ = ["ImportJob", "ImportResult", "ImportRun", "Verifier", "VerifyResult"]
