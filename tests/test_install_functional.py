"""Install anywhere: the wheel, built from a clean copy of the sources and installed with its
declared dependencies into a fresh venv, gives a `convirza-import` that runs the demo and a
nightly job file from an empty folder, outside the repository.

The dependencies come from the package index (pip's cache makes that quick): that is what
`pipx install` does, and the only way to prove that the wheel declares everything it needs and
nothing more (pandas is not installed). The tool runs with no system time zone database
(`PYTHONTZPATH` names an empty folder), as in a slim container image: the dates of the job's
manifest, which have no zone, are read in its `timezone` from the tzdata the wheel requires.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What a source distribution of the project holds: the package and the demo's data.
SOURCES = ("pyproject.toml", "README.md", "importer", "manifests", "sample_data")
TOKEN = "install-test-token-5b6c"


def _pip(*args: str | Path, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check",
                           *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel and its dependencies; returns its bin folder."""
    base = tmp_path_factory.mktemp("install")
    source = base / "src"
    source.mkdir()
    for name in SOURCES:  # a clean copy: no stale build/ of an earlier build leaks in
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    _pip("wheel", source, "--no-deps", "--wheel-dir", base / "dist", cwd=base)
    [wheel] = (base / "dist").glob("convirza_import-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    _pip("--python", venv / "bin" / "python", "install", wheel, cwd=base)
    return venv / "bin"


def _user_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    """A user's shell with the venv on PATH: nothing of the repository, no CONVIRZA_*, and no
    system time zone database."""
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8", "PYTHONTZPATH": str(bin_dir.parent / "no-zoneinfo"), **extra}


def _tool(bin_dir: Path, folder: Path, *args: str,
          **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "convirza-import"), *args], cwd=folder,
                          env=_user_env(bin_dir, **env), capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def sandbox_url(installed: Path, tmp_path: Path) -> Iterator[str]:
    """The installed tool's own sandbox, in a process of its own."""
    server = subprocess.Popen([str(installed / "convirza-import"), "sandbox", "--port", "0",
                               "--token", TOKEN], cwd=tmp_path, env=_user_env(installed),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("Sandbox listening on "), line
        yield line.split()[-1]
    finally:
        server.terminate()
        server.wait(timeout=10)


def _uploads(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, direct
    with opener.open(url + "/_sandbox/stats", timeout=10) as answer:
        return int(json.load(answer)["uploads"])


@pytest.mark.timeout(300)
def test_the_installed_demo_runs_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()

    first = _tool(installed, folder, "demo")
    second = _tool(installed, folder, "demo")

    assert first.returncode == 0, first.stderr
    assert "8 succeeded" in first.stdout and "received 8 uploads" in first.stdout
    assert "importer/_demo/manifests/sample.csv" in first.stdout  # the wheel's, not ours
    assert str(ROOT) not in first.stdout + first.stderr
    assert "make demo" not in first.stdout
    assert "Run `convirza-import demo` again" in first.stdout
    assert second.returncode == 0 and "received 0 uploads" in second.stdout
    site = next((installed.parent / "lib").glob("python3*/site-packages"))
    assert (site / "importer").is_dir() and not (site / "pandas").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["demo.ledger.sqlite"]  # no lock


@pytest.mark.timeout(300)
def test_the_installed_tool_runs_a_job_file_from_an_empty_folder(
        installed: Path, sandbox_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "nightly"
    folder.mkdir()
    (folder / "audio").mkdir()
    for name in ("call-0001-pcm8k.wav", "call-0005-cbr.mp3"):
        shutil.copy(ROOT / "sample_data" / name, folder / "audio" / name)
    (folder / "calls.csv").write_text(
        "Call ID,Audio,Call Start,From\n"
        "N-1,audio/call-0001-pcm8k.wav,2025-03-04 09:15:22,(617) 555-0142\n"
        "N-2,audio/call-0005-cbr.mp3,2025-03-04 10:02:47,+1 781-555-0187\n")
    (folder / "nightly.toml").write_text(
        f'manifest = "calls.csv"\napi_url = "{sandbox_url}"\ntoken_env = "NIGHTLY_TOKEN"\n'
        'timezone = "America/New_York"\nrate = 20\n'
        '[columns]\n"Call ID" = "external_id"\nAudio = "recording_file"\n'
        '"Call Start" = "call_date"\nFrom = "caller_id"\n'
        '[defaults]\ngroup_id = 12\n')

    run = _tool(installed, folder, "run", "--job", "nightly.toml", NIGHTLY_TOKEN=TOKEN)
    again = _tool(installed, folder, "run", "--job", "nightly.toml", NIGHTLY_TOKEN=TOKEN)
    report = _tool(installed, folder, "report", "nightly.ledger.sqlite", "--format", "csv")

    assert run.returncode == 0, run.stderr
    assert "2 succeeded" in run.stdout
    assert again.returncode == 0 and "already done" in again.stdout
    assert _uploads(sandbox_url) == 2
    assert report.stdout.count(",succeeded,") == 2
    assert TOKEN not in run.stdout + run.stderr + report.stdout
