"""Recordings from S3: ``convirza-import run`` on ``s3://`` rows against a bare loop, in one run.

What is measured, each as its own process against a fresh sandbox (``python -m importer
sandbox``) and one S3 server (moto's, on loopback, in this process; both sides read the same
objects from it, so its own cost is in both figures):

(a) N small wav objects (default 3,000 of 40 KB, every one different), concurrency C (16):
    ours (``run`` on a manifest of ``s3://`` rows: a HEAD and a GET per object, probing,
    hashing, the ledger) vs a bare loop (this file, ``--bare``: aiobotocore GET + aiohttp
    POST, C workers, no checks, no ledger). Wall clock and CPU (the child's rusage).
(b) ``--presign`` vs the same objects as plain public ``recording_url`` rows (the URL-row rate:
    no audio passes through this machine either way; the sandbox does not fetch them).
    Beside it, the public URLs with ``--check-urls`` (one request to the store per row, as
    ``--presign``'s ranged probe is).
(c) one big object (default 200 MB): ours streamed vs the bare loop streaming it; peak RSS of
    each process (``ru_maxrss``) and time.
(d) ``scan`` of a folder of N names (default 100,000 empty files named as Asterisk names
    them): rows per second, whole process.

Run from the repository root (the s3 and test extras installed)::

    .venv/bin/python bench/sources.py [--objects 3000] [--size 40000] [--concurrency 16]
                                      [--big-mb 200] [--names 100000] [--only abcd]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import csv
import logging
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "BENCHTOKEN"
BUCKET = "bench-recordings"
CALL = ("2025-03-04T09:15:22-05:00", "12", "6175550142")


def wav_bytes(size: int, seed: int) -> bytes:
    """A PCM wav of about ``size`` bytes whose samples depend on ``seed`` (all different)."""
    frames = max(8, (size - 44) // 2)
    data = struct.pack(f"<{frames}h", *((seed * 7919 + i * 31) % 20000 - 10000
                                         for i in range(frames)))
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16,
                         1, 1, 8000, 16000, 2, 16, b"data", len(data))
    return header + data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def sandbox(max_size: str = "50MB") -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "importer", "sandbox", "--port", str(port),
                             "--token", TOKEN, "--max-file-size", max_size],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/_sandbox/stats", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall clock, CPU seconds and peak RSS (MiB) of ``cmd``, run in a wrapper so that the
    rusage is its own."""
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "r = subprocess.run(sys.argv[1:]); w = time.perf_counter() - t; "
               "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print(w, u.ru_utime + u.ru_stime, u.ru_maxrss, r.returncode)")
    done = subprocess.run([sys.executable, "-c", wrapper, *cmd], env=env, capture_output=True,
                          text=True, check=True)
    out = done.stdout.split()[-4:]
    if out[3] != "0":
        ledger = next((Path(c) for c in cmd if c.endswith(".sqlite")), None)
        why = subprocess.run([sys.executable, "-m", "importer", "report", str(ledger),
                              "--status", "invalid"], capture_output=True, text=True,
                             env=env).stdout[-1500:] if ledger else ""
        raise SystemExit(f"{cmd[:4]} exited {out[3]}: {done.stderr[-1000:]}{why}")
    return float(out[0]), float(out[1]), int(out[2]) // 1024


def startup(code: str, env: dict[str, str]) -> float:
    """The best of three start-ups (the interpreter and the imports) of ``code``."""
    return min(timed([sys.executable, "-c", code], env)[0] for _ in range(3))


OURS_IMPORTS = "import importer.cli.commands, importer.run.pipeline, s3fs"
BARE_IMPORTS = "import aiobotocore.session, aiohttp"


def manifest(path: Path, keys: list[str], column: str, prefix: str) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([column, "external_id", "call_date", "group_id", "caller_id"])
        for i, key in enumerate(keys):
            w.writerow([prefix + key, f"B-{i}", *CALL])
    return path


async def bare(rows: list[str], url: str, concurrency: int) -> None:
    """The baseline: GET each object (aiobotocore), POST it (aiohttp), C at once."""
    import aiobotocore.session
    import aiohttp
    session = aiobotocore.session.get_session()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for key in rows:
        queue.put_nowait(key)
    async with session.create_client("s3") as s3, aiohttp.ClientSession() as http:
        async def one(key: str) -> None:
            obj = await s3.get_object(Bucket=BUCKET, Key=key)

            async def body() -> object:
                while piece := await obj["Body"].read(1 << 16):
                    yield piece
            form = aiohttp.FormData()
            for name, value in zip(("call_date", "group_id", "caller_id"), CALL, strict=True):
                form.add_field(name, value)
            form.add_field("recording_file", body(), filename=key, content_type="audio/wav")
            async with http.post(url + "/v2/call/upload", data=form,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200, await resp.text()

        async def worker() -> None:
            while not queue.empty():
                await one(queue.get_nowait())
        await asyncio.gather(*(worker() for _ in range(concurrency)))


def ours(m: Path, env: dict[str, str], c: int, *extra: str) -> tuple[float, float, int]:
    return timed([sys.executable, "-m", "importer", "run", str(m), "--concurrency", str(c),
                  "--rate", "100000", "--quiet", "--ledger", str(m.with_suffix(".sqlite")),
                  "--find-existing", "never", *extra], env)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--objects", type=int, default=3000)
    p.add_argument("--size", type=int, default=40000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--big-mb", type=int, default=200)
    p.add_argument("--names", type=int, default=100_000)
    p.add_argument("--only", default="abcd", help="which parts to run")
    p.add_argument("--bare", nargs=3, metavar=("KEYS", "URL", "C"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.bare:
        asyncio.run(bare(Path(a.bare[0]).read_text().split(), a.bare[1], int(a.bare[2])))
        return
    import boto3
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    moto = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
           "CONVIRZA_TOKEN": TOKEN, "CONVIRZA_TIMEZONE": "UTC"}
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="bench", aws_secret_access_key="bench")
    s3.create_bucket(Bucket=BUCKET)
    keys = [f"calls/obj-{i:05d}.wav" for i in range(a.objects)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda ik: s3.put_object(Bucket=BUCKET, Key=ik[1],
                                               Body=wav_bytes(a.size, ik[0]),
                                               ContentType="audio/wav", ACL="public-read"),
                          enumerate(keys)))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "keys").write_text("\n".join(keys))
        if "a" in a.only:
            part_a(a, work, keys, env)
        if "b" in a.only:
            part_b(a, work, keys, env, endpoint)
        if "c" in a.only:
            part_c(a, work, env, s3)
        if "d" in a.only:
            part_d(a, work, env)
    moto.stop()


def part_a(a: argparse.Namespace, work: Path, keys: list[str], env: dict[str, str]) -> None:
    c, n = a.concurrency, a.objects
    bare_cmd = [sys.executable, __file__, "--bare", str(work / "keys")]
    print(f"(a) {n} objects of {a.size:,} bytes, concurrency {c}")
    if True:
        with sandbox() as url:
            env["CONVIRZA_API_URL"] = url
            wo, co, _ = ours(manifest(work / "a.csv", keys, "recording_file",
                                      f"s3://{BUCKET}/"), env, c)
        with sandbox() as url:
            wb, cb, _ = timed([*bare_cmd, url, str(c)], env)
        so, sb = startup(OURS_IMPORTS, env), startup(BARE_IMPORTS, env)
        print(f"    ours {n / wo:,.0f} objects/s, bare loop {n / wb:,.0f}: ratio {wb / wo:.2f}; "
              f"CPU per 1,000: ours {1000 * co / n:.2f} s, bare {1000 * cb / n:.2f} s: "
              f"{co / cb:.2f}x")
        print(f"    without start-up ({so:.2f} s, {sb:.2f} s): ours {n / (wo - so):,.0f}, bare "
              f"{n / (wb - sb):,.0f}: ratio {(wb - sb) / (wo - so):.2f}")


def part_b(a: argparse.Namespace, work: Path, keys: list[str], env: dict[str, str],
           endpoint: str) -> None:
    c, n = a.concurrency, a.objects
    print("(b) --presign vs plain public recording_url rows (and with --check-urls)")
    with sandbox() as url:
        env["CONVIRZA_API_URL"] = url
        wp, _, _ = ours(manifest(work / "p.csv", keys, "recording_file",
                                 f"s3://{BUCKET}/"), env, c, "--presign", "1h")
        public = manifest(work / "u.csv", keys, "recording_url", f"{endpoint}/{BUCKET}/")
        wu, _, _ = ours(public, env, c)
        public.with_suffix(".sqlite").unlink()
        wk, _, _ = ours(public, env, c, "--check-urls")
    print(f"    presign {n / wp:,.0f} rows/s, public URLs {n / wu:,.0f}: ratio {wu / wp:.2f}; "
          f"public URLs checked (--check-urls) {n / wk:,.0f}: ratio {wk / wp:.2f}")


def part_c(a: argparse.Namespace, work: Path, env: dict[str, str], s3: object) -> None:
    print(f"(c) one object of {a.big_mb} MB, streamed")
    big = a.big_mb * 1_000_000
    if True:
        s3.put_object(Bucket=BUCKET, Key="big/call.wav", Body=wav_bytes(big, 1))  # type: ignore[attr-defined]
        (work / "bigkeys").write_text("big/call.wav")
        with sandbox("1GB") as url:
            env["CONVIRZA_API_URL"] = url
            wg, _, rss = ours(manifest(work / "g.csv", ["big/call.wav"], "recording_file",
                                       f"s3://{BUCKET}/"), env, 1, "--max-file-size", "1GB")
        with sandbox("1GB") as url:
            wgb, _, rssb = timed([sys.executable, __file__, "--bare", str(work / "bigkeys"),
                                  url, "1"], env)
        so, sb = startup(OURS_IMPORTS, env), startup(BARE_IMPORTS, env)
        print(f"    ours {wg:.1f} s, peak RSS {rss} MiB; bare loop {wgb:.1f} s, {rssb} MiB: "
              f"time ratio {wg / wgb:.2f}; without start-up ({so:.2f} s, {sb:.2f} s): "
              f"{(wg - so) / (wgb - sb):.2f}")


def part_d(a: argparse.Namespace, work: Path, env: dict[str, str]) -> None:
    n = a.names
    root = work / "monitor"
    for i in range(n):
        day = root / f"2024/03/{1 + i % 28:02d}"
        day.mkdir(parents=True, exist_ok=True)
        (day / f"in-{6175550000 + i}-201-202403{1 + i % 28:02d}-141503-{1709302503 + i}.{i}.wav"
         ).touch()
    wall, _, rss = timed([sys.executable, "-m", "importer", "scan", str(root), "--template",
                          "asterisk", "--set", "group_id=12", "-o", str(work / "scan.csv")],
                         env)
    print(f"(d) scan of {n:,} names: {n / wall:,.0f} rows/s ({wall:.1f} s, whole process), "
          f"peak RSS {rss} MiB")


if __name__ == "__main__":
    main()
