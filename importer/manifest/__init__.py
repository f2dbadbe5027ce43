"""The manifest: a CSV or Excel sheet streamed in chunks of rows, each cell normalized to what
the API takes (``records``), each row known by a stable identity. Reading it never grows the
process, and a manifest that cannot work at all is refused before its first row."""

from .call_dates import RowContext
from .opening import Manifest, ManifestRow, open_manifest
from .records import UploadRecord, validate_row

__all__ = ["Manifest", "ManifestRow", "RowContext", "UploadRecord", "open_manifest",
           "validate_row"]
