"""Prometheus metrics of a real run against the sandbox: ``/metrics`` scraped over real HTTP
while uploads are under way, and the textfile a cron-style run leaves for node_exporter."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from importer.cli.commands import main
from importer.events import UPLOAD_PATH
from importer.observe.metrics import MetricsObserver
from importer.observe.progress import ProgressObserver
from importer.observers import FanOut
from importer.run.pipeline import ImportRun, Upload
from importer.settings.resolve import Settings

from .conftest import TOKEN, SandboxThread

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get(("convirza_import_" + name, tuple(sorted(labels.items()))), 0.0)


#: Straight to the loopback server, whatever proxy the environment names.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def scrape(url: str) -> Samples:
    with DIRECT.open(url, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        return parse(answer.read().decode())


@dataclass
class Scraper:
    """Scrapes ``url`` over and over from a thread until stopped, keeping every page; notes
    whether ``textfile`` was already written while it ran."""

    url: str
    textfile: Path | None = None
    pages: list[Samples] = field(default_factory=list)
    textfile_seen: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.pages.append(scrape(self.url))
            except (urllib.error.URLError, ConnectionError):
                continue  # not listening yet, or already closed
            if self.textfile is not None and self.textfile.is_file():
                self.textfile_seen = True

    @classmethod
    @contextlib.contextmanager
    def running(cls, url: str, textfile: Path | None = None) -> Iterator[Scraper]:
        scraper = cls(url, textfile)
        thread = threading.Thread(target=scraper.run, daemon=True)
        thread.start()
        try:
            yield scraper
        finally:
            scraper._stop.set()
            thread.join()


def slow_sandbox(sandbox: SandboxThread) -> None:
    """Uploads that take a while, and a rate limit our --rate exceeds, so that a run lasts
    long enough to be scraped mid-way and meets 429s."""
    sandbox.set_faults(latency=0.2, rate_limit=4.0, rate_burst=2)


async def test_metrics_rise_during_a_run_then_equal_its_summary(
        workdir: Path, sandbox: SandboxThread) -> None:
    slow_sandbox(sandbox)
    settings = Settings.load({"api_url": sandbox.url, "token": TOKEN, "rate": 20.0,
                              "concurrency": 3, "timezone": "America/New_York",
                              "ledger": workdir / "ledger.sqlite"}, environ={})
    textfile = workdir / "import.prom"
    metrics = MetricsObserver(textfile=textfile, every=0.05)
    run = ImportRun(settings, Upload(workdir / "manifests" / "sample.csv"),
                    observer=FanOut(ProgressObserver(), metrics))
    with metrics.serve("127.0.0.1", 0) as url:
        with Scraper.running(url, textfile) as scraper:
            summary = await run.execute()
        final = scrape(url)

    succeeded = [value(p, "rows_total", outcome="succeeded") for p in scraper.pages]
    assert succeeded == sorted(succeeded)                     # counters only rise
    assert any(0 < n < summary.counts["succeeded"] for n in succeeded)  # seen mid-way
    assert max(value(p, "uploads_in_flight") for p in scraper.pages) >= 1
    assert scraper.textfile_seen  # written periodically, not only at the end

    assert summary.counts["succeeded"] == 8
    for outcome in ("succeeded", "failed", "invalid", "skipped"):
        assert value(final, "rows_total", outcome=outcome) == summary.counts[outcome]
    assert value(final, "sent_bytes_total") == summary.bytes_sent > 0
    assert value(final, "retries_total") == summary.counts["retries"]
    assert value(final, "throttled_total") == sandbox.state.throttled > 0
    assert value(final, "uploads_in_flight") == 0
    assert value(final, "rows_expected") == 8
    assert value(final, "rows_left") == 0 and value(final, "eta_seconds") == 0
    assert value(final, "exit_code") == 0
    # Latency by status class: the uploads answered 200 and those answered 429.
    ok = value(final, "request_duration_seconds_count", path=UPLOAD_PATH, status_class="2xx")
    throttled = value(final, "request_duration_seconds_count", path=UPLOAD_PATH,
                      status_class="4xx")
    assert ok == summary.counts["succeeded"] and throttled > 0
    assert ok + throttled == summary.counts["succeeded"] + summary.counts["retries"]
    assert value(final, "request_duration_seconds_bucket", path=UPLOAD_PATH,
                 status_class="2xx", le="+Inf") == ok
    assert 0 < value(final, "rate_limit_per_second") <= 20
    assert value(final, "ledger_commit_seconds_count") > 0
    assert ("process_resident_memory_bytes", ()) in final
    # The textfile's last write is the final state, without the process's own metrics.
    written = parse(textfile.read_text())
    assert value(written, "rows_total", outcome="succeeded") == 8
    assert ("process_resident_memory_bytes", ()) not in written


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_serves_metrics_on_loopback_while_it_lasts(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    sandbox.set_faults(latency=0.2)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with Scraper.running(url) as scraper:
        code = main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger",
                     str(workdir / "ledger.sqlite"), "--metrics-port", str(port), "--quiet",
                     "--concurrency", "2"])

    assert code == 0
    assert scraper.pages, "nothing was served during the run"
    assert max(value(p, "rows_total", outcome="succeeded") for p in scraper.pages) <= 8
    with pytest.raises(urllib.error.URLError):
        scrape(url)  # closed with the run


def test_cron_run_leaves_a_textfile_for_node_exporter(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    textfile = workdir / "textfile" / "convirza.prom"
    textfile.parent.mkdir()
    ledger = workdir / "ledger.sqlite"
    manifest = workdir / "manifests" / "sample.csv"
    args = ["run", str(manifest), "--ledger", str(ledger), "--metrics-textfile", str(textfile),
            "--quiet", "--shard", "0/1"]
    assert main(args) == 0

    first = parse(textfile.read_text())
    assert value(first, "rows_total", outcome="succeeded", shard="0/1") == 8
    assert value(first, "exit_code", shard="0/1") == 0
    assert value(first, "finished_timestamp_seconds", shard="0/1") > 0
    assert list(textfile.parent.iterdir()) == [textfile]  # no temporary file left behind

    assert main(args) == 0  # the next night: nothing left to do, the file says so
    again = parse(textfile.read_text())
    assert value(again, "rows_total", outcome="skipped", shard="0/1") == 8
    assert value(again, "rows_total", outcome="succeeded", shard="0/1") == 0


def test_textfile_never_overwrites_the_ledger(workdir: Path, sandbox: SandboxThread,
                                              token_env: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    ledger = workdir / "ledger.sqlite"
    code = main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger", str(ledger),
                 "--metrics-textfile", str(ledger)])
    assert code == 2
    assert "--metrics-textfile" in capsys.readouterr().err
    assert not ledger.exists()


def test_metrics_follow_prometheus_conventions() -> None:
    """Read by prometheus_client's own parser before any event: units last, label values in
    snake_case, and every outcome's series there at 0, so that ``rate()`` and an alert see
    the first failure as an increase, not as a series appearing."""
    families = {f.name: f for f in text_string_to_metric_families(
        MetricsObserver().exposition().decode())}
    assert families["convirza_import_sent_bytes"].type == "counter"
    assert "convirza_import_bytes_sent" not in families
    rows = {s.labels["outcome"]: s.value for s in families["convirza_import_rows"].samples}
    assert set(rows) == {"succeeded", "failed", "invalid", "skipped", "reconciled",
                         "unresolved", "already_imported", "found_in_convirza", "too_new",
                         "other_shards"}
    assert set(rows.values()) == {0.0}
    for family in families.values():
        for sample in family.samples:
            assert all(re.fullmatch(r"[a-z0-9_./+-]*", v)  # a bucket's le is Prometheus' own
                       for k, v in sample.labels.items() if k != "le"), sample
    assert families["convirza_import_request_duration_seconds"].type == "histogram"


def test_the_endpoint_lingers_until_the_final_counts_are_scraped(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    sandbox.set_faults(latency=0.1)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    summary = workdir / "summary.json"
    with Scraper.running(url) as scraper:  # scrapes every 20 ms, from a thread
        code = main(["run", str(workdir / "manifests" / "sample.csv"), "--ledger",
                     str(workdir / "ledger.sqlite"), "--metrics-port", str(port), "--quiet",
                     "--metrics-linger", "600", "--summary-json", str(summary)])
        # main returned: the scrape after the run's end let it go, long before 600 s.
    assert code == 0
    last = next(p for p in scraper.pages if ("convirza_import_exit_code", ()) in p)
    told = json.loads(summary.read_text())
    assert value(last, "rows_total", outcome="succeeded") == told["counts"]["succeeded"] == 8
    assert value(last, "sent_bytes_total") == told["bytes_sent"]
    assert value(last, "rows_left") == told["left"] == 0
