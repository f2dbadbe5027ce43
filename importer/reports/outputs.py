"""Files written for the user (``--errors-out``, ``--summary-json``, ``report``/``lookup
--output``): never over one of the command's inputs, and never half-written.

An output opened for writing is truncated at once, so an output that names an input
(``validate m.csv --errors-out m.csv``, a summary over the ledger) used to destroy the input
before a byte of it was read. So ``refuse_overwrites`` compares every output with every input
(and with the other outputs) before the command opens anything, as files rather than as
spellings: resolved paths, and device and inode when both exist, which catch ``..``,
relative against absolute, symlinks and hard links alike.

Nor does an output replace a database or a workbook, whoever's it is: ``validate m.csv
--errors-out other.ledger.sqlite`` would otherwise turn another run's ledger into a CSV. A file
that already exists is looked at (its first bytes): an SQLite database or an Excel workbook is
refused, one line, before anything starts.

``atomic_text`` writes into a temporary file in the destination's folder and renames it over
the destination (``os.replace``, atomic within one file system) only once it is complete and
on disk. A full disk, a crash or an abort in between leaves the previous file whole and no
half-written file under the real name; on an error the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TextIO

from ..errors import UsageError

#: Files SQLite and the ledger keep beside a ledger ``L``, named ``L`` + suffix: writing over
#: any of them corrupts the ledger or defeats its single-writer lock.
LEDGER_COMPANIONS: tuple[tuple[str, str], ...] = (
    ("-wal", "write-ahead log"),
    ("-shm", "shared-memory index"),
    ("-journal", "rollback journal"),
    (".lock", "lock file"),
)


def ledger_inputs(ledger: Path) -> list[tuple[str, Path]]:
    """The ledger and its companion files, each with the words that name it in a refusal.

    SQLite names the companions after the path it was given, or (newer versions) after the
    file a symlink points to, so both spellings are listed."""
    found = [("the ledger", ledger)]
    names = dict.fromkeys([ledger, Path(os.path.realpath(ledger))])
    for suffix, what in LEDGER_COMPANIONS:
        found.extend((f"the {what} of the ledger {ledger}", base.with_name(base.name + suffix))
                     for base in names)
    return found


def refuse_overwrites(outputs: Mapping[str, Path | None],
                      inputs: Iterable[tuple[str, Path | None]]) -> None:
    """Raise ``UsageError`` (one line: option, path, which input) when an output is an input
    of the command or another output, or cannot be a file at all; ``outputs`` maps each
    option to its path (None: not asked for), ``inputs`` pairs a description with a path."""
    given = [(option, path) for option, path in outputs.items() if path is not None]
    known = [(what, path) for what, path in inputs if path is not None]
    for i, (option, path) in enumerate(given):
        for what, source in known:
            if same_file(path, source):
                shown = "" if str(source) == str(path) else f" ({source})"
                raise UsageError(f"{option} {path}: that file is {what}{shown}; an output never "
                                 "overwrites an input, choose another file")
        for other, other_path in given[:i]:
            if same_file(path, other_path):
                raise UsageError(f"{option} {path}: that file is also {other} "
                                 f"({other_path}); give each output a file of its own")
        target = Path(os.path.realpath(path))
        try:
            folder = target.is_dir()
        except OSError as exc:  # a name too long for the file system, say
            raise UsageError(f"{option} {path}: cannot be a file here ({exc.strerror})") \
                from None
        if folder:
            raise UsageError(f"{option} {path}: that is a folder; name a file")
        kind = precious(target)
        if kind is not None:
            raise UsageError(f"{option} {path}: that file is {kind}; an output never replaces "
                             "a database or a workbook, choose another file")
        if not target.parent.is_dir():
            raise UsageError(f"{option} {path}: the folder {target.parent} does not exist")


#: The first bytes of files no output may replace, and what each is, in a refusal's words.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"SQLite format 3\0", "an SQLite database (a ledger?)"),
    (bytes.fromhex("d0cf11e0a1b11ae1"), "an Excel workbook (or another Office file)"),
)


def precious(path: Path) -> str | None:
    """What ``path`` is, in words, when it is a database or a workbook (an xlsx is a zip
    holding ``xl/workbook.xml``); None for anything else, or no such file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return None
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head.startswith(b"PK\x03\x04"):
        import zipfile

        try:
            with zipfile.ZipFile(path) as archive:
                if any(name.startswith("xl/") for name in archive.namelist()):
                    return "an Excel workbook"
        except (OSError, zipfile.BadZipFile):
            return None
    return None


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same resolved path (which need not exist yet,
    such as a ledger a run is about to create), or the same device and inode (hard links)."""
    if os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b)):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


@contextlib.contextmanager
def atomic_text(path: Path, *, encoding: str = "utf-8",
                newline: str | None = "") -> Iterator[TextIO]:
    """A text file to write ``path`` through: it replaces ``path`` when the ``with`` block
    ends normally, and vanishes when it raises. An ``OSError`` (a full disk, no permission)
    becomes a one-line ``UsageError`` naming ``path``.

    A symlink is written through, as ``open(path, "w")`` would: its target is replaced, and
    keeps its permissions."""
    target = Path(os.path.realpath(path))
    try:
        fd, temporary = _create_beside(target)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    handle: TextIO | None = None
    try:
        handle = open(fd, "w", encoding=encoding, newline=newline)  # noqa: SIM115
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        _keep_mode(target, temporary)
        os.replace(temporary, target)
    except BaseException as exc:
        # Closing flushes what is buffered, which may fail again (a full disk): the original
        # exception is the one to report.
        with contextlib.suppress(OSError):
            if handle is not None:
                handle.close()
            else:
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise _cannot_write(path, exc) from None
        raise
    _sync_folder(target.parent)


def _create_beside(target: Path) -> tuple[int, str]:
    """A new, empty temporary file in ``target``'s folder (so that the rename stays within one
    file system), hidden, named after ``target``. Created with mode 0o666 so that the umask
    decides its permissions, as for any file the user's programs write."""
    while True:
        temporary = str(target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp"))
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue


def _keep_mode(target: Path, temporary: str) -> None:
    """A file replaced keeps its permissions (a report shared with a group stays shared)."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        return
    os.chmod(temporary, mode)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable; best effort, as some file systems refuse it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _cannot_write(path: Path, exc: OSError) -> UsageError:
    return UsageError(f"cannot write {path}: {exc.strerror or exc}")
