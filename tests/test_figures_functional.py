"""Every output tells the same numbers (issue 23): the end-of-run summary, ``--summary-json``,
the metrics, ``report`` as text and JSON, and the HTML page, after each step of a realistic
sequence on one ledger: a run with invalid rows, its errors CSV fixed and run, an outage
(the sandbox's faults), a retry, and a resume.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from importer.cli.commands import main

from .conftest import SandboxThread
from .helpers import many_rows, status_counts, write_manifest

#: The figures the HTML page shows with a ``data-value`` and the JSON gives under ``figures``.
PAGE_FIGURES = ("rows", "pending", "uploading", "succeeded", "failed", "invalid", "left",
                "rows_known", "retries", "imported")


def metrics_of(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The textfile's samples, read by prometheus_client's own parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(path.read_text())
            for s in family.samples}


class Steps:
    """Runs commands with a summary and a metrics textfile of their own, and checks after
    each that every output agrees."""

    def __init__(self, workdir: Path, ledger: Path) -> None:
        self.workdir, self.ledger, self.n = workdir, ledger, 0
        self.retries = 0

    def __call__(self, *args: str) -> tuple[int, dict[str, object]]:
        self.n += 1
        summary, prom = (self.workdir / f"summary-{self.n}.json",
                         self.workdir / f"metrics-{self.n}.prom")
        ledger = ["--ledger", str(self.ledger)] if args[0] == "run" else []
        code = main([*args, *ledger, "--summary-json", str(summary),
                     "--metrics-textfile", str(prom), "--quiet", "--backoff-base", "0.01"])
        told = json.loads(summary.read_text())
        self.run_agrees_with_its_metrics(told, metrics_of(prom))
        self.retries += int(told["counts"].get("retries", 0))  # type: ignore[attr-defined]
        self.reports_agree(told)
        return code, told

    @staticmethod
    def run_agrees_with_its_metrics(told: dict[str, object],
                                    metrics: dict[tuple[str, tuple[tuple[str, str], ...]],
                                                  float]) -> None:
        counts = told["counts"]
        assert isinstance(counts, dict)
        rows = {dict(labels)["outcome"]: int(v) for (name, labels), v in metrics.items()
                if name == "convirza_import_rows_total"}
        assert {k: v for k, v in rows.items() if v} == \
            {k.replace(" ", "_").lower(): v for k, v in counts.items()
             if v and k not in ("retries", "resent after lookup")}
        assert metrics[("convirza_import_retries_total", ())] == counts.get("retries", 0)
        assert metrics[("convirza_import_sent_bytes_total", ())] == told["bytes_sent"]
        assert metrics[("convirza_import_rows_left", ())] == told["left"]

    def reports_agree(self, told: dict[str, object]) -> None:
        out = self.workdir / f"report-{self.n}"
        assert main(["report", str(self.ledger), "--summary", "--format", "json", "--output",
                     f"{out}.json"]) == 0
        figures = json.loads(Path(f"{out}.json").read_text())["total"]["figures"]
        assert main(["report", str(self.ledger), "--output", f"{out}.txt"]) == 0
        text = Path(f"{out}.txt").read_text()
        assert main(["report", str(self.ledger), "--format", "html", "--output",
                     f"{out}.html"]) == 0
        page = Path(f"{out}.html").read_text()
        shown = {name: json.loads(value) for name, value in
                 re.findall(r'data-figure="([a-z_]+)" data-value="([^"]*)"', page)}

        assert figures["left"] == told["left"]                  # the run's last word
        assert figures["retries"] == self.retries               # the runs' retries, added up
        assert dict(status_counts(self.ledger)) == \
            {k: figures[k] for k in ("pending", "uploading", "succeeded", "failed", "invalid")
             if figures[k]}
        assert {k: shown[k] for k in PAGE_FIGURES} == {k: figures[k] for k in PAGE_FIGURES}
        assert shown.get("average_per_minute", 0.0) == figures["average_per_minute"]
        assert shown.get("recent_per_minute", 0.0) == figures["recent_per_minute"]
        assert (f"left to do {figures['left']} " in text and
                f"of {figures['rows_known']} rows known" in text and
                f"retries {figures['retries']};" in text), text
        line = re.search(r"against the ([\d,]+) rows known", page)
        assert line is None or int(line.group(1).replace(",", "")) == figures["rows_known"]


def test_every_output_tells_the_same_numbers(workdir: Path, sandbox: SandboxThread,
                                             token_env: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = workdir / "manifests"
    rows = many_rows(workdir, 6, "F")
    rows[1]["caller_id"] = rows[4]["caller_id"] = "call me"
    calls = write_manifest(folder / "calls.csv", rows)
    outage = write_manifest(folder / "outage.csv", many_rows(workdir, 8, "G"))
    ledger = workdir / "migration.ledger.sqlite"
    step = Steps(workdir, ledger)

    # 1. A run with two invalid rows, written out to be fixed.
    errors = folder / "errors.csv"
    code, told = step("run", str(calls), "--errors-out", str(errors))
    assert code == 1 and told["counts"] == {"succeeded": 4, "invalid": 2}
    assert told["left"] == 0

    # 2. The errors CSV fixed and run: nothing is left, nothing is counted twice.
    with errors.open(newline="") as handle:
        fixed = [{**r, "caller_id": "6175550199"} for r in csv.DictReader(handle)]
    write_manifest(folder / "fixed.csv", fixed)
    code, told = step("run", str(folder / "fixed.csv"))
    assert code == 0 and told["counts"]["succeeded"] == 2 and told["left"] == 0
    page = (workdir / f"report-{step.n}.html").read_text()
    assert 'data-figure="rows_known" data-value="6"' in page  # not 6 + the 2 fed back
    uploads = re.search(r'<svg class="chart" id="uploads".*?</svg>', page)
    assert uploads is not None and "<path" in uploads.group()  # a minute of uploads shows

    # 3. An outage: every upload answered 500, retried once, until the breaker stops the run
    # with rows pending and rows never read.
    sandbox.set_faults(fail_rate=1.0)
    monkeypatch.setenv("CONVIRZA_CHUNK_ROWS", "1")  # rows read one by one: some stay unread
    monkeypatch.setenv("CONVIRZA_QUEUE_SIZE", "1")
    code, told = step("run", str(outage), "--max-attempts", "2", "--concurrency", "1",
                      "--max-consecutive-failures", "2")
    assert code == 4 and told["counts"]["failed"] == 2 and told["counts"]["retries"] == 2
    assert told["left"] > 0

    # 4. The API back: retry sends the failed rows (the unread ones wait for run).
    sandbox.set_faults(fail_rate=0.0)
    code, told = step("retry", str(ledger))
    assert told["counts"]["succeeded"] >= 2

    # 5. The resume: the outage's manifest run again reads the rest.
    code, told = step("run", str(outage))
    assert code == 0 and told["left"] == 0
    final = json.loads((workdir / f"report-{step.n}.json").read_text())["total"]["figures"]
    assert (final["rows"], final["rows_known"], final["left"], final["succeeded"]) == \
        (14, 14, 0, 14)
    assert final["retries"] == 2
