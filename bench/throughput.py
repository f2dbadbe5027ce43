"""Upload throughput and CPU of ``convirza-import run`` against two references, in one run.

What is measured: uploading the same N small WAV files (default 3,000 of 40 KB: 8 kHz mono
16-bit PCM, 2.5 s each, every one different) at concurrency C (default 16), three ways, each
as its own process against a fresh ``bench/strict_server.py`` (a server that checks every
upload is a well-formed multipart request with the file and the required fields, and costs
little CPU, so that on this two-core machine the client, not the server, is measured). Each
measurement is checked to have delivered all N uploads.

(a) ours: ``python -m importer run MANIFEST --concurrency C --rate 100000 --quiet``, all of it:
    reading and validating the manifest, probing and hashing every file, the ledger's durable
    writes, the check before the first row.
(b) the bare client: one aiohttp ``ClientSession``, C workers, ``FormData`` with the open
    file, no checks and no ledger (this file, run as ``--bare-client``): the ceiling for an
    aiohttp client against this server.
(c) what a user would otherwise script: ``xargs -P C`` running one ``curl`` per file.

Wall clock and CPU (user + system, from ``getrusage`` of the child) of each process, best of
``--repeat`` rounds, interleaved (the machine is small and shared: noisy). Start-up (the
interpreter and the imports: ``python -m importer --version`` for ours, ``import aiohttp`` for
the bare client) is measured the same way and subtracted for the adjusted figures, which are
the ones the ratios compare.

Run from the repository root (``make bench`` runs it with the defaults)::

    .venv/bin/python bench/throughput.py [--files 3000] [--size 40000] [--concurrency 16]
                                         [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import csv
import functools
import json
import math
import os
import resource
import select
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "BENCHTOKEN"
GROUP_ID, CALLER_ID = "12", "6175550142"
RATE = 8000


@dataclass(frozen=True)
class Cost:
    """What one process took: wall clock and CPU seconds (user + system)."""

    wall: float
    cpu: float

    def minus(self, other: Cost) -> Cost:
        return Cost(max(self.wall - other.wall, 1e-9), max(self.cpu - other.cpu, 1e-9))


def make_recordings(folder: Path, count: int, size: int) -> list[tuple[str, str, str]]:
    """``count`` distinct WAV files of about ``size`` bytes under folder/wav; rows of (path
    relative to folder, external_id, call_date)."""
    (folder / "wav").mkdir()
    frames = max(1, (size - 44) // 2)
    rows = []
    for i in range(1, count + 1):
        rel = f"wav/bench-{i:06d}.wav"
        freq = 220.0 + 7.0 * (i % 150)
        samples = array.array("h", (int(12000 * math.sin(2 * math.pi * freq * n / RATE))
                                    for n in range(frames)))
        samples[0] = i % 32768  # distinct bytes even where the pitch repeats
        with wave.open(str(folder / rel), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(samples.tobytes())
        minute = i % 60
        rows.append((rel, f"BENCH-{i:06d}", f"2025-03-04T09:{minute:02d}:22-05:00"))
    return rows


def write_manifest(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["recording_file", "external_id", "call_date", "group_id", "caller_id"])
        for rel, external_id, date in rows:
            writer.writerow([rel, external_id, date, GROUP_ID, CALLER_ID])


@contextmanager
def strict_server() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "strict_server.py"),
                             "--token", TOKEN], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            raise SystemExit(f"the strict server did not start: {line!r}")
        yield line.removeprefix("listening on ").strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def accepted(url: str) -> int:
    with urllib.request.urlopen(f"{url}/_stats", timeout=10) as answer:
        return int(json.load(answer)["accepted"])


def timed(cmd: list[str], **kwargs: object) -> Cost:
    """Run ``cmd`` to its end; its wall clock and its CPU, from the children's rusage."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{cmd[:3]} exited {done.returncode}:\n{done.stderr[-3000:]}"
                         f"{done.stdout[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Cost(wall, cpu)


def run_ours(url: str, manifest: Path, ledger: Path, c: int) -> Cost:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVIRZA_")}
    env |= {"CONVIRZA_API_URL": url, "CONVIRZA_TOKEN": TOKEN, "CONVIRZA_TIMEZONE": "UTC"}
    return timed([sys.executable, "-m", "importer", "run", str(manifest), "--ledger",
                  str(ledger), "--concurrency", str(c), "--rate", "100000", "--quiet"],
                 cwd=ROOT, env=env)


def run_bare(url: str, folder: Path, rows: list[tuple[str, str, str]], c: int) -> Cost:
    listing = folder / "bare-args.json"
    listing.write_text(json.dumps([[str(folder / rel), ext, date] for rel, ext, date in rows]))
    return timed([sys.executable, __file__, "--bare-client", url, str(listing), str(c)])


def run_curl(url: str, folder: Path, rows: list[tuple[str, str, str]], c: int) -> Cost:
    """``xargs -P C``, one ``curl`` per file; path, external_id and call_date as $1 $2 $3 from
    a NUL-separated list. Every answer is checked to be 200."""
    script = (f'curl -sS -o /dev/null -w "%{{http_code}}\\n" '
              f'-H {shlex.quote("Authorization: Bearer " + TOKEN)} '
              '-F "recording_file=@\\"$1\\";type=audio/wav" -F "external_id=$2" '
              f'-F "call_date=$3" -F group_id={GROUP_ID} -F caller_id={CALLER_ID} '
              f'{shlex.quote(url + "/v2/call/upload")}')
    listing = folder / "curl-args"
    listing.write_bytes(b"".join(f"{folder / rel}\0{ext}\0{date}\0".encode()
                                 for rel, ext, date in rows))
    with listing.open("rb") as stdin:
        return timed(["xargs", "-0", "-P", str(c), "-n", "3", "sh", "-c", script, "curl-one"],
                     stdin=stdin)


async def _bare_uploads(url: str, rows: list[list[str]], c: int) -> set[int]:
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for row in rows:
        queue.put_nowait(row)
    statuses: set[int] = set()
    import aiohttp

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as session:

        async def worker() -> None:
            while not queue.empty():
                path, external_id, date = queue.get_nowait()
                with open(path, "rb") as handle:
                    form = aiohttp.FormData()
                    form.add_field("recording_file", handle, filename=os.path.basename(path),
                                   content_type="audio/wav")
                    for name, value in (("call_date", date), ("group_id", GROUP_ID),
                                        ("caller_id", CALLER_ID), ("external_id", external_id)):
                        form.add_field(name, value)
                    async with session.post(f"{url}/v2/call/upload", data=form,
                                            headers=headers) as resp:
                        await resp.read()
                        statuses.add(resp.status)

        await asyncio.gather(*(worker() for _ in range(c)))
    return statuses


def bare_client(url: str, listing: str, c: str) -> int:
    statuses = asyncio.run(_bare_uploads(url, json.loads(Path(listing).read_text()), int(c)))
    if statuses != {200}:
        print(f"non-200 answers: {sorted(statuses - {200})}", file=sys.stderr)
        return 1
    return 0


def measure(name: str, n: int, upload: Callable[[str], Cost]) -> Cost:
    with strict_server() as url:
        cost = upload(url)
        if (got := accepted(url)) != n:
            raise SystemExit(f"{name}: the server accepted {got} uploads, expected {n}")
    return cost


def report(n: int, c: int, k: int, best: dict[str, Cost], load: tuple[float, ...],
           as_json: bool) -> None:
    ours = best["ours"].minus(best["ours start-up"])
    bare = best["bare"].minus(best["bare start-up"])
    curl = best["curl"]
    rows = [("(a) ours, whole process", best["ours"]), ("(a) ours minus start-up", ours),
            ("(b) bare aiohttp, whole process", best["bare"]), ("(b) bare minus start-up", bare),
            (f"(c) xargs -P {c} curl", curl)]
    print(f"{n} files, concurrency {c}, best of {k}; load average before: "
          f"{', '.join(f'{x:.2f}' for x in load)}")
    print(f"{'method':<34}{'seconds':>9}{'files/s':>10}{'CPU s':>8}{'CPU s/1000':>12}")
    for label, cost in rows:
        print(f"{label:<34}{cost.wall:>9.2f}{n / cost.wall:>10.1f}{cost.cpu:>8.2f}"
              f"{cost.cpu / n * 1000:>12.3f}")
    figures = {
        "ours/bare": bare.wall / ours.wall,
        "ours/curl": curl.wall / ours.wall,
        "ours/bare, whole processes": best["bare"].wall / best["ours"].wall,
        "ours/curl, whole process": curl.wall / best["ours"].wall,
        "CPU per upload, ours/bare": ours.cpu / bare.cpu,
    }
    for name, value in figures.items():
        print(f"{name:<34}{value:>9.2f}")
    if as_json:
        print(json.dumps({"files": n, "concurrency": c, "repeat": k, "load": load,
                          "costs": {k: [round(v.wall, 4), round(v.cpu, 4)]
                                    for k, v in best.items()},
                          "ratios": {k: round(v, 4) for k, v in figures.items()}}, indent=2))


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--bare-client":
        return bare_client(*sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--files", type=int, default=3000, help="WAV files to send (3000)")
    p.add_argument("--size", type=int, default=40_000, help="bytes per file (40000)")
    p.add_argument("--concurrency", type=int, default=16, help="uploads at once (16)")
    p.add_argument("--repeat", type=int, default=3, help="rounds, best kept (3)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    a = p.parse_args()
    n, c = a.files, a.concurrency
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="convirza-bench-") as tmp:
        folder = Path(tmp)
        rows = make_recordings(folder, n, a.size)
        manifest = folder / "manifest.csv"
        write_manifest(manifest, rows)
        best: dict[str, Cost] = {}

        def keep(name: str, cost: Cost) -> None:
            if name not in best or cost.wall < best[name].wall:
                best[name] = cost

        for rep in range(a.repeat):
            keep("ours start-up", timed([sys.executable, "-m", "importer", "--version"],
                                        cwd=ROOT))
            keep("bare start-up", timed([sys.executable, "-c", "import aiohttp"]))
            ledger = folder / f"ledger-{rep}.sqlite"  # fresh: a reused ledger would skip all
            keep("ours", measure("ours", n, functools.partial(
                run_ours, manifest=manifest, ledger=ledger, c=c)))
            keep("bare", measure("bare", n, lambda url: run_bare(url, folder, rows, c)))
            keep("curl", measure("curl", n, lambda url: run_curl(url, folder, rows, c)))
    report(n, c, a.repeat, best, load, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
