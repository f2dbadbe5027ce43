"""The pace the API allowed is said and remembered (issue 20, items 2 and 3): a run over-asking
the sandbox's limit says what the API allowed and how many answers were 429, in its summary,
its JSON summary, ``report``, the HTML report and the metrics; the next run of the ledger
starts from that pace and says so. Real HTTP to the sandbox (its sliding window), real SQLite,
real audio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from importer.cli import main

from .conftest import SandboxThread
from .helpers import many_rows, write_manifest

LIMIT = 20.0


def run(manifest: Path, ledger: Path, *flags: str) -> int:
    return main(["run", str(manifest), "--ledger", str(ledger), "--rate", "40",
                 "--concurrency", "8", "--max-attempts", "20", *flags])


def test_a_run_over_the_limit_says_the_pace_the_api_allowed_and_the_next_starts_there(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.set_faults(rate_limit=LIMIT, rate_model="sliding")
    rows = many_rows(workdir, 90)
    manifest = write_manifest(workdir / "manifests" / "m.csv", rows[:60])
    ledger, first, second = workdir / "l.sqlite", workdir / "1.json", workdir / "2.json"
    textfile = workdir / "run.prom"

    assert run(manifest, ledger, "--summary-json", str(first),
               "--metrics-textfile", str(textfile)) == 0

    pace = json.loads(first.read_text())["pace"]
    assert pace["asked"] == 40 and pace["refused"] >= 1 and pace["pauses"] >= 1
    assert 0.5 * LIMIT <= pace["allowed"] <= LIMIT
    assert pace["started_from"] is None
    out = capsys.readouterr().out
    assert f"The API allowed about {pace['allowed']:.1f} requests a second; " \
           f"{pace['refused']} answer" in out
    metrics = textfile.read_text()
    assert "convirza_import_api_allowed_per_second " in metrics
    assert "convirza_import_api_allowed_per_second NaN" not in metrics

    write_manifest(manifest, rows)  # the next night: 30 more rows
    assert run(manifest, ledger, "--summary-json", str(second)) == 0

    again = json.loads(second.read_text())["pace"]
    assert again["started_from"] == pace["allowed"]
    assert "Started at the pace the API allowed on the last run of this ledger, about " \
           f"{pace['allowed']:.1f} requests a second (--rate 40 asked)" in capsys.readouterr().out
    assert sandbox.store.count() == 90

    assert main(["report", str(ledger)]) == 0
    assert f"the API allowed about {pace['allowed']:.1f} requests a second" in \
        capsys.readouterr().out
    page = workdir / "report.html"
    assert main(["report", str(ledger), "--format", "html", "--output", str(page)]) == 0
    assert f"about {pace['allowed']:.1f}/s allowed" in page.read_text()


def test_a_rate_refused_often_is_told_the_rate_to_ask_for(
        workdir: Path, sandbox: SandboxThread, token_env: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A limit that keeps dropping (other clients) refuses the run again and again."""
    sandbox.set_faults(rate_schedule=((0.0, 20.0), (1.5, 12.0), (3.0, 8.0)),
                       rate_model="sliding")
    manifest = write_manifest(workdir / "manifests" / "m.csv", many_rows(workdir, 40))

    assert run(manifest, workdir / "l.sqlite") == 0

    out = capsys.readouterr().out
    assert "would avoid them (the ledger remembers the pace: its next run starts there)" in out
