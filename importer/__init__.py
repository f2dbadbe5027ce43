"""convirza-import: bulk call-recording import into the Convirza API, with a resumable ledger.

The command line (``convirza-import``) is the main way in; these names are the library API
for embedding the importer in another program (an Airflow task, a notebook). For schedulers,
``run_import``, ``validate_manifest``, ``retry_ledger`` and ``verify_ledger`` do what the
commands do and return an ``ImportResult`` or a ``VerifyResult`` (see ``importer.api``); their
``_async`` twins do the same in the caller's event loop.
"""

from .api import (
    retry_ledger,
    retry_ledger_async,
    run_import,
    run_import_async,
    validate_manifest,
    validate_manifest_async,
    verify_ledger,
    verify_ledger_async,
)
from .audio.info import AudioInfo
from .audio.probing import probe
from .client.session import ConvirzaClient
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
from .events import Outcome, RowEvent, RunSummary, StopReason
from .ledger.states import Status
from .ledger.store import Ledger
from .manifest.records import UploadRecord
from .observers import Observer
from .run.findings import VerifyResult
from .run.jobs import ImportResult
from .run.pipeline import ImportRun
from .settings.resolve import Settings

__all__ = [
    "ApiError",
    "AudioError",
    "AudioInfo",
    "AuthError",
    "ConvirzaClient",
    "ImportResult",
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
    "StopReason",
    "TransportError",
    "UploadRecord",
    "UsageError",
    "VerifyResult",
    "probe",
    "retry_ledger",
    "retry_ledger_async",
    "run_import",
    "run_import_async",
    "validate_manifest",
    "validate_manifest_async",
    "verify_ledger",
    "verify_ledger_async",
]
