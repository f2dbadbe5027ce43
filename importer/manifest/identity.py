"""How a row is known across runs and manifests: its key (the ``external_id``, else the
recording file itself, as the system resolves its path, else the URL), the ``external_id``
derived for a row that has none, the call's own facts (what tells apart calls whose recordings
are byte-identical), and which ``--shard`` a row belongs to.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from ..sources.locations import ObjectURL, is_object_url, object_url
from .normalizers import undo_excel_number
from .paths import NO_RULES, PathRules

AUTO_EXTERNAL_ID_PREFIX = "cvzimp-"
#: A run's rows share a few folders: their real paths are kept for the run.
_PATHS_KEPT = 4096


def call_facts(call_date: str, caller_id: str, group_id: str) -> str:
    """The call's own facts as one text, ``<epoch seconds>|<caller_id>|<group_id>``: what
    tells two calls with byte-identical recordings apart when no external_id does (short
    recordings of silence, tones and greetings are identical across many calls). The date is
    the instant to the second, whatever zone it was written in. The ledger's migration
    ``0005_call_facts`` computes the same text in SQL for rows kept before it."""
    moment = datetime.fromisoformat(call_date.replace("z", "Z"))
    return f"{int(moment.timestamp())}|{caller_id}|{group_id}"


def recording_path(text: str, base_dir: Path,
                   rules: PathRules = NO_RULES) -> Path | ObjectURL:
    """The recording's absolute path: relative to the manifest's folder (or
    ``--recordings-root``) unless absolute, read by ``rules`` (``paths``); or the object an
    ``s3://bucket/key`` names (``sources``), its form checked."""
    if is_object_url(text):
        return object_url(text)
    return Path(resolve_path(text, base_dir, rules))


def resolve_path(text: str, base_dir: Path, rules: PathRules = NO_RULES) -> str:
    """The absolute path of the file the operating system opens for ``text`` (relative to
    ``base_dir`` unless absolute). ``lnk/../x.wav`` is ``x.wav`` beside the folder ``lnk``
    points to, not beside ``lnk``: as text (``os.path.abspath``) it would name another
    recording. So the part up to the last ``..`` is resolved as the system resolves it
    (``realpath``); the rest, and any path without ``..``, keeps its spelling, symlinks
    included, so that the ledger's keys of files reached through a linked folder stay as
    they were. ``rules`` first read a path written on another machine (``paths``)."""
    joined = rules.local(text, base_dir)
    if ".." not in joined:
        return os.path.abspath(joined)
    parts = joined.split(os.sep)
    last = max(i for i, part in enumerate(parts) if part == "..") if ".." in parts else -1
    if last < 0:
        return os.path.abspath(joined)
    return os.path.abspath(os.path.join(_real(os.sep.join(parts[:last + 1]) or os.sep),
                                        *parts[last + 1:]))


@lru_cache(maxsize=_PATHS_KEPT)
def _real(prefix: str) -> str:
    """``os.path.realpath``, kept for a run (``forget_paths``): its rows share a few folders."""
    return os.path.realpath(prefix)


def forget_paths() -> None:
    """A new run resolves its paths anew (a link may point elsewhere since the last one)."""
    _real.cache_clear()


def fresh_paths(root: Path | None, prefixes: Mapping[str, str]) -> PathRules:
    """A new run's rules for paths from another machine (``paths``), its paths resolved
    anew (``forget_paths``)."""
    forget_paths()
    return PathRules.of(root, prefixes)


class Identity(NamedTuple):
    """How the ledger knows a row: ``key`` (stable across runs and across manifests: the
    ``external_id``, else the file by its absolute path, else the URL), ``source`` (the file or
    URL as the user wrote it, for reports), ``recording`` (``file:`` and the absolute path, or
    ``url:`` and the URL, so that the same recording listed twice is found whatever the
    spelling), and the ``external_id`` sent with the upload."""

    key: str
    source: str
    external_id: str | None
    recording: str = ""

    @property
    def path(self) -> str | None:
        """The recording's absolute path, for a file row."""
        return self.recording[5:] if self.recording.startswith("file:") else None


def identify(values: Mapping[str, str], base_dir: Path, auto_external_id: bool,
             rules: PathRules = NO_RULES) -> Identity:
    """The row's identity from its raw cells, so that even an invalid row keeps its key after
    the user fixes it: the ``external_id`` if given, else the recording file's absolute path
    (the file itself, not a path relative to whichever manifest names it: two folders' ``a.wav``
    are two recordings), else its URL. Without an ``external_id``, one is derived from the key
    (``cvzimp-`` and 24 hex digits of its sha256) so the call can be found again. ``rules``
    place a path written on another machine (``paths``)."""
    source_file = values.get("recording_file")
    source_file = source_file.strip() if source_file else None
    source_url = values.get("recording_url")
    source_url = source_url.strip() if source_url else None
    source = source_file or source_url or ""
    recording = ""
    if source_file:
        try:
            recording = source_file if is_object_url(source_file) else \
                "file:" + resolve_path(source_file, base_dir, rules)
        except ValueError:  # a path no rule places here: known by its text until mapped
            recording = "file:" + source_file
    elif source_url:
        recording = "url:" + source_url
    given = values.get("external_id")
    given = given.strip() if given else None
    if given:
        external = undo_excel_number(given)
        return Identity(f"ext:{external}", source, external, recording)
    if not recording:
        return Identity(key="", source="", external_id=None)
    derived = AUTO_EXTERNAL_ID_PREFIX + hashlib.sha256(recording.encode()).hexdigest()[:24]
    return Identity(key=recording, source=source,
                    external_id=derived if auto_external_id else None, recording=recording)


def shard_key(identity: Identity, base_dir: Path) -> str:
    """What ``--shard`` hashes: the key, but for a row known by its file, the path as the
    manifest writes it (relative to its folder), as when keys were relative, so that no row
    moves to another shard's ledger between versions."""
    if identity.key.startswith("file:") and identity.source:
        return "file:" + _relative_posix(Path(identity.source).expanduser(), base_dir)
    return identity.key


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    """Whether ``key`` belongs to shard K of N: a stable hash, the same on every machine
    and in every release (a row must not change shards between two nights)."""
    k, n = shard
    return n == 1 or int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % n == k


def _relative_posix(path: Path, base_dir: Path) -> str:
    absolute = os.path.abspath(base_dir / path)
    try:
        relative = os.path.relpath(absolute, os.path.abspath(base_dir))
    except ValueError:  # another drive (Windows): no relative path exists
        relative = absolute
    return str(PurePosixPath(Path(relative)))
