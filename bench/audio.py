"""Audio probing speed: files/s probed with and without the sha256, beside the time to merely
read the same bytes (the disk ceiling), on this machine.

Files: N recordings of about S MB each (default 2000 of 3 MB), in equal shares of three
kinds, all real audio made from ``tests/audio_corpus``:

  wav         the 8 kHz PCM speech of ``pcm-8k-mono.wav`` repeated under a correct header
  mp3         that speech encoded by lame at 64 kbit/s (CBR MPEG-1 Layer III with lame's Info
              header; below about 48 kbit/s lame leaves the header out, as the frames are too
              small for it): needs ``lame`` on PATH, else this kind is left out
  mp3-noxing  the frames of ``mpeg1-cbr-notag.mp3`` repeated: no header says the frame count,
              so the probe takes its slower path and checks the bitrate of the first frames

Every file has its own bytes on disk (its own pages in the cache) and a distinct sha256.

Four passes over all N files, each with a pool of C threads, as the pipeline runs probes:

  read        every byte read as the hash reads them (unbuffered, 1 MiB chunks into one
              reused buffer): the ceiling
  head        open and read the first 4 KiB, nothing else: the floor under any probe
  probe       ``probe(path, digest=False)``: headers only
  probe+sha   ``probe(path)``: headers, then every byte hashed in 1 MiB chunks

in two cache states:

  cold   each pass starts with the files evicted from the page cache (sync, then
         posix_fadvise DONTNEED), so the bytes come from the disk, as when a migration reads
         a PBX export once. The ceiling is the disk.
  warm   each pass starts with every file in the page cache, so the bytes come from memory.
         The ceiling is memory bandwidth, which no sha256 implementation keeps up with.

The machine is shared, so ``--repeat K`` runs every pass K times (interleaved) and keeps the
best. Run from the repository root::

    .venv/bin/python bench/audio.py [--files 2000] [--size-mb 3] [--concurrency 4]
                                    [--repeat 3] [--dir DIR] [--keep] [--json]

This is not part of ``make test``: it writes N x S MB to disk (bench/out/ by default).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from importer.audio.probing import HASH_CHUNK, HEAD_BYTES, probe  # noqa: E402

CORPUS = ROOT / "tests" / "audio_corpus"
ACCEPTANCE_PROBE = 20.0  # probing without hashing at least this many times faster than reading
ACCEPTANCE_SHA = 1.5  # probing with hashing within this many times the bare read


def wav_of(size: int) -> bytes:
    """A wav of about ``size`` bytes: the corpus' 8 kHz speech, repeated."""
    wav = (CORPUS / "pcm-8k-mono.wav").read_bytes()
    header, samples = bytearray(wav[:44]), wav[44:]
    data = (samples * (size // len(samples) + 1))[:size - 44 & ~1]
    header[4:8] = (36 + len(data)).to_bytes(4, "little")
    header[40:44] = len(data).to_bytes(4, "little")
    return bytes(header) + data


def lame_mp3_of(size: int) -> bytes | None:
    """A 64 kbit/s mp3 of about ``size`` bytes encoded by lame, or None without lame."""
    lame = shutil.which("lame")
    if lame is None:
        return None
    seconds = size * 8 / 64_000
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "in.wav", Path(scratch) / "out.mp3"
        source.write_bytes(wav_of(int(seconds * 16_000) + 44))
        subprocess.run([lame, "--quiet", "-b", "64", "--resample", "32", str(source),
                        str(target)], check=True)
        return target.read_bytes()


def make_files(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` recordings of about ``size`` bytes, the kinds taking turns."""
    frames = (CORPUS / "mpeg1-cbr-notag.mp3").read_bytes()
    kinds = [("wav", wav_of(size)), ("mp3", lame_mp3_of(size)),
             ("mp3", frames * (size // len(frames)))]
    made = [(suffix, data) for suffix, data in kinds if data is not None]
    if len(made) < len(kinds):
        print("lame is not on PATH: no lame-encoded mp3s in this run", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        suffix, data = made[i % len(made)]
        path = folder / f"call-{i:06d}.{suffix}"
        # Every file gets its own content where the probe does not look: two samples in the
        # middle of a wav's audio, an ID3v1 tag (128 bytes at the end) naming an mp3's call.
        with path.open("wb") as handle:
            if suffix == "wav":
                middle = 44 + ((len(data) - 44) // 2 & ~1)
                handle.write(data[:middle])
                handle.write(i.to_bytes(4, "little"))
                handle.write(data[middle + 4:])
            else:
                handle.write(data)
                handle.write(b"TAG" + f"call {i}".encode().ljust(125, b"\0"))
        paths.append(path)
    os.sync()
    return paths


def read_all(path: Path) -> int:
    """Every byte, the way the probe's hash reads them (unbuffered, 1 MiB at a time into one
    buffer), minus the hash."""
    buffer = memoryview(bytearray(HASH_CHUNK))
    total = 0
    with path.open("rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            total += count
    return total


def read_head(path: Path) -> int:
    with path.open("rb") as handle:
        return len(handle.read(HEAD_BYTES))


def probe_headers(path: Path) -> int:
    return probe(path, 1 << 40, digest=False).size


def probe_and_hash(path: Path) -> int:
    info = probe(path, 1 << 40)
    assert info.sha256 is not None
    return info.size


def evict(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(fn: Callable[[Path], int], paths: list[Path], threads: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        done = list(pool.map(fn, paths))
    elapsed = time.perf_counter() - started
    assert len(done) == len(paths) and all(n > 0 for n in done)
    return elapsed


PASSES: dict[str, Callable[[Path], int]] = {
    "read": read_all, "head": read_head, "probe": probe_headers, "probe+sha": probe_and_hash}


def run(paths: list[Path], threads: int, repeat: int) -> dict[str, dict[str, float]]:
    best: dict[str, dict[str, float]] = {"cold": {}, "warm": {}}
    for _ in range(repeat):
        for cache in ("cold", "warm"):
            for name, fn in PASSES.items():
                if cache == "cold":
                    evict(paths)
                else:
                    timed(read_all, paths, threads)  # everything in the page cache
                seconds = timed(fn, paths, threads)
                best[cache][name] = min(best[cache].get(name, seconds), seconds)
    return best


def report(best: dict[str, dict[str, float]], paths: list[Path], threads: int,
           repeat: int, load: float) -> dict[str, object]:
    n = len(paths)
    total = sum(p.stat().st_size for p in paths)
    wavs = sum(1 for p in paths if p.suffix == ".wav")
    print(f"{n} files, {total / 1e9:.2f} GB ({total / n / 1e6:.2f} MB each: {wavs} wav, "
          f"{n - wavs} mp3), {threads} threads, best of {repeat}")
    print(f"machine: {os.cpu_count()} CPUs; 1-minute load average {load:.2f} before the files "
          f"were made, {os.getloadavg()[0]:.2f} after the passes (other work on a shared "
          "machine slows the CPU-bound passes: probing, hashing)")
    for path in paths[:3]:
        info = probe(path, 1 << 40, digest=False)
        print(f"  e.g. {path.name}: {info.codec}, {info.sample_rate} Hz, {info.bitrate} bit/s, "
              f"{info.duration:.0f} s")
    print(f"{'cache':<7}{'pass':<11}{'seconds':>9}{'files/s':>10}{'MB/s':>9}")
    for cache, passes in best.items():
        for name, seconds in passes.items():
            print(f"{cache:<7}{name:<11}{seconds:>9.3f}{n / seconds:>10.0f}"
                  f"{total / seconds / 1e6:>9.0f}")
    figures: dict[str, object] = {"files": n, "bytes": total, "threads": threads,
                                  "repeat": repeat, "seconds": best}
    for cache, passes in best.items():
        faster = passes["read"] / passes["probe"]
        hashed = passes["probe+sha"] / passes["read"]
        floor = passes["read"] / passes["head"]
        figures[f"{cache}_read_over_probe"] = round(faster, 2)
        figures[f"{cache}_read_over_head"] = round(floor, 2)
        figures[f"{cache}_probe_sha_over_read"] = round(hashed, 2)
        # The acceptance is about the disk ceiling, so it is judged on cold caches only.
        verdict = cache == "cold"
        met = "met" if faster >= ACCEPTANCE_PROBE else "NOT met"
        print(f"{cache}: reading the bytes takes {faster:.1f}x as long as probing without "
              "hashing" + (f" (acceptance >= {ACCEPTANCE_PROBE:g}x: {met})" if verdict else ""))
        print(f"{cache}: reading the bytes takes {floor:.1f}x as long as reading a 4 KiB head "
              "(the most any header probe could reach)")
        met = "met" if hashed <= ACCEPTANCE_SHA else "NOT met"
        print(f"{cache}: probing with hashing takes {hashed:.2f}x as long as reading the bytes"
              + (f" (acceptance <= {ACCEPTANCE_SHA:g}x: {met})" if verdict else ""))
    if best["warm"]["read"] > 0.8 * best["cold"]["read"]:
        print("note: cold reads were nearly as fast as warm ones: the eviction may not have "
              "taken effect (or the disk is itself cached by the host)")
    return figures


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--files", type=positive, default=2000, help="recordings to make (2000)")
    p.add_argument("--size-mb", type=float, default=3.0, help="size of each, in MB (3)")
    p.add_argument("--concurrency", type=positive, default=4, help="threads (4)")
    p.add_argument("--repeat", type=positive, default=3, help="runs of each pass, best kept (3)")
    p.add_argument("--dir", type=Path, default=ROOT / "bench" / "out" / "audio",
                   help="where the files are made (bench/out/audio, removed afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the files (and reuse them)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = p.parse_args()
    size = int(args.size_mb * 1e6)
    load = os.getloadavg()[0]
    existing = sorted(args.dir.glob("call-*")) if args.keep and args.dir.is_dir() else []
    if len(existing) == args.files and all(abs(f.stat().st_size - size) < 20_000
                                           for f in existing):
        paths = existing
    else:
        shutil.rmtree(args.dir, ignore_errors=True)
        started = time.perf_counter()
        paths = make_files(args.dir, args.files, size)
        print(f"made {len(paths)} files in {time.perf_counter() - started:.1f}s", flush=True)
    try:
        best = run(paths, args.concurrency, args.repeat)
        figures = report(best, paths, args.concurrency, args.repeat, load)
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
