"""Manifest throughput and memory: ``validate`` of a big CSV, against pandas reading it.

What is measured, on one generated CSV of N rows (default 1,000,000) that looks like a real
export: an ``external_id``, a ``recording_url`` (so that no audio file is probed: this measures
the manifest, not the disk), call dates in three spellings (ISO with offset, ``YYYY-MM-DD
HH:MM:SS``, ``MM/DD/YYYY h:mm AM``), Excel-mangled ids and zip codes (``12.0``, ``2134``),
formatted phones, a disposition, a boolean, a name; one row in a hundred is invalid (a phone
that is not one), one in a thousand repeats an earlier row's recording.

(a) reading: ``open_manifest(...).chunks()`` alone (sniffing, decoding, row numbers, mapping);
(b) ours: ``python -m importer validate FILE --quiet`` as a subprocess: reading, every
    normalizer, the ledger's decisions and duplicate lookups, the summary; wall clock of the
    whole command, interpreter start-up included;
(c) the reference: pandas' bare ``read_csv(FILE, dtype=str)`` in a subprocess, which parses
    and nothing else.

Each in its own process; peak RSS is sampled every 20 ms over the process and its children
(the importer reads a big CSV in a second process) and summed. The machine is shared, so
``--repeat K`` keeps the best of K. Not part of ``make test``.

Run from the repository root::

    .venv/bin/python bench/manifest.py [--rows 1000000] [--repeat 1] [--json]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATES = ("2025-03-04T09:15:22-05:00", "2025-03-04 09:15:22", "03/04/2025 9:15 AM")


def write_manifest(path: Path, rows: int) -> None:
    """``rows`` rows, deterministic, one in a hundred invalid, one in a thousand a duplicate."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["External ID", "Recording URL", "Call Date", "Group ID", "Caller ID",
                         "Ring To", "Disposition", "Zip Code", "Is Outbound", "Caller Name",
                         "Agent Notes"])
        for i in range(rows):
            url_n = i - 1 if i % 1000 == 999 else i
            phone = "call me" if i % 100 == 42 else f"({600 + i % 300}) 555-{i % 10000:04d}"
            day = 1 + i % 28
            date = DATES[i % 3].replace("04", f"{day:02d}", 1) if i % 3 != 2 else \
                f"03/{day:02d}/2025 {1 + i % 12}:{i % 60:02d} {'AM' if i % 2 else 'PM'}"
            writer.writerow([
                f"PBX-{i:09d}", f"https://pbx.example.com/rec/{url_n:09d}.wav", date,
                "12.0" if i % 2 else "14", phone, "6175550199",
                ("answered", "NO ANSWER", "busy")[i % 3], f"{2100 + i % 900}",
                ("yes", "no", "TRUE", "0")[i % 4], "Maria Alvarez", "called back twice"])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(c) for c in handle.read().split())
    except OSError:
        pass
    return found


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MiB of the process tree (summed), and stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVIRZA_")}
    # Output to files: a pipe nobody reads until the end would stall the child when full.
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out_file, stderr=err_file,
                                text=True)
        peak = 0
        while proc.poll() is None:
            tree, todo = [], [proc.pid]
            while todo:
                pid = todo.pop()
                tree.append(pid)
                todo.extend(_children(pid))
            peak = max(peak, sum(_rss_kib(p) for p in tree))
            time.sleep(0.02)
        seconds = time.perf_counter() - t0
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if proc.returncode not in (0, 1):  # 1: some rows are invalid, as they are meant to be
        raise SystemExit(f"{cmd[:4]} exited {proc.returncode}:\n{err[-3000:]}")
    return seconds, peak // 1024, out


READ_ONLY = """
import sys, time
from pathlib import Path
from importer.manifest.opening import open_manifest
t0 = time.perf_counter()
n = sum(len(c) for c in open_manifest(Path(sys.argv[1])).chunks())
print(n, time.perf_counter() - t0)
"""
PANDAS = """
import sys, time
import pandas as pd
t0 = time.perf_counter()
n = len(pd.read_csv(sys.argv[1], dtype=str))
print(n, time.perf_counter() - t0)
"""


def _need_pandas() -> None:
    """pandas is this benchmark's baseline, not a dependency of the importer: the bench extra
    has it, and `make bench` installs that."""
    import importlib.util

    if importlib.util.find_spec("pandas") is None:
        raise SystemExit(f"{Path(__file__).name} measures against pandas, which is not "
                         "installed: `make bench` installs it (pip install -e '.[bench]')")


def main() -> int:
    _need_pandas()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows in the CSV (1,000,000)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each, best kept (1)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    a = p.parse_args()
    py = sys.executable
    load_before = os.getloadavg()[0]  # other work on a shared machine shows here
    with tempfile.TemporaryDirectory(prefix="convirza-bench-") as tmp:
        path = Path(tmp) / "manifest.csv"
        write_manifest(path, a.rows)
        size = path.stat().st_size
        best: dict[str, tuple[float, int]] = {}
        summary = ""
        for _ in range(a.repeat):
            runs = {
                "reading": [py, "-c", READ_ONLY, str(path)],
                "validate": [py, "-m", "importer", "validate", str(path), "--timezone",
                             "America/New_York", "--concurrency", "4"],
                "pandas": [py, "-c", PANDAS, str(path)],
            }
            for name, cmd in runs.items():
                seconds, peak, out = measure(cmd)
                if name == "validate":
                    summary = out.strip()
                if name not in best or seconds < best[name][0]:
                    best[name] = (seconds, peak)
    print(f"{a.rows} rows, {size / 1e6:.0f} MB CSV, {os.cpu_count()} cores, best of {a.repeat}; "
          f"load average before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    print(f"{'what':<48}{'seconds':>9}{'rows/s':>10}{'peak RSS':>10}")
    labels = {"reading": "(a) reading only (open_manifest().chunks())",
              "validate": "(b) convirza-import validate (whole command)",
              "pandas": "(c) pandas read_csv(dtype=str), reference"}
    for name, (seconds, peak) in best.items():
        print(f"{labels[name]:<48}{seconds:>9.2f}{a.rows / seconds:>10,.0f}{peak:>7} MiB")
    print("validate said:\n  " + summary.replace("\n", "\n  "))
    if a.json:
        print(json.dumps({"rows": a.rows, "bytes": size, "results": {
            name: {"seconds": round(s, 3), "rows_per_second": round(a.rows / s),
                   "peak_rss_mib": peak} for name, (s, peak) in best.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
