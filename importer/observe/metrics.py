"""Prometheus metrics of a run, for migrations that last days: an observer of the run's events,
served over HTTP while it runs (``--metrics-port``) and written to a file for node_exporter's
textfile collector (``--metrics-textfile``, for cron jobs whose process is gone before any
scrape).

Everything here is fed by events (``events.Observer``), never by code of its own in the
pipeline: rows by outcome, bytes, retries and what is left come from row events and the live
summary; latency, 429s, uploads in flight and the limiter's rate from the client's request
events; commit latency from the ledger's writer. Each run has a registry of its own (not
prometheus_client's global one), so that two runs in one process never share counters.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import start_http_server
from prometheus_client.process_collector import ProcessCollector

from ..errors import UsageError
from ..events import (
    UPLOAD_PATH,
    Outcome,
    RequestEvent,
    RowEvent,
    RunSummary,
    counter_of,
    is_row_outcome,
)
from ..observers import Observer
from ..reports.outputs import atomic_text

log = logging.getLogger("importer.metrics")

# No ``*_created`` series beside each counter: a run's start is known, and in a textfile they
# only double its size. (A setting of the library, for this process.)
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library

PREFIX = "convirza_import_"
#: Seconds between two writes of ``--metrics-textfile`` during a run (node_exporter reads the
#: file when Prometheus scrapes it, commonly every 15 to 60 seconds).
TEXTFILE_EVERY = 15.0
#: Request latency buckets: a lookup takes tens of milliseconds, a 50 MB upload minutes.
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Group commit buckets: an fsync takes about a millisecond on an SSD, tens on a busy disk.
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


#: The outcomes a run's rows are counted by, each a series from the start.
SERIES_OUTCOMES = tuple(o for o in Outcome if o is not Outcome.VALID and (
    is_row_outcome(o) or o is Outcome.OTHER_SHARD))
#: Metrics renamed by Prometheus' conventions (issue 23), old name to new, for dashboards.
RENAMED = {"convirza_import_bytes_sent_total": "convirza_import_sent_bytes_total"}


def label_of(outcome: Outcome) -> str:
    """The summary's counter of an outcome as a label value, in snake_case as Prometheus'
    conventions have it (``already imported`` -> ``already_imported``)."""
    return re.sub(r"[^a-z0-9]+", "_", counter_of(outcome).lower()).strip("_")


def status_class(status: int | None) -> str:
    """``2xx``, ``4xx``, ``5xx`` ...; ``none`` for a request that got no answer."""
    return "none" if status is None else f"{status // 100}xx"


class MetricsObserver(Observer):
    """The run's metrics, kept current from its events.

    ``labels`` are added to every metric (``{"shard": "0/4"}``): node_exporter refuses two
    textfiles that hold the same series, so shards on one machine must differ by a label.
    ``textfile``, when given, is written every ``every`` seconds from ``started`` on and once
    more, final, at ``finished``.
    """

    def __init__(self, *, labels: Mapping[str, str] | None = None,
                 textfile: Path | None = None, every: float = TEXTFILE_EVERY) -> None:
        self.registry = CollectorRegistry()
        self.textfile = textfile
        self._every = every
        self._const = dict(labels or {})
        self._summary = RunSummary(manifest="", ledger=None)
        self._stop_writing = threading.Event()
        self._writer: threading.Thread | None = None
        self._textfile_failed = False
        m = self._metric
        self.rows = m(Counter, "rows", "Rows that reached an outcome in this run, by outcome "
                      "(as the run's summary counts them)", ("outcome",))
        self.retries = m(Counter, "retries", "Attempts that failed and were tried again in the "
                         "same run")
        self.bytes_sent = m(Counter, "sent_bytes", "Bytes of recordings uploaded successfully")
        self.in_flight = m(Gauge, "uploads_in_flight", "Upload requests on their way now")
        self.latency = m(Histogram, "request_duration_seconds", "API requests, from leaving the "
                         "rate limiter to the answer read, by path and status class (2xx, "
                         "4xx, 5xx; none: no answer)", ("path", "status_class"),
                         buckets=REQUEST_BUCKETS)
        self.throttled = m(Counter, "throttled", "Answers 429 (Too Many Requests) from the API")
        self.rate = m(Gauge, "rate_limit_per_second", "The rate limiter's current pace "
                      "(it slows down after a 429 and recovers gradually)")
        self.allowed = m(Gauge, "api_allowed_per_second", "The pace the API was last found "
                         "to allow, from its 429s (NaN: it refused nothing)")
        self.expected = m(Gauge, "rows_expected", "Rows the manifest holds, roughly "
                          "(NaN: not known)")
        self.left = m(Gauge, "rows_left", "Rows of the manifest without an outcome yet "
                      "(NaN: not known)")
        self.eta = m(Gauge, "eta_seconds", "Estimated seconds until every row has an outcome, "
                     "at the run's pace so far (NaN: not known yet)")
        self.commit = m(Histogram, "ledger_commit_seconds", "Group commits of the ledger, from "
                        "BEGIN to durable COMMIT", buckets=COMMIT_BUCKETS)
        for gauge in (self.expected, self.left, self.eta, self.allowed):
            gauge.set(math.nan)
        for outcome in SERIES_OUTCOMES:  # every series at 0 from the start: rate() sees the 1st
            self._labelled(self.rows, outcome=label_of(outcome))
        self._finished = threading.Event()
        self._scraped_after = threading.Event()

    def _metric(self, kind: Any, name: str, doc: str, labelnames: Sequence[str] = (),
                **kwargs: Any) -> Any:
        """A metric of this registry carrying the constant labels; a metric without labels of
        its own is returned bound to them, ready to ``inc``/``set``/``observe``."""
        metric = kind(PREFIX + name, doc, (*labelnames, *self._const), registry=self.registry,
                      **kwargs)
        return metric if labelnames else (metric.labels(**self._const) if self._const
                                          else metric)

    def _labelled(self, metric: Any, **labels: str) -> Any:
        return metric.labels(**labels, **self._const)

    # --- events ---------------------------------------------------------------------------

    def started(self, summary: RunSummary) -> None:
        self._summary = summary
        self._finished.clear()  # a job's next manifest: its end is the one to wait for
        self._scraped_after.clear()
        if summary.expected is not None:
            self.expected.set(summary.expected)
        self._estimate()
        if self.textfile is not None and self._writer is None:
            self._writer = threading.Thread(target=self._write_periodically,
                                            name="metrics-textfile", daemon=True)
            self._writer.start()

    def row(self, event: RowEvent) -> None:
        self.passed(event.outcome, 1)
        if event.outcome is Outcome.SUCCEEDED:
            self.bytes_sent.inc(event.size)

    def passed(self, outcome: Outcome, n: int) -> None:
        if outcome is Outcome.RETRYING:
            self.retries.inc(n)
        elif is_row_outcome(outcome) or outcome is Outcome.OTHER_SHARD:
            self._labelled(self.rows, outcome=label_of(outcome)).inc(n)
        self._estimate()

    def finished(self, summary: RunSummary) -> None:
        self._estimate()
        if summary.left is not None:  # the ledger's own count, as every report tells it
            self.left.set(summary.left)
        outcome = self._metric(Gauge, "exit_code", "The run's exit code (0 all done, 1 some "
                               "rows failed or invalid, see the README)")
        outcome.set(summary.exit_code)
        ended = self._metric(Gauge, "finished_timestamp_seconds", "When the run ended (Unix "
                             "time): alert when the nightly run has not ended for a day")
        ended.set(time.time())
        self._finished.set()
        if self.textfile is not None:
            self._stop_writing.set()
            if self._writer is not None:
                self._writer.join()
            self.write_textfile()

    def request_started(self, method: str, path: str) -> None:
        if path == UPLOAD_PATH:
            self.in_flight.inc()

    def request_finished(self, event: RequestEvent) -> None:
        if event.path == UPLOAD_PATH:
            self.in_flight.dec()
        self._labelled(self.latency, path=event.path,
                       status_class=status_class(event.status)).observe(event.seconds)
        if event.status == 429:
            self.throttled.inc()
        self.rate.set(event.rate)
        if event.allowed is not None:
            self.allowed.set(event.allowed)

    def committed(self, seconds: float, calls: int) -> None:
        self.commit.observe(seconds)

    def _estimate(self) -> None:
        """Rows left and the time they take at the pace so far, as the progress line says."""
        s = self._summary
        if not s.expected:
            return
        done = s.rows + s.counts["other shards"]
        left = max(0, s.expected - done)
        self.left.set(left)
        elapsed = time.monotonic() - s.started
        if left == 0:
            self.eta.set(0)
        elif done and elapsed > 0:
            self.eta.set(left * elapsed / done)

    # --- outputs --------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format, as ``/metrics`` serves them."""
        return generate_latest(self.registry)

    def write_textfile(self) -> None:
        """Write ``textfile`` whole (a temporary file renamed over it): node_exporter never
        reads half a file. A failure is logged, once, and the run goes on."""
        if self.textfile is None:
            return
        try:
            with atomic_text(self.textfile) as out:
                out.write(self.exposition().decode())
        except UsageError as exc:
            if not self._textfile_failed:
                self._textfile_failed = True
                log.error("--metrics-textfile: %s", exc)

    def _write_periodically(self) -> None:
        while not self._stop_writing.wait(self._every):
            self.write_textfile()

    def collect(self) -> Iterator[Any]:
        """A scrape's look (the served registry asks each collector): one that comes after
        the run ended has read the final counts, and lets a lingering server go."""
        if self._finished.is_set():
            self._scraped_after.set()
        return iter(())

    def describe(self) -> list[Any]:
        return []  # no metric of its own: registering it collects nothing ahead of time

    @contextlib.contextmanager
    def serve(self, host: str, port: int, linger: float = 0.0) -> Iterator[str]:
        """Serve ``/metrics`` on ``host:port`` (0: a free port) in a thread, for as long as the
        ``with`` block lasts, and after the run ended until a scrape has read its final counts,
        ``linger`` seconds at most; yields the URL. The process's own metrics (memory, CPU, open
        files) are served beside the run's, as Prometheus clients do; the textfile leaves them
        out, since its process is gone by the time it is read."""
        served = CollectorRegistry()
        served.register(self.registry)
        served.register(self)  # a collector by its methods (collect, describe)
        ProcessCollector(registry=served)
        try:
            server, thread = start_http_server(port, addr=host, registry=served)
        except OSError as exc:
            raise UsageError(f"--metrics-port {port}: cannot listen on {host}:{port} "
                             f"({exc.strerror or exc})") from None
        name = f"[{host}]" if ":" in host else host
        url = f"http://{name}:{server.server_port}/metrics"
        log.info("metrics: %s", url)
        try:
            yield url
            if linger > 0 and self._finished.is_set():
                log.info("metrics: the run ended; %s serves its final counts until the next "
                         "scrape, for %g s at most (--metrics-linger)", url, linger)
                self._scraped_after.wait(linger)
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
