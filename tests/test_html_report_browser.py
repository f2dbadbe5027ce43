"""The HTML report in a real browser: headless Chromium (Debian's package, driven by
Playwright) opens the page from a file:// URL, as a person opening an e-mail attachment would.

Playwright's own browser download cannot reach the network here, so the test launches
``/usr/bin/chromium``; ``.ci/run`` installs it. Without it the test fails, loudly: a report
that was never opened in a browser is not tested.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from importer.cli.commands import main

from .known_ledger import build

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def ledger_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        counts = dict(conn.execute("SELECT status, COUNT(*) FROM recordings GROUP BY status"))
    counts["rows"] = sum(counts.values())
    return counts


def test_report_page_in_headless_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y "
                    "chromium; .ci/run does) to test the HTML report in a browser")
    from playwright.sync_api import sync_playwright

    shards = [tmp_path / "shard-0.sqlite", tmp_path / "shard-1.sqlite"]
    start = build(shards[0])
    build(shards[1], start)
    page_file = tmp_path / "report.html"
    assert main(["report", *map(str, shards), "--format", "html", "--output",
                 str(page_file)]) == 0
    url = page_file.resolve().as_uri()
    report_json = tmp_path / "report.json"
    assert main(["report", *map(str, shards), "--summary", "--format", "json", "--output",
                 str(report_json)]) == 0

    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(url, wait_until="load")

            charts = page.locator("svg.chart")
            assert charts.count() == 6  # four over time, error reasons, runs
            for i in range(charts.count()):
                chart = charts.nth(i)
                box = chart.bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 100, i
                labelled = chart.get_attribute("aria-labelledby") or ""
                assert chart.get_attribute("role") == "img" and labelled
                for part in labelled.split():  # a title and a description, both with text
                    assert (page.locator(f"#{part}").text_content() or "").strip(), part
                assert chart.locator("path, rect").count() > 0, i  # something is drawn

            figures = {name: int(page.locator(f'[data-figure="{name}"]').inner_text()
                                 .replace(",", ""))
                       for name in ("rows", "succeeded", "failed", "invalid", "pending")}
            expected = {name: sum(ledger_counts(s).get(name, 0) for s in shards)
                        for name in figures}
            assert figures == expected
            assert expected["rows"] == 26
            # Every figure the page shows is the one `report --format json` gives.
            told = json.loads(report_json.read_text())["total"]["figures"]
            shown = page.locator("[data-figure][data-value]")
            assert shown.count() >= 12
            for i in range(shown.count()):
                figure = shown.nth(i)
                name = figure.get_attribute("data-figure") or ""
                text = figure.inner_text().replace(",", "").removesuffix("/min")
                assert float(text) == told[name], name
                assert json.loads(figure.get_attribute("data-value") or "") == told[name]

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            pdf = page.pdf(format="A4")  # as "print to PDF" makes it
        finally:
            browser.close()

    assert requests == [url]  # the page itself, and nothing from any network
    assert problems == []
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    kept = ARTIFACTS / "report.png"
    shutil.copyfile(shot, kept)
    shutil.copyfile(page_file, ARTIFACTS / "report.html")
    print(f"screenshot of the report: {kept}")
