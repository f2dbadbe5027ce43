"""Does the importer keep to a server's rate limit, and use all of it?

A sandbox subprocess enforces L requests a second (a token bucket; over it, 429 with a
whole-second Retry-After). The importer uploads the same files twice against it, each time to
a fresh server: at ``--rate L`` (it should fit exactly) and at ``--rate 2L`` (it must learn the
limit from the 429s and settle just under it). For each, from the server's own clock:

* achieved rate / L: uploads accepted per second between the first and the last request;
* the share of requests answered 429;
* the largest number of requests in any 100 ms window (the worst burst);
* requests that came back before the Retry-After they were given had passed ("early").

Acceptance (issue 5): at L, achieved >= 0.95 L and no 429; at 2L, at most 5% 429 and
achieved >= 0.85 L.

Run from the repository root (not part of ``make test``)::

    .venv/bin/python bench/ratelimit.py [--limit 20] [--seconds 20] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from throughput import ROOT, TOKEN, make_recordings, write_manifest

SIZE = 40_000  # bytes a recording: the rate, not the bandwidth, is what is measured


@contextmanager
def sandbox(store: Path, *extra: str) -> Iterator[str]:
    """A fresh sandbox subprocess storing calls in ``store`` (``extra``: more sandbox
    options); yields its base URL. The sandbox, not bench/strict_server.py: it is the one
    that keeps a rate limit and the arrival times."""
    cmd = [sys.executable, "-m", "importer", "sandbox", "--port", "0", "--token", TOKEN,
           "--store", str(store), *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        prefix = "Sandbox listening on "
        if not line.startswith(prefix):
            raise SystemExit(f"sandbox did not start (exit {proc.poll()}): {line!r}")
        yield line.removeprefix(prefix).strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def burst(arrivals: list[float], window: float = 0.1) -> int:
    """The most arrivals within any ``window`` seconds."""
    best, start = 0, 0
    for end, t in enumerate(arrivals):
        while arrivals[start] < t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def run(limit: float, rate: float, files: int, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-rate-") as tmp:
        work = Path(tmp)
        manifest = work / "calls.csv"
        write_manifest(manifest, make_recordings(work, files, SIZE))
        with sandbox(work / "store.sqlite", "--rate-limit", str(limit)) as url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CONVIRZA_")}
            env |= {"CONVIRZA_API_URL": url, "CONVIRZA_TOKEN": TOKEN}
            done = subprocess.run(
                [sys.executable, "-m", "importer", "run", str(manifest), "--ledger",
                 str(work / "ledger.sqlite"), "--rate", str(rate), "--concurrency",
                 str(concurrency), "--max-attempts", "10", "--quiet"],
                cwd=ROOT, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"importer exited {done.returncode}: {done.stderr[-2000:]}")
            with urllib.request.urlopen(f"{url}/_sandbox/stats?arrivals=1") as answer:
                stats = json.load(answer)
    arrivals = sorted(stats["arrivals"])
    span = arrivals[-1] - arrivals[0]
    assert stats["uploads"] == files, stats["uploads"]
    return {"rate": rate, "achieved": (files - 1) / span / limit,
            "share_429": stats["throttled"] / stats["requests"],
            "throttled": stats["throttled"], "requests": stats["requests"],
            "burst_100ms": burst(arrivals), "early": stats["early"], "seconds": span}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=float, default=20.0, help="server limit L, req/s")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="about how long each run lasts at L (sets the number of files)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    files = int(args.limit * args.seconds)
    results = [run(args.limit, factor * args.limit, files, args.concurrency)
               for factor in (1, 2)]
    print(f"server limit L = {args.limit:g} req/s, {files} files, concurrency "
          f"{args.concurrency}")
    print(f"{'--rate':>8} {'achieved/L':>11} {'429 share':>10} {'429s':>6} {'requests':>9} "
          f"{'burst/100ms':>12} {'early':>6} {'seconds':>8}")
    for r in results:
        print(f"{r['rate']:>8g} {r['achieved']:>11.3f} {r['share_429']:>10.2%} "
              f"{r['throttled']:>6.0f} {r['requests']:>9.0f} {r['burst_100ms']:>12.0f} "
              f"{r['early']:>6.0f} {r['seconds']:>8.1f}")
    at_l, at_2l = results
    ok = (at_l["achieved"] >= 0.95 and at_l["throttled"] == 0 and at_2l["share_429"] <= 0.05
          and at_2l["achieved"] >= 0.85)
    print(f"acceptance (>= 0.95 L and no 429 at L; <= 5% 429 and >= 0.85 L at 2L): "
          f"{'met' if ok else 'NOT met'}")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
