"""The HTML report's aggregation, against ledgers whose contents are known (``known_ledger``):
real SQLite files written by the real ``Ledger`` class."""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from importer.cli.commands import main
from importer.errors import LedgerError
from importer.ledger.admission import Admission
from importer.ledger.states import Status
from importer.ledger.stats import BINS_PER_DECADE, Minute, collect, percentile, timeline
from importer.ledger.store import Ledger
from importer.reports.html_page import render

from . import known_ledger
from .known_ledger import EXPECTED, SIZES, build


def totals(minutes: dict[str, Minute]) -> Minute:
    total = Minute()
    for minute in minutes.values():
        total.add(minute)
    return total


def test_counts_sizes_and_duplicates_of_a_known_ledger(tmp_path: Path) -> None:
    build(tmp_path / "l.sqlite")
    stats = collect([tmp_path / "l.sqlite"])

    assert dict(stats.counts) == {"succeeded": 8, "failed": 1, "invalid": 3, "pending": 1}
    assert stats.rows == 13
    assert stats.imported == 7  # rows 2-7 and 9; row 10 was already imported, nothing sent
    assert stats.bytes_imported == sum(SIZES[r] for r in (2, 3, 4, 5, 6, 7, 9))
    assert (stats.already_imported, stats.duplicates, stats.reconciled) == (1, 1, 1)
    assert stats.unread == EXPECTED - 13  # its last run stopped early
    f = stats.figures()
    assert f.left == 1 + EXPECTED - 13  # the pending row and those not read yet
    assert (f.rows_known, f.retries) == (EXPECTED, 3)


def test_attempts_by_minute(tmp_path: Path) -> None:
    start = build(tmp_path / "l.sqlite")
    stats = collect([tmp_path / "l.sqlite"])

    all_minutes = totals(stats.minutes)
    assert all_minutes.succeeded == 6                      # rows 2-7
    assert all_minutes.failed == 1 + 3 + 1                 # the 429, three 500s, the timeout
    assert all_minutes.throttled == 1
    assert all_minutes.retries == 1 + 2                    # row 2 once, row 8 twice
    assert all_minutes.done == 8 and all_minutes.ended_badly == 4
    assert sum(all_minutes.latency.values()) == 11         # every request sent, no lookup
    first = stats.minutes[start.isoformat()[:16]]
    assert (first.succeeded, first.failed, first.throttled, first.retries) == (1, 1, 1, 1)
    row8 = stats.minutes[(start + timedelta(minutes=6)).isoformat()[:16]]
    assert (row8.failed, row8.retries) == (3, 2)
    assert percentile(row8.latency, 0.5) == pytest.approx(2.0, rel=0.07)


def test_reasons_examples_runs_and_problem_rows(tmp_path: Path) -> None:
    build(tmp_path / "l.sqlite")
    stats = collect([tmp_path / "l.sqlite"], examples=1)

    assert [(r.status, r.reason, r.rows) for r in stats.reasons] == [
        ("invalid", known_ledger.PHONE, 2),
        ("failed", "HTTP 500: Internal Server Error", 1),
        ("invalid", "duplicate of an earlier row", 1)]
    assert [e.row for e in stats.reasons[0].examples] == [12]  # the first in manifest order
    assert [e.row for e in stats.problems] == [8, 12, 13, 14]
    assert stats.problems_total == 4
    assert [(r.id, r.exit_code, r.expected) for r in stats.runs] == [(1, 130, EXPECTED),
                                                                      (2, 4, EXPECTED)]
    assert stats.runs[1].counts["reconciled"] == 1


def test_timeline_buckets_and_pace(tmp_path: Path) -> None:
    build(tmp_path / "l.sqlite")
    stats = collect([tmp_path / "l.sqlite"])
    line = timeline(stats)
    assert line is not None
    assert line.width == 1  # three hours fit in 360 one-minute points
    assert line.done[-1] == 8 and line.ended_badly[-1] == 4
    assert line.done == sorted(line.done)
    assert sum(line.throttled) == 1 and sum(line.retries) == 3
    coarse = timeline(stats, points=10)
    assert coarse is not None and coarse.width == 30
    assert sum(coarse.succeeded) * coarse.width == pytest.approx(6)
    assert coarse.done[-1] == 8

    f = stats.figures()
    assert f.rates.active_minutes == 8  # minutes with an upload attempt (rows 2-9)
    assert f.rates.average == f.rates.recent == pytest.approx(6 / 8)  # the same window
    assert f.eta_minutes == pytest.approx(f.left / (6 / 8))


def test_percentiles_from_the_histogram() -> None:
    histogram: Counter[int] = Counter()
    for seconds in [0.1] * 50 + [1.0] * 40 + [10.0] * 10:
        histogram[math.floor(BINS_PER_DECADE * math.log10(seconds))] += 1
    assert percentile(histogram, 0.5) == pytest.approx(0.1, rel=0.07)
    assert percentile(histogram, 0.9) == pytest.approx(1.0, rel=0.07)
    assert percentile(histogram, 0.99) == pytest.approx(10.0, rel=0.07)
    assert percentile(Counter(), 0.5) is None


def test_shards_add_up_and_the_manifest_counts_once(tmp_path: Path) -> None:
    start = build(tmp_path / "a.sqlite")
    build(tmp_path / "b.sqlite", start)
    stats = collect([tmp_path / "a.sqlite", tmp_path / "b.sqlite"])

    assert stats.counts["succeeded"] == 16 and stats.rows == 26
    assert stats.per_ledger == [{"pending": 1, "uploading": 0, "succeeded": 8, "failed": 1,
                                 "invalid": 3}] * 2
    assert totals(stats.minutes).succeeded == 12
    # One manifest of 20 rows, both shards' ledgers hold 26 between them: none left unread.
    assert stats.unread == 0
    assert len(stats.runs) == 4


def test_an_empty_ledger_and_one_with_nothing_sent_render(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    Ledger.open(empty).close()
    stats = collect([empty])
    assert stats.rows == 0 and timeline(stats) is None and stats.unread == 0
    assert "Nothing was sent yet" in render(stats)

    path = tmp_path / "l.sqlite"
    ledger = Ledger.open(path, durable=False)
    run = ledger.begin_run("run", "/m.csv")
    ledger.admit(run, [Admission("ext:x", "x", "/m.csv", 2, "x.wav", Status.INVALID, "f",
                                 None, "row 2: <script>alert(1)</script>", "bad")])
    ledger.close()
    page = render(collect([path]))
    assert '<span data-figure="invalid" data-value="1">1</span>' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


class _Tags(HTMLParser):
    """Every tag of a page, and every attribute that could make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.fetching: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.fetching += [(tag, name, value) for name, value in attrs
                          if name in ("src", "href", "srcset", "data", "poster", "action")
                          or (name == "style" and "url(" in (value or ""))]


def test_ledger_text_is_escaped_and_the_page_fetches_nothing(tmp_path: Path) -> None:
    build(tmp_path / "l.sqlite",
          error_text='caller_id: <img src="http://x/y.png"><script>x()</script> \x1b[31m')
    page = render(collect([tmp_path / "l.sqlite"]))
    assert "\x1b" not in page
    tags = _Tags()
    tags.feed(page)
    assert not tags.tags & {"img", "script", "link", "iframe", "object", "embed", "audio",
                            "video", "source", "base", "form"}
    assert tags.fetching == []
    assert "url(" not in page and "@import" not in page
    assert {"svg", "title", "desc", "table", "figure", "figcaption"} <= tags.tags


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(LedgerError, match=r"junk\.sqlite: cannot read the ledger"):
        collect([junk])
    with sqlite3.connect(tmp_path / "empty.sqlite") as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(LedgerError, match="cannot read the ledger"):
        collect([tmp_path / "empty.sqlite"])


def test_report_html_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = tmp_path / "l.sqlite"
    build(ledger)
    page = tmp_path / "report.html"
    assert main(["report", str(ledger), "--format", "html", "--output", str(page)]) == 0
    assert page.read_text().startswith("<!doctype html>")
    assert main(["report", str(ledger), "--format", "html"]) == 0  # to standard output
    assert '<span data-figure="rows" data-value="13">13</span>' in capsys.readouterr().out
    assert main(["report", str(ledger), "--format", "html", "--status", "failed"]) == 2
    assert "--status" in capsys.readouterr().err
    assert main(["report", str(ledger), "--format", "html", "--output", str(ledger)]) == 2
    assert "the ledger" in capsys.readouterr().err
