"""What asking Convirza first costs (``--find-existing``, issue 17): requests per 1,000 rows,
and the sample's cost on a first migration.

Three imports of the same 1,000-row manifest (one group), each with a new ledger, against a
sandbox subprocess whose store was filled beforehand:

(a) the group holds our 1,000 calls only (a lost ledger): every row is found, nothing sent;
(b) the group holds our 1,000 calls and 10,000 calls that are not ours (a busy account);
(c) the group holds none of ours (a first migration): the sample finds nothing, every row is
    sent; only the sample's lookups are the check's cost.

For each: call lookups (GET /v2/call/list) the sandbox received, per 1,000 rows, beside the
baseline of one lookup per row (1,000), and uploads (0 for a and b, 1,000 for c). The rows of
(a) and (b) name files that do not exist: a row found in Convirza is never probed, which is
itself checked here. And the survey, the one pass over the manifest that draws the sample and
counts each group's rows: its time on a 100,000-row manifest, beside reading the manifest's
rows alone (``Manifest.chunks``) in the same process.

Run from the repository root (not part of ``make test``)::

    .venv/bin/python bench/find_existing.py [--rows 1000] [--foreign 10000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from ratelimit import sandbox
from throughput import ROOT, TOKEN, make_recordings

from importer.manifest.call_dates import RowContext, resolve_zone
from importer.manifest.opening import open_manifest
from importer.run.destination import survey
from importer.sandbox.store import CallStore

GROUP = "12"


def fill(store: Path, ours: int, foreign: int) -> None:
    """The sandbox's store as Convirza would hold it: our calls (external ids R-0000...) and
    other clients' calls (external ids of theirs) in one group."""
    calls = CallStore(str(store))
    for i in range(foreign):
        calls.add(str(uuid.uuid4()), {"external_id": f"theirs-{i}", "group_id": GROUP,
                                      "caller_id": "6175550100",
                                      "call_date": "2025-01-01T00:00:00Z"}, None, None, None)
    for i in range(ours):
        calls.add(str(uuid.uuid4()), {"external_id": f"R-{i:04d}", "group_id": GROUP,
                                      "caller_id": "6175550142",
                                      "call_date": "2025-03-04T09:15:22-05:00"}, None, None,
                  None)
    calls.close()


def manifest(path: Path, rows: int, files: list[str] | None = None) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["external_id", "recording_file", "call_date", "group_id", "caller_id"])
        for i in range(rows):
            name = files[i] if files else f"absent/R-{i:04d}.wav"
            out.writerow([f"R-{i:04d}", name, "2025-03-04T09:15:22-05:00", GROUP, "6175550142"])


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_sandbox/stats") as answer:
        found: dict[str, int] = json.load(answer)
    return found


def one(rows: int, ours: int, foreign: int, real_files: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-find-") as tmp:
        work = Path(tmp)
        store = work / "store.sqlite"
        fill(store, ours, foreign)
        files = None
        if real_files:
            files = [name for name, _, _ in make_recordings(work, rows, 8_000)]
        manifest(work / "calls.csv", rows, files)
        with sandbox(store) as url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CONVIRZA_")}
            env |= {"CONVIRZA_API_URL": url, "CONVIRZA_TOKEN": TOKEN,
                    "CONVIRZA_TIMEZONE": "UTC"}
            before = stats(url)
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "importer", "run", str(work / "calls.csv"), "--ledger",
                 str(work / "new.sqlite"), "--rate", "100000", "--concurrency", "8", "--quiet"],
                cwd=ROOT, env=env, capture_output=True, text=True, check=False)
            elapsed = time.monotonic() - started
            after = stats(url)
        if done.returncode != 0:
            raise SystemExit(f"the import failed (exit {done.returncode}): {done.stderr}")
        lookups = after["call_lists"] - before["call_lists"]
        uploads = after["uploads"] - before["uploads"]
        return {"lookups": lookups, "per_1000": lookups * 1000 / rows, "uploads": uploads,
                "seconds": elapsed}


def survey_cost(rows: int) -> tuple[float, float]:
    """Seconds for the survey of a ``rows``-row manifest, and for reading its rows alone."""
    with tempfile.TemporaryDirectory(prefix="bench-survey-") as tmp:
        path = Path(tmp) / "big.csv"
        manifest(path, rows)
        zone, _ = resolve_zone("UTC")
        ctx = RowContext(base_dir=path.parent, zone=zone)
        best_survey = best_read = float("inf")
        for _ in range(3):
            opened = open_manifest(path)
            started = time.perf_counter()
            for _chunk in opened.chunks():
                pass
            best_read = min(best_read, time.perf_counter() - started)
            started = time.perf_counter()
            found = survey(opened, ctx, True, None)
            best_survey = min(best_survey, time.perf_counter() - started)
            opened.close()
            assert len(found.sample) == 20 and found.groups[GROUP] == rows
        return best_survey, best_read


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--foreign", type=int, default=10_000)
    parser.add_argument("--survey-rows", type=int, default=100_000)
    args = parser.parse_args()
    n = args.rows
    cases = [
        ("(a) group of our calls only", one(n, n, 0, False), 0),
        (f"(b) ours + {args.foreign:,} foreign", one(n, n, args.foreign, False), 0),
        ("(c) first migration", one(n, 0, 0, True), n),
    ]
    print(f"{n:,} rows, one group; baseline: one lookup per row = {n:,} lookups")
    print(f"{'case':<34} {'lookups':>8} {'per 1,000 rows':>15} {'vs baseline':>12} "
          f"{'uploads':>8} {'seconds':>8}")
    for name, got, expected_uploads in cases:
        assert got["uploads"] == expected_uploads, (name, got)
        print(f"{name:<34} {got['lookups']:>8.0f} {got['per_1000']:>15.1f} "
              f"{got['lookups'] / n:>11.3f}x {got['uploads']:>8.0f} {got['seconds']:>8.1f}")
    surveyed, read = survey_cost(args.survey_rows)
    print(f"survey of {args.survey_rows:,} rows: {surveyed:.2f}s "
          f"({args.survey_rows / surveyed:,.0f} rows/s), reading them alone {read:.2f}s: "
          f"{surveyed / read:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
