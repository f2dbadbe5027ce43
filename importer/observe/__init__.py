"""Observers of a run: the progress bar (or a periodic log line) and the Prometheus metrics
(``metrics``, imported only when asked for). They watch the run through the ``Observer``
protocol of ``importer.events`` and never live inside it."""

from .progress import ProgressObserver

__all__ = ["ProgressObserver"]
