"""What installing the tool costs, measured rather than guessed: the README's figures come
from here (issue 23).

A fresh virtual environment is made in a temporary folder, the tool installed into it from
this checkout (not editable: what ``pip install .`` or the wheel gives a user, runtime
dependencies only), and then measured:

- **set-up times**: making the venv, installing (pip resolving, building our wheel and
  installing it with its dependencies; from the package index pip is configured with, so
  the network or a local mirror is part of it), and the first and a later
  ``convirza-import --version`` (a cold start imports the package; the bytecode is compiled
  at install, as pip does by default);
- **install size**: the whole venv on disk, and what the tool adds to it (the venv less an
  empty venv's own pip and setuptools), by the bytes of its files (``du --apparent-size``'s
  way, not the blocks a file system allots), and the largest packages.

Run from the repository root (it needs no extra; ``--keep`` leaves the venv to look at)::

    .venv/bin/python bench/install.py [--python python3] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(*command: str | Path) -> float:
    started = time.perf_counter()
    subprocess.run([str(c) for c in command], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def by_package(site: Path) -> Counter[str]:
    """Bytes per top-level entry of site-packages, a package's ``.dist-info`` with it."""
    sizes: Counter[str] = Counter()
    for entry in site.iterdir():
        name = entry.name.split("-")[0].removesuffix(".py").lower() if \
            entry.name.endswith((".dist-info", ".py")) else entry.name.lower()
        sizes[name] += size(entry) if entry.is_dir() else entry.stat().st_size
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter to make the venv with (default: this one)")
    parser.add_argument("--keep", action="store_true", help="leave the venv, print its path")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="convirza-install-"))
    venv = folder / "venv"
    try:
        made = timed(args.python, "-m", "venv", venv)
        empty = size(venv)
        python = venv / "bin" / "python"
        env_pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        installed = timed(*env_pip, ROOT)
        cold = timed(venv / "bin" / "convirza-import", "--version")
        warm = min(timed(venv / "bin" / "convirza-import", "--version") for _ in range(3))
        whole = size(venv)
        site = next((venv / "lib").glob("python3*/site-packages"))
        packages = by_package(site)
        ours = whole - empty
        load = os.getloadavg()[0]
        print(f"Install from {ROOT} with {args.python} ({sys.version.split()[0]}); "
              f"load {load:.2f}; {time.strftime('%Y-%m-%d')}")
        print(f"  venv made:                {made:6.1f} s")
        print(f"  pip install .:            {installed:6.1f} s")
        print(f"  first --version:          {cold:6.2f} s")
        print(f"  later --version (best 3): {warm:6.2f} s")
        print(f"  venv on disk:             {whole / 1e6:6.1f} MB (an empty venv: "
              f"{empty / 1e6:.1f} MB, pip and setuptools)")
        print(f"  the tool and its dependencies: {ours / 1e6:.1f} MB")
        print("  largest packages: " + ", ".join(
            f"{name} {n / 1e6:.1f} MB" for name, n in packages.most_common(8)))
        if args.keep:
            print(f"  kept: {venv}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
