"""Where a manifest's recording paths point on this machine, when the manifest was written on
another: relative paths under ``--recordings-root`` instead of beside the manifest, a Windows
path's backslashes read as separators, and absolute paths moved by a prefix map
(``--path-map 'C:\\exports=/mnt/exports'``).

How a Windows path is told from a POSIX one, path by path (a manifest may mix both): on a
POSIX system a backslash is a legal character of a file name, but no recording exporter writes
one, so a path is read as Windows' when it starts with a drive (``C:\\``, ``C:/``) or a UNC
share (``\\\\server\\share``), or when it holds a backslash and no forward slash at all
(``2024-03\\REC-100041.wav``). A path with both kinds of slash is left as written. Windows
paths compare without regard to case (the drive letter, the folders), as Windows opens them.

Nothing here touches the disk: what the system makes of the result is ``identity``'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

#: ``C:\``, ``C:/`` or ``C:`` alone (a drive's current folder, read as its root).
_DRIVE = re.compile(r"^[A-Za-z]:(?:[\\/]|$)")
_UNC = re.compile(r"^(?:\\\\|//)[^\\/]+[\\/][^\\/]+")


def is_windows_path(text: str) -> bool:
    """Whether ``text`` is read as a path written on Windows (see the module docstring)."""
    if _DRIVE.match(text) or text.startswith("\\\\"):
        return True
    return "\\" in text and "/" not in text


def _parts(text: str) -> list[str]:
    """A path's components, either slash a separator, empty ones (``a//b``) and ``.`` gone."""
    return [p for p in re.split(r"[\\/]", text) if p not in ("", ".")]


def _is_absolute_windows(text: str) -> bool:
    return bool(_DRIVE.match(text) or _UNC.match(text) or text.startswith("\\\\"))


@dataclass(frozen=True)
class PathRules:
    """How recording paths are read on this machine: ``root`` (relative paths start there;
    None: beside the manifest) and ``prefixes`` (an absolute prefix as the manifest writes it,
    and the folder it is here), longest first, so that the most particular mapping wins."""

    root: Path | None = None
    prefixes: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, root: Path | None, prefixes: Mapping[str, str]) -> PathRules:
        """The rules of ``--recordings-root`` and ``--path-map`` (FROM=TO each); a mapping
        whose FROM is not absolute is refused (``UsageError``): it could match anywhere."""
        for source in prefixes:
            if not (source.startswith("/") or _is_absolute_windows(source)):
                raise UsageError(f"--path-map {source}=...: the prefix to replace must be an "
                                 "absolute path (C:\\exports, \\\\server\\share, /data)")
        ordered = sorted(prefixes.items(), key=lambda kv: -len(_parts(kv[0])))
        return cls(root, tuple(ordered))

    def local(self, text: str, base_dir: Path) -> str:
        """``text`` as a path on this machine, not yet resolved (``identity`` does that):
        mapped by the first prefix that matches, backslashes made separators when it is a
        Windows path, relative paths put under ``root`` (else ``base_dir``). A Windows
        absolute path no prefix maps is refused with a ``ValueError`` naming the option."""
        windows = os.sep == "/" and is_windows_path(text)
        for source, target in self.prefixes:
            rest = _after_prefix(text, source)
            if rest is not None:
                return os.path.join(target, *rest)
        if windows:
            if _is_absolute_windows(text):
                raise ValueError(
                    "a Windows path, which has no meaning on this machine: map its folder with "
                    f"--path-map '{_folder(text)}=/local/folder' (or give --recordings-root "
                    "and relative paths)")
            text = os.path.join(*_parts(text)) if _parts(text) else text
        if self.root is not None and not os.path.isabs(os.path.expanduser(text)):
            return os.path.join(self.root, text)
        return os.path.join(base_dir, os.path.expanduser(text))


def _after_prefix(text: str, prefix: str) -> list[str] | None:
    """The components of ``text`` after ``prefix``, or None when it does not start with it
    (component by component; without regard to case for a Windows prefix)."""
    fold = is_windows_path(prefix)
    have, want = _parts(text), _parts(prefix)
    if prefix.startswith("/") != text.startswith("/") and not fold:
        return None
    if len(have) < len(want):
        return None
    head = have[:len(want)]
    same = [a.casefold() for a in head] == [b.casefold() for b in want] if fold else head == want
    return have[len(want):] if same else None


def _folder(text: str) -> str:
    """The folder of a Windows path, as the user would write it in ``--path-map``."""
    head, _, _ = text.replace("/", "\\").rpartition("\\")
    return head or text


NO_RULES = PathRules()
