"""The files a user names: what a path is when it is not a regular file (``file_kind``) and
which encodings a file can be written in (``file_encoding``), for every file a user names,
the manifest too; and the small files that configure a command (the token file, the
``--columns`` mapping, the job file), read warily and refused with one line each.

Why so wary: a FIFO would block ``open()`` for ever, ``/dev/zero`` or ``/dev/urandom`` would be
read until memory runs out, and a folder or socket says nothing useful. And a token file's
content is a secret: no message ever quotes it.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

from ..errors import UsageError

#: Codecs that Python calls text encodings but no file is written in: domain-name and
#: Python-literal codecs, which read a CSV as garbage or fail half-way.
_NOT_FILE_ENCODINGS = frozenset({"idna", "punycode", "undefined", "unicode-escape",
                                 "raw-unicode-escape"})
ENCODING_EXAMPLES = "utf-8, cp1252, latin-1, utf-16, utf-16-le"


def file_encoding(name: str) -> str:
    """The canonical name of ``name`` if it is a text encoding a file can be written in;
    ``LookupError``, saying why, if not.

    Python's codec registry also holds bytes-to-bytes and text-to-text codecs (zlib, base64,
    rot13, ...), which ``open()`` refuses with a traceback, and text codecs that no file is
    written in (idna, punycode, ...)."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise LookupError(f"unknown encoding {name!r} (try {ENCODING_EXAMPLES})") from None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_FILE_ENCODINGS:
        raise LookupError(f"{name!r} is not a text encoding for a file (try "
                          f"{ENCODING_EXAMPLES})")
    return info.name


def file_kind(mode: int) -> str | None:
    """What a path is, for a message, when it is not a regular file (``"a folder"``); None
    for a regular file. Shared by every file the user names (manifest, token, columns)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


#: A token is one line of a few hundred bytes; a file past this is not a token file.
TOKEN_FILE_CAP = 64 << 10
#: A mapping of even a thousand columns is a few tens of KiB; so is a job file holding one.
COLUMNS_FILE_CAP = 1 << 20
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def read_small_file(path: Path, what: str, cap: int, cap_text: str) -> bytes:
    """The bytes of a small file the user named (``what``: "the token file"), refused with one
    line unless it is a regular file of at most ``cap`` bytes.

    The file is stat-ed first (no open of what is not a regular file), then opened non-blocking
    (in case it was swapped for a pipe in between) and checked again on the descriptor, and
    read only to one byte past the cap.
    """
    try:
        kind = file_kind(os.stat(path).st_mode)
        data = b""
        if kind is None:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_CLOEXEC", 0))
            try:
                kind = file_kind(os.fstat(fd).st_mode)
                while kind is None and len(data) <= cap:
                    block = os.read(fd, cap + 1 - len(data))
                    if not block:
                        break
                    data += block
            finally:
                os.close(fd)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if kind is not None:
        raise UsageError(f"{what} {path} is {kind}, not a regular file")
    if len(data) > cap:
        raise UsageError(f"{what} {path} is over {cap_text}; is it the right file?")
    return data


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A UTF-8 TOML file of at most 1 MiB (``what``: "the job file"), as a dict."""
    raw = read_small_file(path, what, COLUMNS_FILE_CAP, "1 MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path} is not UTF-8 text (byte offset {exc.start}); save it "
                         "as UTF-8, as TOML requires") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid TOML: {exc}") from None


def read_columns_file(path: Path) -> tuple[dict[str, str], dict[str, str],
                                          dict[str, dict[str, str]]]:
    """The column mapping, the defaults and the value maps in a ``--columns`` TOML file::

        [columns]            # manifest column = upload field ("" ignores the column)
        "Call Start" = "call_date"
        From = "caller_id"
        Notes = ""

        [defaults]           # upload field = value for rows that leave it empty
        group_id = 12

        [values.disposition] # a word in the column = the value the API takes
        Voicemail = "NO ANSWER"
    """
    data = read_toml(path, "the columns file")
    unknown = sorted(set(data) - {"columns", "defaults", "values"})
    if unknown:
        raise UsageError(f"the columns file {path} has unknown section(s) {', '.join(unknown)}; "
                         "expected [columns], [defaults] and [values.FIELD]")
    where = f"the columns file {path}"
    values = data.get("values", {})
    if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
        raise UsageError(f"{where}: values must be tables by field ([values.disposition])")
    return (table_entries(data.get("columns", {}), "columns", where),
            table_entries(data.get("defaults", {}), "defaults", where),
            {name: table_entries(entries, f"values.{name}", where)
             for name, entries in values.items()})


def table_entries(table: object, section: str, where: str) -> dict[str, str]:
    """A ``[columns]`` (column = field, text) or ``[defaults]`` (field = text, a number or
    true/false) table as text, refused with ``where`` ("the columns file m.toml") named."""
    if not isinstance(table, dict):
        raise UsageError(f"{where}: {section} must be a table ([{section}])")
    entries: dict[str, str] = {}
    for name, value in table.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        allowed = str if section == "columns" else str | int
        if not isinstance(value, allowed):
            raise UsageError(f"{where}: [{section}] {name} = {value!r}: expected a text value")
        entries[name] = str(value)
    return entries


def read_token_file(path: Path) -> str:
    """The one line of a token file, without one final newline and surrounding spaces.

    Nothing of the file's content ever goes into a message: it is a secret, and a file that is
    not what it should be may be a secret of another kind (a key, a password list).
    """
    raw = read_small_file(path, "the token file", TOKEN_FILE_CAP, "64 KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"the token file {path} is not UTF-8 text (saved as UTF-16 or with "
                         "another encoding?); a token is one line of plain text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if "\n" in text or "\r" in text:
        raise UsageError(f"the token file {path} holds more than one line; a token is one "
                         "line")
    token = text.strip(" \t")
    if _CONTROL.search(token):
        raise UsageError(f"the token file {path} holds a control character; a token is one "
                         "line of plain text")
    if not token:
        raise UsageError(f"the token file {path} is empty")
    return token
