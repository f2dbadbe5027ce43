"""`convirza-import demo` as a user runs it: a subprocess, twice, the second uploading nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def demo(ledger: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "importer", "demo", "--ledger", str(ledger)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)


def test_demo_twice(tmp_path: Path) -> None:
    ledger = tmp_path / "demo.ledger.sqlite"

    first = demo(ledger)
    assert first.returncode == 0, first.stderr
    assert "8 rows" in first.stdout and "8 succeeded" in first.stdout
    assert "received 8 uploads" in first.stdout

    second = demo(ledger)
    assert second.returncode == 0, second.stderr
    assert "Nothing to upload: all 8 rows were already done" in second.stdout
    assert "received 0 uploads" in second.stdout
    assert "Traceback" not in first.stderr + second.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.ledger.sqlite"]  # no lock left
