"""Reports: what a run or a ledger holds, told to people and programs: summaries, ledger rows
as a table, CSV or JSON, the self-contained HTML page (``html_page``, imported only when asked
for), and every file written for the user, never over an input (``outputs``)."""

from .outputs import atomic_text
from .summaries import ledger_summary, summary_text

__all__ = ["atomic_text", "ledger_summary", "summary_text"]
