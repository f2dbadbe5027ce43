"""The HTML run report of a 1,000,000-row ledger: how big the file is, how long it takes.

A ledger like the one a three-night migration leaves (built straight in SQLite, with the
ledger's own schema, so that building it takes seconds, not a run): ROWS recordings (default
1,000,000) over about eight hours in three runs (one interrupted, one stopped by a budget, one
still running), with retries, 429 episodes, timeouts of unknown outcome reconciled, rows that
failed for good, invalid rows, rows found already imported, and rows still pending.

Then ``report --format html`` is timed as a subprocess (interpreter start-up included), and
the aggregation it does (SQL ``GROUP BY`` in SQLite, ``ledger_stats``) against the same
aggregation done with pandas from the same tables, each alone in a process of its own (time,
and peak RSS), so that the choice can be checked on this machine. Run from the repository
root (not part of ``make test``)::

    .venv/bin/python bench/report.py [--rows 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from importer.ledger.store import Ledger  # noqa: E402

START = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
#: (first row as a share of all rows, start hour, end hour, exit code, why it stopped)
RUNS = ((0.0, 0.0, 3.0, 130, "interrupted"),
        (0.40, 3.5, 6.0, 4, "budget: --max-duration 2.5h reached"),
        (0.75, 6.25, 8.2, None, None))
INVALID_REASONS = ("caller_id: a phone number of digits",
                   "call_date: a call date with a time zone",
                   "file not found", "duplicate of an earlier row")
FAILED_REASONS = ("HTTP 500: Internal Server Error", "HTTP 422: group_id 99 is not yours",
                  "no answer within the timeout")


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds")


def build_ledger(path: Path, rows: int, seed: int = 7) -> None:
    """A ledger of ``rows`` recordings as described in the module docstring."""
    Ledger.open(path).close()
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    recs: list[tuple[object, ...]] = []
    atts: list[tuple[object, ...]] = []
    bounds = [int(share * rows) for share, *_ in RUNS] + [rows]
    pending_from = int(rows * 0.98)  # the last rows of the third run are not reached yet
    for number, (_, start_h, end_h, code, stopped) in enumerate(RUNS, 1):
        first, last = bounds[number - 1], bounds[number]
        began = START + timedelta(hours=start_h)
        span = (end_h - start_h) * 3600
        counts: dict[str, int] = {}
        for i in range(first, last):
            at = began + timedelta(seconds=span * (i - first) / max(1, last - first))
            outcome = _row(i, at, number, rng, recs, atts, pending=i >= pending_from)
            if outcome != "pending":  # not reached: no outcome in the run's summary
                counts[outcome] = counts.get(outcome, 0) + 1
            if len(recs) >= 20_000:
                _flush(conn, recs, atts)
        _flush(conn, recs, atts)
        summary = {"counts": counts, "expected": rows, "stopped": stopped}
        finished = None if code is None else _iso(START + timedelta(hours=end_h))
        conn.execute("INSERT INTO runs (id, command, manifest, started_at, finished_at, "
                     "exit_code, summary) VALUES (?, 'run', '/data/calls.csv', ?, ?, ?, ?)",
                     (number, _iso(began), finished, code, json.dumps(summary)))
    conn.commit()
    conn.close()


def _row(i: int, at: datetime, run: int, rng: random.Random, recs: list[tuple[object, ...]],
         atts: list[tuple[object, ...]], *, pending: bool) -> str:
    key = f"ext:M-{i:07d}"
    size = rng.randint(200_000, 3_000_000)
    base = (key, f"M-{i:07d}", "/data/calls.csv", i + 2, f"audio/{i:07d}.wav")
    r = rng.random()
    if pending:
        recs.append((*base, "pending", None, None, None, 0, None, None, None, None, run,
                     _iso(at), None, None))
        return "pending"
    if r < 0.010:
        reason = rng.choice(INVALID_REASONS)
        recs.append((*base, "invalid", f"row {i + 2}: {reason}", reason, None, 0, None, None,
                     None, None, run, _iso(at), None, None))
        return "invalid"
    if r < 0.015:
        recs.append((*base, "succeeded", None, None, None, 0, None, None, None, size, run,
                     _iso(at), f"ext:M-{rng.randrange(max(1, i)):07d}", "already imported"))
        return "already imported"
    # Sent: a 429 episode every ~40 minutes makes a few percent of first attempts throttled.
    minute = int((at - START).total_seconds() // 60)
    throttled = minute % 40 < 3
    t = at
    tries: list[tuple[str, float, int | None, str | None]] = []
    if rng.random() < (0.30 if throttled else 0.002):
        tries.append(("error", rng.uniform(0.02, 0.08), 429, "Too Many Requests"))
    if rng.random() < 0.01:
        tries.append(("error", rng.lognormvariate(-0.5, 0.6), 500, "Internal Server Error"))
    fate = rng.random()
    if fate < 0.002:
        tries.append(("unknown", 120.0, None, "no answer within the timeout"))
        tries.append(("reconciled", 0.0, None, None))
        status = "succeeded"
    elif fate < 0.010:
        tries.append(("error", rng.lognormvariate(-1.0, 0.4), 422, "group_id 99 is not yours"))
        status = "failed"
    elif fate < 0.014:
        tries.extend(("error", rng.lognormvariate(-0.5, 0.6), 500, "Internal Server Error")
                     for _ in range(5))
        status = "failed"
    else:
        tries.append(("succeeded", rng.lognormvariate(-1.0 + (0.8 if throttled else 0), 0.5),
                      200, None))
        status = "succeeded"
    first = _iso(t)
    for outcome, duration, http, error in tries:
        atts.append((key, run, _iso(t), round(duration, 3), http, error, outcome))
        t += timedelta(seconds=duration + (1.0 if outcome != "succeeded" else 0))
    last_outcome, last_http, last_error = tries[-1][0], tries[-1][2], tries[-1][3]
    fail_reason: str | None = None
    if status == "failed":
        fail_reason = f"HTTP {last_http}: {last_error}" if last_http else last_error
    recs.append((*base, status, last_error if status == "failed" else None, fail_reason, last_http,
                 len(tries), first, _iso(t), sum(d for _, d, _, _ in tries), size, run,
                 _iso(t), None, last_outcome))
    return "reconciled" if last_outcome == "reconciled" else status


def _flush(conn: sqlite3.Connection, recs: list[tuple[object, ...]],
           atts: list[tuple[object, ...]]) -> None:
    conn.executemany(
        "INSERT INTO recordings (key, external_id, manifest, row_number, source, status, error, "
        "reason, http_status, attempts, first_attempt_at, last_attempt_at, duration, size, "
        "run_id, updated_at, same_as, last_outcome, fingerprint, sha256) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', NULL)", recs)
    conn.executemany(
        "INSERT INTO attempts (key, run_id, started_at, duration, http_status, error, outcome) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", atts)
    recs.clear()
    atts.clear()


def _need_pandas() -> None:
    """pandas is this benchmark's baseline, not a dependency of the importer: the bench extra
    has it, and `make bench` installs that."""
    import importlib.util

    if importlib.util.find_spec("pandas") is None:
        raise SystemExit(f"{Path(__file__).name} measures against pandas, which is not "
                         "installed: `make bench` installs it (pip install -e '.[bench]')")


def main() -> None:
    _need_pandas()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="recordings in the ledger")
    parser.add_argument("--keep", type=Path, help="build the ledger and page in DIR, and keep them")
    parser.add_argument("--aggregate", choices=["sql", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("ledger", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.aggregate:  # a child process, measured alone (time, peak memory)
        _aggregate_once(args.aggregate, args.ledger)
        return
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        ledger = folder / "ledger.sqlite"
        ledger.unlink(missing_ok=True)
        t0 = time.perf_counter()
        build_ledger(ledger, args.rows)
        with sqlite3.connect(ledger) as conn:
            attempts = conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
        print(f"built a ledger of {args.rows:,} recordings and {attempts:,} attempts in "
              f"{time.perf_counter() - t0:.1f}s ({ledger.stat().st_size / 1e6:.0f} MB)")
        page = folder / "report.html"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "importer", "report", str(ledger), "--format",
                        "html", "--output", str(page)], cwd=ROOT, check=True)
        took = time.perf_counter() - t0
        print(f"report --format html: {page.stat().st_size / 1e3:.0f} kB in {took:.1f}s "
              "(the whole command, start-up included)")
        sql = _child("sql", ledger)
        frames = _child("pandas", ledger)
        print(f"aggregation alone: SQL GROUP BY in SQLite {sql[0]:.1f}s, peak {sql[1]:.0f} MiB; "
              f"pandas {frames[0]:.1f}s, peak {frames[1]:.0f} MiB "
              f"(pandas / SQL: {frames[0] / sql[0]:.2f}x the time, "
              f"{frames[1] / sql[1]:.1f}x the memory)")


def _child(how: str, ledger: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one aggregation in a process of its own."""
    out = subprocess.run([sys.executable, __file__, "--aggregate", how, str(ledger)],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def _aggregate_once(how: str, ledger: Path) -> None:
    import resource

    if how == "pandas":
        import pandas  # noqa: F401  (imported before the clock starts, as ours is)
    t0 = time.perf_counter()
    if how == "sql":
        from importer.ledger.stats import collect, timeline

        timeline(collect([ledger]))
    else:
        _pandas_aggregation(ledger)
    took = time.perf_counter() - t0
    print(took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _pandas_aggregation(ledger: Path) -> None:
    """What ``ledger_stats.collect`` and ``timeline`` compute, done the pandas way: the
    tables read into frames, grouped there (minutes cut from the ISO text as the SQL does;
    percentiles exact per minute, which is pandas' own way and no slower than binning)."""
    import pandas as pd

    from importer.ledger.stats import SENT

    conn = sqlite3.connect(f"{ledger.resolve().as_uri()}?mode=ro", uri=True)
    try:
        a = pd.read_sql("SELECT id, key, started_at, duration, http_status, outcome "
                        "FROM attempts ORDER BY id", conn)
        r = pd.read_sql("SELECT manifest, row_number, key, source, status, error, reason, size, "
                        "same_as, last_outcome, COALESCE(last_attempt_at, updated_at) AS at "
                        "FROM recordings", conn)
        runs = pd.read_sql("SELECT * FROM runs", conn)
    finally:
        conn.close()
    a["minute"] = a["started_at"].str.slice(0, 16)
    a["throttled"] = a["http_status"].eq(429)
    a["retry"] = a["key"].duplicated() & a["outcome"].ne("reconciled")
    a.groupby(["minute", "outcome", "throttled", "retry"]).size()
    sent = a[a["outcome"].isin(SENT) & a["duration"].notna()]
    sent.groupby("minute")["duration"].quantile([0.5, 0.9, 0.99])  # type: ignore[arg-type]  # lists are documented
    r["minute"] = r["at"].str.slice(0, 16)
    r.groupby(["minute", "status", r["same_as"].notna(), r["last_outcome"].eq("reconciled")]
              ).agg(n=("status", "size"), size=("size", "sum"))
    bad = r[r["status"].isin(["failed", "invalid"])].copy()
    bad["why"] = bad["reason"].fillna(bad["error"]).fillna("?")
    bad.groupby(["status", "why"]).size().nlargest(10)
    bad.sort_values(["manifest", "row_number", "key"]).groupby(["status", "why"]).head(3)
    bad.sort_values(["manifest", "row_number", "key"]).head(200)
    r.groupby("manifest").size()
    len(runs)


if __name__ == "__main__":
    main()
