"""convirza-import: bulk call-recording import into the Convirza API, with a resumable ledger.

The command line (``convirza-import``) is the main way in; these names are the library API
for embedding the importer in another program (an Airflow task, a notebook).
"""

from .audio import AudioInfo, probe
from .client import ConvirzaClient
from .errors import (
    ApiError,
    AudioError,
    AuthError,
    ImporterError,
    LedgerError,
    ManifestError,
    RateLimited,
    RequestRejected,
    RequestTimeout,
    RowError,
    ServerError,
    TransportError,
    UsageError,
)
from .events import Observer, Outcome, RowEvent, RunSummary
from .ledger import Ledger, Status
from .pipeline import ImportRun
from .records import UploadRecord
from .settings import Settings

__all__ = [
    "ApiError",
    "AudioError",
    "AudioInfo",
    "AuthError",
    "ConvirzaClient",
    "ImportRun",
    "ImporterError",
    "Ledger",
    "LedgerError",
    "ManifestError",
    "Observer",
    "Outcome",
    "RateLimited",
    "RequestRejected",
    "RequestTimeout",
    "RowError",
    "RowEvent",
    "RunSummary",
    "ServerError",
    "Settings",
    "Status",
    "TransportError",
    "UploadRecord",
    "UsageError",
    "probe",
]
