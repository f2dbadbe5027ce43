"""Upload throughput of ``convirza-import run`` against two references, on this machine.

What is measured: files/s for uploading the same N small WAV files (8 kHz mono 16-bit PCM,
1-2 s each) to the built-in sandbox (``python -m importer sandbox``), three ways, each against
a fresh sandbox subprocess that starts empty and keeps what it receives in its own SQLite
``--store`` file, so that every measurement is checked to have delivered all N uploads:

(a) ours: ``python -m importer run MANIFEST --concurrency C --rate 100000 --quiet`` as a
    subprocess, wall clock of the whole process. That includes interpreter start-up and
    imports, so ``python -m importer --version`` is timed too (best of K like the rest) and
    a start-up-adjusted figure is printed beside the raw one. Everything the importer does
    per row is in the figure: validation, audio probing, two durable (fsync'd) ledger writes.
(b) the baseline a user would otherwise script: ``xargs -P C`` running one ``curl`` per file.
    Every response code is checked to be 200.
(c) the ceiling: a minimal aiohttp client in this process (one session, C workers, no
    validation, no ledger). Nothing written in Python with aiohttp can beat this by much
    against this server, so ours/ceiling says how much of the possible speed our extra work
    costs.

The machine is small and shared, so timings are noisy: ``--repeat K`` runs the three K times,
interleaved, and reports the best of K for each.

Run from the repository root::

    .venv/bin/python bench/throughput.py --files 300 [--concurrency 8] [--repeat 3] [--json]

This is not part of ``make test`` (``make bench`` runs it with the defaults).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import csv
import json
import math
import os
import select
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "BENCHTOKEN"
GROUP_ID, CALLER_ID = "12", "6175550142"
RATE = 8000


@dataclass(frozen=True)
class Recording:
    path: Path  # absolute
    rel: str  # relative to the manifest's folder
    external_id: str
    call_date: str


def make_recordings(folder: Path, count: int) -> list[Recording]:
    """``count`` distinct WAV files (sine tones, varying pitch and length) under folder/wav."""
    (folder / "wav").mkdir()
    start = datetime(2025, 3, 4, 9, 15, 22, tzinfo=timezone(timedelta(hours=-5)))
    out: list[Recording] = []
    for i in range(1, count + 1):
        rel = f"wav/bench-{i:06d}.wav"
        freq, seconds = 220.0 + 7.0 * (i % 150), 1.0 + (i % 11) / 10
        samples = array.array("h", (int(12000 * math.sin(2 * math.pi * freq * n / RATE))
                                    for n in range(int(RATE * seconds))))
        with wave.open(str(folder / rel), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(samples.tobytes())
        date = (start + timedelta(minutes=i)).isoformat()
        out.append(Recording(folder / rel, rel, f"BENCH-{i:06d}", date))
    return out


def write_manifest(path: Path, recordings: list[Recording]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["external_id", "recording_file", "call_date", "group_id", "caller_id"])
        for r in recordings:
            writer.writerow([r.external_id, r.rel, r.call_date, GROUP_ID, CALLER_ID])


@contextmanager
def sandbox(store: Path, *extra: str) -> Iterator[str]:
    """A fresh sandbox subprocess storing calls in ``store`` (``extra``: more sandbox
    options); yields its base URL."""
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
        yield line[len(prefix):].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stored_calls(store: Path) -> int:
    with closing(sqlite3.connect(store)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])


def run_ours(url: str, manifest: Path, ledger: Path, c: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVIRZA_")}
    env |= {"CONVIRZA_API_URL": url, "CONVIRZA_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "importer", "run", str(manifest), "--ledger", str(ledger),
           "--concurrency", str(c), "--rate", "100000", "--quiet"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"importer exited {done.returncode}:\n{done.stderr}{done.stdout}")


def run_curl(url: str, work: Path, recordings: list[Recording], c: int) -> None:
    """xargs -P C, one curl per file, which gets path, external_id and call_date as $1 $2 $3
    from a NUL-separated list: spaces, quotes, ';' and ',' in paths are safe (curl -F reads the
    path double-quoted; only a '"' or '\\' in it would need escaping, and ours have none)."""
    script = (f'curl -sS -o /dev/null -w "%{{http_code}}\\n" '
              f'-H {shlex.quote("Authorization: Bearer " + TOKEN)} '
              '-F "recording_file=@\\"$1\\";type=audio/wav" -F "external_id=$2" '
              f'-F "call_date=$3" -F group_id={GROUP_ID} -F caller_id={CALLER_ID} '
              f'{shlex.quote(url + "/v2/call/upload")}')
    listing = work / "curl-args"
    listing.write_bytes(b"".join(f"{r.path}\0{r.external_id}\0{r.call_date}\0".encode()
                                 for r in recordings))
    cmd = ["xargs", "-0", "-P", str(c), "-n", "3", "sh", "-c", script, "curl-one"]
    with listing.open("rb") as stdin:
        done = subprocess.run(cmd, stdin=stdin, capture_output=True, text=True)
    codes = done.stdout.split()
    if done.returncode != 0 or len(codes) != len(recordings) or set(codes) != {"200"}:
        bad = sorted(set(codes) - {"200"})
        raise SystemExit(f"curl: xargs exit {done.returncode}, {len(codes)} answers of "
                         f"{len(recordings)}, other codes {bad}:\n{done.stderr[-2000:]}")


async def _aiohttp_upload(url: str, recordings: list[Recording], c: int) -> list[int]:
    queue: asyncio.Queue[Recording] = asyncio.Queue()
    for r in recordings:
        queue.put_nowait(r)
    statuses: list[int] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as session:

        async def worker() -> None:
            while not queue.empty():
                r = queue.get_nowait()
                with r.path.open("rb") as handle:
                    form = aiohttp.FormData()
                    form.add_field("recording_file", handle, filename=r.path.name,
                                   content_type="audio/wav")
                    for name, value in (("call_date", r.call_date), ("group_id", GROUP_ID),
                                        ("caller_id", CALLER_ID), ("external_id", r.external_id)):
                        form.add_field(name, value)
                    async with session.post(f"{url}/v2/call/upload", data=form,
                                            headers=headers) as resp:
                        await resp.read()
                        statuses.append(resp.status)

        await asyncio.gather(*(worker() for _ in range(c)))
    return statuses


def run_ceiling(url: str, recordings: list[Recording], c: int) -> None:
    statuses = asyncio.run(_aiohttp_upload(url, recordings, c))
    if set(statuses) != {200}:
        raise SystemExit(f"aiohttp: non-200 answers {sorted(set(statuses) - {200})}")


def measure(name: str, work: Path, rep: int, n: int, upload: Callable[[str], None]) -> float:
    """Seconds ``upload(url)`` takes against a fresh sandbox, which must then hold n calls."""
    store = work / f"store-{name}-{rep}.sqlite"
    with sandbox(store) as url:
        t0 = time.perf_counter()
        upload(url)
        seconds = time.perf_counter() - t0
    if (got := stored_calls(store)) != n:
        raise SystemExit(f"{name}: the sandbox stored {got} calls, expected {n}")
    return seconds


def startup_seconds() -> float:
    """Interpreter start-up plus the importer's imports: ``python -m importer --version``."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "importer", "--version"], cwd=ROOT, check=True,
                   capture_output=True)
    return time.perf_counter() - t0


def positive(text: str) -> int:
    if (value := int(text)) < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def report(n: int, c: int, k: int, best: dict[str, float], as_json: bool) -> None:
    """The table, the summary line and (``as_json``) the same figures as JSON."""
    startup = best["startup"]
    secs: dict[str, float | None] = {key: best[key] for key in ("ours", "curl", "ceiling")}
    secs["ours_adjusted"] = best["ours"] - startup if best["ours"] > startup else None
    rate = {key: None if v is None else n / v for key, v in secs.items()}

    def ratio(key: str, ref: str) -> float | None:
        r, base = rate[key], rate[ref]
        return None if r is None or base is None else r / base

    labels = {"ours": "(a) convirza-import run", "ours_adjusted": f"(a) minus start-up "
              f"{startup:.2f}s", "curl": f"(b) xargs -P {c} curl", "ceiling": "(c) aiohttp ceiling"}
    print(f"{n} files, concurrency {c}, best of {k}")
    print(f"{'method':<30}{'seconds':>9}{'files/s':>10}{'vs curl':>9}{'vs ceiling':>12}")
    for key in ("ours", "ours_adjusted", "curl", "ceiling"):
        s, r = secs[key], rate[key]
        if s is None or r is None:
            print(f"{labels[key]:<30}{'n/a: start-up took longer than the run':>40}")
        else:
            print(f"{labels[key]:<30}{s:>9.2f}{r:>10.1f}{ratio(key, 'curl') or 0:>8.2f}x"
                  f"{ratio(key, 'ceiling') or 0:>11.2f}x")
    adjusted = "n/a" if rate["ours_adjusted"] is None else f"{rate['ours_adjusted']:.1f}"
    print(f"summary: ours {n / best['ours']:.1f} files/s ({adjusted} without start-up) = "
          f"{best['curl'] / best['ours']:.2f}x curl, {best['ceiling'] / best['ours']:.2f}x ceiling")
    if startup > best["ours"] / 2:
        print(f"note: start-up is {startup / best['ours']:.0%} of (a)'s wall clock; more "
              "--files give a steadier start-up-adjusted figure")
    if as_json:
        def rounded(v: float | None, digits: int) -> float | None:
            return None if v is None else round(v, digits)

        print(json.dumps({
            "files": n, "concurrency": c, "repeat": k, "startup_seconds": round(startup, 4),
            "seconds": {key: rounded(v, 4) for key, v in secs.items()},
            "files_per_second": {key: rounded(v, 2) for key, v in rate.items()},
            "ratios": {f"{key}/{ref}": rounded(ratio(key, ref), 4)
                       for key in ("ours", "ours_adjusted") for ref in ("curl", "ceiling")},
        }, indent=2))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--files", type=positive, default=300, help="WAV files to send (300)")
    p.add_argument("--concurrency", type=positive, default=8, help="uploads at once (8)")
    p.add_argument("--repeat", type=positive, default=1, help="runs of each, best kept (1)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    a = p.parse_args()
    n, c = a.files, a.concurrency
    with tempfile.TemporaryDirectory(prefix="convirza-bench-") as tmp:
        work = Path(tmp)
        recordings = make_recordings(work, n)
        manifest = work / "manifest.csv"
        write_manifest(manifest, recordings)
        best: dict[str, float] = {}
        for rep in range(a.repeat):
            best["startup"] = min(best.get("startup", math.inf), startup_seconds())
            ledger = work / f"ledger-{rep}.sqlite"  # fresh: a reused ledger would skip all
            runs: dict[str, Callable[[str], None]] = {
                "ours": partial(run_ours, manifest=manifest, ledger=ledger, c=c),
                "curl": partial(run_curl, work=work, recordings=recordings, c=c),
                "ceiling": partial(run_ceiling, recordings=recordings, c=c),
            }
            for name, upload in runs.items():
                seconds = measure(name, work, rep, n, upload)
                best[name] = min(best.get(name, math.inf), seconds)
    report(n, c, a.repeat, best, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
