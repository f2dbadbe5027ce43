"""Files the user points us at that are broken as a whole: the token file, the ``--columns``
file, the manifest itself and its ``--encoding``. Each ends in one line on stderr and exit 2,
never a traceback, a hang or a process that grows without bound (issue 11, item 12).

Pipes and devices are tried in a child process with a timeout and an address-space limit, so
that a regression hangs or balloons the child, not the test run."""

from __future__ import annotations

import codecs
import os
import subprocess
import sys
from pathlib import Path

import pytest

from importer.cli.commands import main
from importer.errors import ManifestError, UsageError
from importer.manifest.opening import open_manifest
from importer.settings.resolve import Settings

ROOT = Path(__file__).resolve().parent.parent
HEADER = "recording_file,call_date,group_id,caller_id\n"
ROW = "a.wav,2025-01-01T00:00:00Z,12,6175550142\n"
SECRET = "s3cr3t-7f1e9a"
#: The child's program: cap its address space, then run the command line.
CHILD = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20)); "
         "sys.path.insert(0, sys.argv[1]); from importer.cli.commands import main; "
         "sys.exit(main(sys.argv[2:]))")


def one_line_error(err: str) -> str:
    """The single error line of ``err``, after checking that it is one."""
    assert err.count("\n") == 1 and err.startswith("convirza-import: error: "), err
    assert "Traceback" not in err
    return err.strip()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run the command line in this process; the one error line it printed (exit 2)."""
    assert main(list(args)) == 2
    return one_line_error(capsys.readouterr().err)


def child(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run the command line in a child process that may neither hang nor grow past 1.5 GiB;
    the one error line it printed (exit 2)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONVIRZA_")}
    environ.update({"CONVIRZA_TIMEZONE": "UTC", **(env or {})})
    result = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), *args], cwd=tmp_path,
                            env=environ, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2, result.stderr
    return one_line_error(result.stderr)


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONVIRZA_TOKEN", "CONVIRZA_TOKEN_FILE", "CONVIRZA_USERNAME",
                 "CONVIRZA_PASSWORD", "CONVIRZA_ENCODING", "CONVIRZA_COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONVIRZA_TIMEZONE", "UTC")


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "calls.csv"
    path.write_text(HEADER + ROW)
    return path


# --- the token file -----------------------------------------------------------------------

@pytest.mark.parametrize(("content", "expected"), [
    (f"{SECRET}\nsecond-line-{SECRET}\n".encode(), "one line"),
    (f"{SECRET}\r\n\r\n".encode(), "one line"),
    (f"{SECRET[:4]}\r{SECRET[4:]}".encode(), "one line"),
    (f"{SECRET}\x00\n".encode(), "control character"),
    (b"\xff\xfe" + SECRET.encode("utf-16-le"), "not UTF-8"),
    (SECRET.encode() + b"\xe9t\xe9\n", "not UTF-8"),
    (SECRET.encode() * 10_000, "64 KiB"),
])
def test_a_token_file_that_is_not_one_line_of_text(
        capsys: pytest.CaptureFixture[str], manifest: Path, tmp_path: Path, content: bytes,
        expected: str) -> None:
    token = tmp_path / "token"
    token.write_bytes(content)
    line = cli(capsys, "validate", str(manifest), "--token-file", str(token))
    assert str(token) in line and expected in line
    assert SECRET not in line and SECRET[:4] not in line and "second-line" not in line


def test_one_final_newline_and_surrounding_spaces_are_not_part_of_the_token(
        tmp_path: Path) -> None:
    for content in (f"{SECRET}\n", f"{SECRET}\r\n", f"  {SECRET}\t\n", SECRET):
        token = tmp_path / "token"
        token.write_text(content, newline="")
        secret = Settings.load({"token_file": str(token)}, environ={}).token
        assert secret is not None and secret.get_secret_value() == SECRET


@pytest.mark.parametrize("command", [
    ["validate", "calls.csv"], ["run", "calls.csv"], ["retry", "calls.ledger.sqlite"],
    ["lookup", "groups"]])
def test_a_token_file_that_is_a_pipe_is_refused_by_every_command(
        tmp_path: Path, manifest: Path, command: list[str]) -> None:
    os.mkfifo(tmp_path / "token")  # open() on it would wait for a writer for ever
    line = child(tmp_path, *command, "--token-file", "token")
    assert "token" in line and "named pipe" in line


@pytest.mark.parametrize(("make", "expected"), [
    (lambda p: p.mkdir(), "a folder"),
    (lambda p: p.symlink_to("/dev/zero"), "character device"),
    (lambda p: os.mkfifo(p), "named pipe"),
])
def test_a_token_file_that_is_not_a_regular_file(
        tmp_path: Path, manifest: Path, make: object, expected: str) -> None:
    token = tmp_path / "token"
    make(token)  # type: ignore[operator]
    line = child(tmp_path, "validate", "calls.csv", env={"CONVIRZA_TOKEN_FILE": str(token)})
    assert str(token) in line and expected in line and "not a regular file" in line


# --- the --columns file -------------------------------------------------------------------

@pytest.mark.parametrize(("make", "expected"), [
    (lambda p: os.mkfifo(p), "named pipe"),
    (lambda p: p.symlink_to("/dev/zero"), "character device"),
    (lambda p: p.mkdir(), "a folder"),
    (lambda p: p.write_bytes(b'[columns]\nFrom = "caller_id"\n' + b"#" * (2 << 20)), "1 MiB"),
    (lambda p: p.write_bytes(b'[columns]\n"Appel n\xb0" = "caller_id"\n'), "not UTF-8"),
])
def test_a_columns_file_that_cannot_be_read(tmp_path: Path, manifest: Path, make: object,
                                            expected: str) -> None:
    columns = tmp_path / "mapping.toml"
    make(columns)  # type: ignore[operator]
    line = child(tmp_path, "validate", "calls.csv", "--columns", "mapping.toml")
    assert "mapping.toml" in line and expected in line


# --- the manifest itself ------------------------------------------------------------------

@pytest.mark.parametrize(("name", "make", "expected"), [
    ("calls.csv", lambda p: os.mkfifo(p), "is a named pipe (FIFO), not a regular file"),
    ("calls.csv", lambda p: p.mkdir(), "is a folder, not a regular file"),
    ("calls.xlsx", lambda p: p.mkdir(), "is a folder, not a regular file"),
    ("calls.csv", lambda p: p.symlink_to("/dev/zero"),
     "is a character device, not a regular file"),
    ("zero", lambda p: p.symlink_to("/dev/zero"), "is a character device, not a regular file"),
])
def test_a_manifest_that_is_not_a_regular_file(tmp_path: Path, name: str, make: object,
                                               expected: str) -> None:
    make(tmp_path / name)  # type: ignore[operator]
    for command in ("validate", "run"):
        # run needs credentials before it touches the ledger (issue 18): a token it never uses
        line = child(tmp_path, command, name,
                     env={"CONVIRZA_TOKEN": "tok-never-sent"} if command == "run" else None)
        assert f"error: {name}: {expected}" in line


def test_dev_zero_as_the_manifest(tmp_path: Path) -> None:
    line = child(tmp_path, "validate", "/dev/zero")
    assert "/dev/zero: is a character device, not a regular file" in line


# --- --encoding -----------------------------------------------------------------------------

NOT_TEXT = ["rot13", "zlib", "zip", "base64", "hex", "bz2", "uu", "quopri", "punycode", "idna",
            "undefined", "unicode_escape"]


@pytest.mark.parametrize("name", NOT_TEXT)
def test_a_codec_that_is_not_a_file_encoding_is_refused_with_the_settings(
        capsys: pytest.CaptureFixture[str], manifest: Path, name: str) -> None:
    with pytest.raises(UsageError, match=r"not a text encoding for a file.*cp1252"):
        Settings.load({"encoding": name}, environ={})
    line = cli(capsys, "validate", str(manifest), "--encoding", name)
    assert repr(name) in line and "utf-8" in line
    with pytest.raises(ManifestError, match="not a text encoding for a file"):
        open_manifest(manifest, encoding=name)


def test_real_encodings_are_still_accepted() -> None:
    for name in ("utf-8", "UTF8", "cp1252", "latin-1", "utf-16", "utf-16-le", "cp1250",
                 "mac_roman", "shift_jis"):
        assert Settings.load({"encoding": name}, environ={}).encoding == name


def test_utf16_named_for_a_file_without_bom(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    little = tmp_path / "le.csv"
    little.write_bytes((HEADER + ROW).encode("utf-16-le"))
    line = cli(capsys, "validate", str(little), "--encoding", "utf-16")
    assert str(little) in line and "cannot be read as utf-16: byte offset 0 (line 1)" in line
    assert "no byte-order mark" in line and "--encoding utf-16-le" in line
    plain = tmp_path / "plain.csv"
    plain.write_text(HEADER + ROW)
    monkeypatch.setenv("CONVIRZA_TOKEN", "tok-never-sent")  # run checks credentials first
    line = cli(capsys, "run", str(plain), "--encoding", "utf-16")
    assert str(plain) in line and "it is valid UTF-8" in line


def test_a_decode_error_names_the_line_and_byte_and_suggests_an_encoding(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes((HEADER + ROW + "b.wav,2025-01-01T00:00:00Z,12,6175550142\n"
                      "c.wav,2025-01-01T00:00:00Z,12,6175550142,Zo\u00eb\n").encode())
    offset = path.read_bytes().index("\u00eb".encode())
    line = cli(capsys, "validate", str(path), "--encoding", "ascii")
    assert f"{path}: cannot be read as ascii: byte offset {offset} (line 4)" in line
    assert "it is valid UTF-8" in line


def test_a_decode_error_deep_in_the_file_names_its_line(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    rows = "".join(f"f{n}.wav,2025-01-01T00:00:00Z,12,6175550142\n" for n in range(5000))
    bad = "x.wav,2025-01-01T00:00:00Z,12,6175550142\n".encode("cp1252") + b"\x81\n"
    path.write_bytes(HEADER.encode() + rows.encode() + bad)  # 0x81: no cp1252 character
    offset = path.read_bytes().index(b"\x81")
    assert main(["validate", str(path), "--encoding", "cp1252"]) == 2
    # The rows before it were read, and their own problems logged; then the one error line.
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith("convirza-import: error: ")
    assert f"{path}: cannot be read as cp1252: byte offset {offset} (line 5003)" in line
    assert "--encoding" in line


def test_codec_lookup_says_which_are_text() -> None:
    """The check leans on ``_is_text_encoding``; keep an eye on it across Python versions."""
    assert not codecs.lookup("rot13")._is_text_encoding  # type: ignore[attr-defined]
    assert codecs.lookup("cp1252")._is_text_encoding  # type: ignore[attr-defined]
