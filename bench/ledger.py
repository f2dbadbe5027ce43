"""Ledger benchmarks: resuming a big ledger, and how many state changes a second it takes.

1. Resume: a manifest of ROWS rows (default 1,000,000) and a ledger in which all but LEFT
   (default 1,000) already succeeded, as after a crash near the end of a migration. We time
   ``convirza-import run`` from start to exit against a sandbox subprocess: it must read the
   whole manifest, skip the done rows and upload the rest. Beside it, the time to merely read
   the manifest with the csv module (the floor for any resume that reads its input).
2. Write throughput: W concurrent asyncio workers move rows pending -> uploading -> succeeded
   (two durable transitions and one attempt record per row) through ``AsyncLedger``'s group
   commit, against the same work done one transaction (one fsync) per call on one thread,
   the design group commit replaces. Both in this process, same disk, same run.

Run from the repository root (not part of ``make test``)::

    .venv/bin/python bench/ledger.py [--rows 1000000] [--left 1000] [--transitions 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from importer.ledger.admission import Admission  # noqa: E402
from importer.ledger.books import AttemptRecord  # noqa: E402
from importer.ledger.states import Status  # noqa: E402
from importer.ledger.store import Ledger  # noqa: E402
from importer.ledger.writer import AsyncLedger  # noqa: E402

TOKEN = "bench-token"


def make_wav(path: Path, n: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes([n % 256, n // 256 % 256]) * 4000)  # half a second


def build(folder: Path, rows: int, left: int) -> tuple[Path, Path]:
    """The manifest and a ledger in which every row but the last ``left`` succeeded."""
    audio = folder / "audio"
    audio.mkdir()
    manifest = folder / "calls.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "recording_file", "call_date", "group_id", "caller_id"])
        for i in range(rows):
            writer.writerow([f"B-{i:07d}", f"audio/{i:07d}.wav", "2025-03-04T09:15:22-05:00",
                             "12", "6175550142"])
    for i in range(rows - left, rows):
        make_wav(audio / f"{i:07d}.wav", i)
    ledger_path = folder / "ledger.sqlite"
    Ledger.open(ledger_path).close()
    conn = sqlite3.connect(ledger_path)
    now = "2026-01-01T00:00:00.000+00:00"
    conn.execute("INSERT INTO runs (id, command, manifest, started_at) VALUES (1, 'run', ?, ?)",
                 (str(manifest), now))
    conn.executemany(
        "INSERT INTO recordings (key, external_id, manifest, row_number, source, status, "
        "fingerprint, run_id, updated_at, attempts) VALUES (?, ?, ?, ?, ?, 'succeeded', '', 1, "
        "?, 1)",
        ((f"ext:B-{i:07d}", f"B-{i:07d}", str(manifest), i + 2, f"audio/{i:07d}.wav", now)
         for i in range(rows - left)))
    conn.commit()
    conn.close()
    return manifest, ledger_path


def start_sandbox(store: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "importer", "sandbox", "--port", "0", "--token", TOKEN,
         "--store", str(store)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.strip().rsplit(" ", 1)[-1]


def bench_resume(rows: int, left: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        manifest, ledger = build(folder, rows, left)
        print(f"built a {rows:,}-row manifest and ledger in {time.perf_counter() - t0:.1f}s")

        t0 = time.perf_counter()
        with manifest.open(newline="") as handle:
            read = sum(1 for _ in csv.reader(handle)) - 1
        bare = time.perf_counter() - t0

        proc, url = start_sandbox(folder / "store.sqlite")
        try:
            env = {**os.environ, "CONVIRZA_API_URL": url, "CONVIRZA_TOKEN": TOKEN}
            t0 = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-m", "importer", "run", str(manifest), "--ledger",
                 str(ledger), "--rate", "2000", "--concurrency", "8", "--quiet"],
                cwd=ROOT, env=env, capture_output=True, text=True, check=False)
            took = time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait()
        if result.returncode != 0:
            raise SystemExit(f"the resume failed ({result.returncode}): {result.stderr[-2000:]}")
        with sqlite3.connect(folder / "store.sqlite") as conn:
            uploaded = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        with sqlite3.connect(ledger) as conn:
            done = conn.execute("SELECT COUNT(*) FROM recordings WHERE status = 'succeeded'"
                                ).fetchone()[0]
        assert uploaded == left and done == rows, (uploaded, done)
        print(f"resume: {rows:,} rows, {rows - left:,} done, {left:,} left: "
              f"{took:.1f}s to skip and finish ({rows / took:,.0f} rows/s); uploaded {uploaded}")
        print(f"        reading the manifest alone (csv module, {read:,} rows): {bare:.1f}s; "
              f"resume / bare read = {took / bare:.1f}x")


async def group_commit(path: Path, n: int, workers: int) -> tuple[float, int]:
    ledger = AsyncLedger(Ledger.open(path))
    run = await ledger.call(ledger.ledger.begin_run, "bench", None)
    await ledger.call(ledger.ledger.admit, run, [_admission(i) for i in range(n)])
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await ledger.call(ledger.ledger.mark_uploading, f"k{i}", 1000, run)
            await ledger.call(ledger.ledger.finish, f"k{i}", Status.SUCCEEDED, _attempt(i))

    before = ledger.batches
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    took = time.perf_counter() - t0
    batches = ledger.batches - before
    await ledger.close()
    return took, batches


def one_commit_each(path: Path, n: int) -> float:
    ledger = Ledger.open(path)
    run = ledger.begin_run("bench", None)
    ledger.admit(run, [_admission(i) for i in range(n)])
    t0 = time.perf_counter()
    for i in range(n):
        ledger.mark_uploading(f"k{i}", 1000, run)
        ledger.finish(f"k{i}", Status.SUCCEEDED, _attempt(i))
    took = time.perf_counter() - t0
    ledger.close()
    return took


def _admission(i: int) -> Admission:
    return Admission(f"k{i}", f"k{i}", "/m.csv", i + 2, f"{i}.wav", Status.PENDING, "f",
                     {"group_id": "12"})


def _attempt(i: int) -> AttemptRecord:
    return AttemptRecord(f"k{i}", "2026-01-01T00:00:00+00:00", 0.05, "succeeded", 200)


def bench_writes(rows: int, workers: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-writes-") as tmp:
        folder = Path(tmp)
        grouped, batches = asyncio.run(group_commit(folder / "grouped.sqlite", rows, workers))
        baseline_rows = max(500, rows // 10)  # one fsync per call is slow: time fewer
        single = one_commit_each(folder / "single.sqlite", baseline_rows)
        ours = 2 * rows / grouped
        theirs = 2 * baseline_rows / single
        print(f"writes: group commit, {workers} workers: {ours:,.0f} transitions/s "
              f"({rows:,} rows, {batches:,} commits, {2 * rows / batches:.1f} calls/commit)")
        print(f"        one commit per call:          {theirs:,.0f} transitions/s "
              f"({baseline_rows:,} rows); ratio {ours / theirs:.1f}x")
        print(f"        rows/s at two transitions a row: {ours / 2:,.0f} "
              f"(needed: 1,000 files/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="manifest rows to resume")
    parser.add_argument("--left", type=int, default=1_000, help="rows not yet done")
    parser.add_argument("--transitions", type=int, default=20_000,
                        help="rows moved through the writer in the throughput test")
    parser.add_argument("--workers", type=int, default=16, help="concurrent writers")
    parser.add_argument("--skip-resume", action="store_true", help="only the write test")
    args = parser.parse_args()
    bench_writes(args.transitions, args.workers)
    if not args.skip_resume:
        bench_resume(args.rows, args.left)


if __name__ == "__main__":
    main()
