"""Does a run find the API's pace and hold it, whatever limiter the API keeps? (issue 20)

Convirza's rate limit is not known, so users ask for more than it allows. A sandbox
subprocess keeps a limit of L requests a second three ways (``importer/sandbox/ratelimits.py``:
a token bucket, a sliding one-second window, a fixed one-second window; over it, 429 with a
whole-second Retry-After), and the importer uploads N small files against each at
``--rate`` L (it should fit), 2L and 4L (it must find L from the 429s and settle under it), at
concurrency 8, each run against a fresh sandbox. From the sandbox's own store (when each
upload was received):

* the pace over the steady middle (the middle half of the run, by time) / L;
* the share of upload requests answered 429;
* uploads received per second, the first fourteen seconds (to see a stutter).

And ``--schedule``: a limit that drops mid-run and rises again (``0:20,10:10,25:20``), at 2L:
the pace per second shows whether it is followed down and back up.

Goals: at 2L and 4L, >= 0.9 L over the steady middle and <= 2% of uploads answered 429; at
L, >= 0.95 L and no 429.

Run from the repository root (not part of ``make test``)::

    .venv/bin/python bench/pace.py [--limit 20] [--files 400] [--models bucket,sliding,fixed]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sqlite3
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from throughput import ROOT, TOKEN, make_recordings, write_manifest

SIZE = 40_000  # bytes a recording: the rate, not the bandwidth, is what is measured
SERVE = """
import asyncio, sys
from importer.sandbox import Faults, SandboxConfig, serve_forever
from importer.sandbox.ratelimits import parse_schedule
model, limit, schedule, store, token = sys.argv[1:6]
faults = Faults(rate_limit=float(limit), rate_model=model,
                rate_schedule=parse_schedule(schedule) if schedule else ())
config = SandboxConfig(static_tokens=frozenset({token}), store_path=store, faults=faults)
asyncio.run(serve_forever(config, "127.0.0.1", 0, lambda url: print(url, flush=True)))
"""


@contextmanager
def sandbox(model: str, limit: float, schedule: str, store: Path) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-c", SERVE, model, str(limit), schedule,
                             str(store), TOKEN], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        url = proc.stdout.readline().strip() if ready else ""
        if not url.startswith("http"):
            raise SystemExit(f"sandbox did not start (exit {proc.poll()})")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def received_at(store: Path) -> list[float]:
    with sqlite3.connect(store) as conn:
        stamps = [datetime.fromisoformat(r[0]).timestamp()
                  for r in conn.execute("SELECT received_at FROM calls ORDER BY call_id")]
    conn.close()
    return stamps


@dataclass(frozen=True)
class Result:
    model: str
    rate: float
    pace: float  # over the steady middle, / L
    share_429: float
    throttled: int
    per_second: list[int]
    seconds: float


def run(model: str, limit: float, rate: float, files: int, concurrency: int,
        schedule: str = "") -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-pace-") as tmp:
        work = Path(tmp)
        manifest = work / "calls.csv"
        write_manifest(manifest, make_recordings(work, files, SIZE))
        store = work / "store.sqlite"
        with sandbox(model, limit, schedule, store) as url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CONVIRZA_")}
            env |= {"CONVIRZA_API_URL": url, "CONVIRZA_TOKEN": TOKEN}
            done = subprocess.run(
                [sys.executable, "-m", "importer", "run", str(manifest), "--ledger",
                 str(work / "ledger.sqlite"), "--rate", str(rate), "--concurrency",
                 str(concurrency), "--max-attempts", "20", "--find-existing", "never",
                 "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"importer exited {done.returncode}: {done.stderr[-2000:]}")
            with urllib.request.urlopen(f"{url}/_sandbox/stats") as answer:
                stats = json.load(answer)
        stamps = received_at(store)
    assert len(stamps) == files, len(stamps)
    first, last = stamps[0], stamps[-1]
    low, high = first + (last - first) / 4, last - (last - first) / 4
    middle = sum(1 for t in stamps if low <= t < high)
    per_second = [sum(1 for t in stamps if first + s <= t < first + s + 1)
                  for s in range(int(last - first) + 1)]
    refused = int(stats["throttled"])
    return Result(model, rate, middle / (high - low) / limit, refused / (files + refused),
                  refused, per_second, last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=float, default=20.0)
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--models", default="bucket,sliding,fixed")
    parser.add_argument("--factors", default="1,2,4")
    parser.add_argument("--schedule", default="0:20,10:10,25:20",
                        help="a limit over time for the last run ('' to skip it)")
    args = parser.parse_args()
    limit = args.limit
    print(f"server limit L = {limit:g} req/s, {args.files} files, concurrency "
          f"{args.concurrency}")
    print(f"{'limiter':<8} {'--rate':>7} {'middle/L':>9} {'429 share':>10} {'429s':>5} "
          f"{'seconds':>8}  per second")
    ok = True
    for model in args.models.split(","):
        for factor in (float(f) for f in args.factors.split(",")):
            r = run(model, limit, factor * limit, args.files, args.concurrency)
            print(f"{model:<8} {r.rate:>7g} {r.pace:>9.3f} {r.share_429:>10.2%} "
                  f"{r.throttled:>5} {r.seconds:>8.1f}  {r.per_second[:14]}")
            ok &= (r.pace >= 0.95 and r.throttled == 0) if factor == 1 else \
                (r.pace >= 0.9 and r.share_429 <= 0.02)
    if args.schedule:
        files = int(limit * 40)
        r = run("sliding", limit, 2 * limit, files, args.concurrency, args.schedule)
        print(f"schedule {args.schedule} (sliding, --rate {2 * limit:g}): "
              f"{r.share_429:.2%} 429; per second {r.per_second}")
    print(f"goals (>= 0.9 L and <= 2% 429 at 2L and 4L; >= 0.95 L, no 429 at L): "
          f"{'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
