"""Do the speed shortcuts earn their keep? Each is measured on the end-to-end figure it serves,
with it and without it, interleaved in one process (best of ``--repeat``); one that gains less
than 10% there is a candidate for removal.

The shortcuts, and the figure each serves:

- ``xing``: our own Xing/LAME header reader in the quick mp3 probe (without it, mutagen reads
  a lame-encoded mp3's header), and ``dict``: ``AudioInfo`` made by writing its ``__dict__``
  (without it, its frozen dataclass constructor), and ``suffix``: the extension judged from the
  path's text (without it, from ``Path.suffix``). They serve the header probe (``probe`` with
  no hash: files/s over recordings already in the page cache, one thread: what bench/audio.py
  compares with reading the bytes), and through it ``validate`` of a manifest of small
  recordings (wav, lame mp3s, frame-only mp3s): rows/s, every file probed and hashed.
- ``dates``: ``normalize_call_date``'s shorter road for dates already written as sent, and for
  dates without a zone (without it, ``format_call_date(parse_call_date(...))``); and
  ``process``: the second process that reads and normalizes a big CSV (without it, a thread).
  They serve ``validate`` of a big CSV of URL rows (no file probed): rows/s.
(Measured here and removed since, each under 10% on its figure: the extension judged from
the path's text (7% of the header probe), the shorter road for call dates (under 1% of
``validate``), and ``UploadRecord.model_construct`` for a row already normalized (no gain:
13 us a row either way). The Xing/LAME reader (nearly 3x the header probe of lame mp3s) and
``_audio_info`` (15%) stay.)

Run from the repository root::

    .venv/bin/python bench/shortcuts.py [--files 3000] [--rows 300000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from audio import make_files  # noqa: E402
from manifest import write_manifest as write_big_csv  # noqa: E402
from throughput import TOKEN, strict_server  # noqa: E402

from importer.audio import mp3, probing  # noqa: E402
from importer.audio.info import AudioInfo  # noqa: E402
from importer.observers import NullObserver  # noqa: E402
from importer.run import reader  # noqa: E402
from importer.run.pipeline import ImportRun, Upload, Validate  # noqa: E402
from importer.settings.resolve import Settings  # noqa: E402


def _plain_audio_info(path: Path, fmt: Any, codec: str, rate: int, channels: int,
                      duration: float, bitrate: int, size: int, sha256: str | None,
                      mtime_ns: int = 0) -> AudioInfo:
    return AudioInfo(path, fmt, codec, rate, channels, duration, bitrate, size, sha256,
                     mtime_ns)


#: Each shortcut: the module attribute it is, and what stands in for it without it.
WITHOUT: dict[str, tuple[Any, str, Callable[[], Any]]] = {
    "xing": (mp3, "_xing", lambda: lambda *args: None),
    "dict": (probing, "_audio_info", lambda: _plain_audio_info),
}
@contextlib.contextmanager
def without(name: str) -> Iterator[None]:
    if name == "process":
        saved = reader.open_reader.__defaults__
        reader.open_reader.__defaults__ = (10**15,)
        try:
            yield
        finally:
            reader.open_reader.__defaults__ = saved
        return
    module, attribute, replacement = WITHOUT[name]
    saved = getattr(module, attribute)
    setattr(module, attribute, replacement())
    try:
        yield
    finally:
        setattr(module, attribute, saved)


def settings(url: str, ledger: Path) -> Settings:
    return Settings.load({"api_url": url, "token": TOKEN, "timezone": "UTC", "rate": 100000,
                          "concurrency": 16, "ledger": ledger, "quiet": True}, environ={})


def probe_pass(paths: list[Path]) -> float:
    """Seconds to probe every file's headers (no hash), warm, on one thread."""
    for path in paths:  # warm the cache, so that only the probe is measured
        probing.probe(path, 10**9, digest=False)
    t0 = time.perf_counter()
    for path in paths:
        probing.probe(path, 10**9, digest=False)
    return time.perf_counter() - t0


def timed(run: ImportRun) -> float:
    t0 = time.perf_counter()
    asyncio.run(run.execute())
    return time.perf_counter() - t0


def audio_manifest(folder: Path, paths: list[Path]) -> Path:
    manifest = folder / "audio.csv"
    lines = ["recording_file,external_id,call_date,group_id,caller_id"]
    lines += [f"{p},A-{i:06d},2025-03-04T09:15:22-05:00,12,6175550142"
              for i, p in enumerate(paths)]
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--files", type=int, default=3000)
    p.add_argument("--rows", type=int, default=300_000)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="convirza-shortcuts-") as tmp:
        folder = Path(tmp)
        files = make_files(folder / "audio", a.files, 40_000)
        small = audio_manifest(folder, files)
        big = folder / "big.csv"
        write_big_csv(big, a.rows)
        best: dict[tuple[str, str], float] = {}
        figures = {
            "validate small files": (small, a.files, ("xing", "dict"), False),
            "validate a big CSV": (big, a.rows, ("process",), False),
        }
        for rep in range(a.repeat):
            for name in ("with all", "xing", "dict"):
                with contextlib.ExitStack() as stack:
                    if name != "with all":
                        stack.enter_context(without(name))
                    key = ("probe headers", name)
                    best[key] = min(best.get(key, float("inf")), probe_pass(files))
            for figure, (manifest, _n, names, sends) in figures.items():
                order = ["with all", *names]
                order = order[rep % len(order):] + order[:rep % len(order)]  # no first mover
                for name in order:
                    with contextlib.ExitStack() as stack:
                        if name != "with all":
                            stack.enter_context(without(name))
                        url = stack.enter_context(strict_server()) if sends else "http://x.test"
                        ledger = folder / f"ledger-{figure[:3]}-{name}-{rep}.sqlite"
                        s = settings(url, ledger)
                        mode = Upload(manifest) if sends else Validate(manifest)
                        run = ImportRun(s, mode, observer=NullObserver())
                        seconds = timed(run)
                    key = (figure, name)
                    best[key] = min(best.get(key, float("inf")), seconds)
        figures = {"probe headers": (small, a.files, ("xing", "dict"), False), **figures}
        for figure, (_, n, names, _) in figures.items():
            base = n / best[(figure, "with all")]
            print(f"{figure}: {base:,.0f} rows/s with every shortcut")
            for name in names:
                rate = n / best[(figure, name)]
                print(f"    without {name:<10} {rate:>10,.0f} rows/s: the shortcut gains "
                      f"{(base / rate - 1) * 100:+.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
