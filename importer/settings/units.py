"""Values people type, read the one way wherever they come from: sizes (``50MB``), durations
(``90m``), waits (``forever``), ``--max-errors`` (``100`` or ``5%``), ``--shard`` (``K/N``) and
``NAME=VALUE`` lists.

A flag, a ``CONVIRZA_*`` variable, a job file's key and a keyword of the Python API all reach
``Settings`` through these functions, so ``--max-file-size 50MB`` and ``max_file_size =
"50MB"`` cannot mean two things. They raise ``ValueError`` (which pydantic reports under the
setting's name); no I/O here.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*"
                          r"(?:(\d+(?:\.\d+)?)s?)?\s*$")
#: What ``--wait-for-ledger`` given without a time means, and its spellings elsewhere.
FOREVER = ("forever", "true", "yes")


def parse_size(text: str | int) -> int:
    """Bytes from ``"50MB"``, ``"1GiB"``, ``"500KiB"`` or a plain number (MB = 10^6, MiB = 2^20)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _SIZE_RE.match(text) if isinstance(text, str) else None
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (expected bytes, or a number with KB, MB, GB, "
                         "KiB, MiB or GiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(text: str | float) -> float:
    """Seconds from ``"90m"``, ``"2h"``, ``"1h30m"``, ``"45s"`` or a plain number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    match = _DURATION_RE.match(text) if isinstance(text, str) else None
    if not isinstance(text, str) or not text.strip() or not match or not any(match.groups()):
        raise ValueError(f"not a duration: {text!r} (expected e.g. 45s, 90m, 2h, 1h30m)")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def duration_text(seconds: float) -> str:
    """A duration as ``parse_duration`` reads it back: ``1h``, ``1h30m``, ``10m``, ``90s``."""
    whole = round(seconds)
    if whole != seconds or whole < 60 or whole % 60:
        return f"{seconds:g}s"
    hours, minutes = divmod(whole // 60, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")


def parse_wait(value: str | float | bool | None) -> float | None:
    """``--wait-for-ledger``: ``forever`` (also ``true``, a job file's ``true``) is as long as it
    takes (infinity), ``false`` not at all (None), anything else a duration."""
    if value is None or value is False:
        return None
    if value is True:
        return math.inf
    if isinstance(value, str):
        text = value.strip().lower()
        if text in FOREVER:
            return math.inf
        if text in ("false", "no"):
            return None
    return parse_duration(value)


class ErrorBudget(NamedTuple):
    """``--max-errors``: stop once ``limit`` rows failed or were invalid, or ``limit`` percent
    of the rows read so far when ``percent``. Shown as it is typed (``100``, ``5%``)."""

    limit: float
    percent: bool

    def __str__(self) -> str:
        return f"{self.limit:g}%" if self.percent else f"{self.limit:g}"


def parse_error_budget(value: object) -> object:
    """``"100"``, ``"5%"``, ``100`` as an ``ErrorBudget``; anything else is left for pydantic
    to refuse (or to take, when it already is one)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # A job file (TOML) or the Python API may give inf, nan or a negative number, which
        # would never stop a run or stop it at once.
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"expected a number of rows (0 or more), or a percentage such "
                             f"as 5%, got {value!r}")
        return ErrorBudget(float(value), False)
    if isinstance(value, str):
        text = value.strip()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(%?)", text)
        if match is None or (match.group(2) and float(match.group(1)) > 100):
            raise ValueError(f"expected a number of rows, or a percentage such as 5% (at "
                             f"most 100%), got {value!r}")
        return ErrorBudget(float(match.group(1)), bool(match.group(2)))
    return value


class Shard(NamedTuple):
    """``--shard K/N``: the rows whose key hashes to shard ``number`` of ``total``."""

    number: int
    total: int

    def __str__(self) -> str:
        return f"{self.number}/{self.total}"


def parse_shard(value: object) -> object:
    """``"1/4"`` as ``Shard(1, 4)``, refused unless 0 <= K < N."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
        if match is None:
            raise ValueError(f"expected K/N such as 0/4, got {value!r}")
        value = Shard(int(match.group(1)), int(match.group(2)))
    if isinstance(value, tuple) and len(value) == 2:
        k, n = value
        if not (isinstance(k, int) and isinstance(n, int) and 0 <= k < n):
            raise ValueError("shard K/N needs 0 <= K < N, e.g. 0/4 .. 3/4")
        return Shard(k, n)
    return value


def parse_assignments(value: object) -> dict[str, str]:
    """``NAME=VALUE`` pairs as a dict, in each form they come in: repeated ``--set``/``--map``
    flags (a list), a variable (``"A=b;C=d"``), a job file's table or a keyword (a dict, whose
    ``true``/``false`` read as the words the API takes)."""
    if isinstance(value, dict):
        return {str(k): _text(v) for k, v in value.items()}
    pairs = value.split(";") if isinstance(value, str) else value
    if not isinstance(pairs, (list, tuple)):
        raise ValueError(f"expected NAME=VALUE pairs, got {value!r}")
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, text = str(pair).partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected NAME=VALUE, got {pair!r}")
        out[name.strip()] = text.strip()
    return out


def parse_value_maps(value: object) -> dict[str, dict[str, str]]:
    """Value maps in each form they come in: ``FIELD:FROM=VALUE`` flags (a list), a variable
    (``"disposition:Voicemail=NO ANSWER;is_outbound:Out=true"``), or tables by field (a job
    file's ``[values.disposition]``, a keyword)."""
    if isinstance(value, dict):
        maps: dict[str, dict[str, str]] = {}
        for name, entries in value.items():
            if not isinstance(entries, dict):
                raise ValueError(f"values for {name} must be a table of FROM = VALUE, got "
                                 f"{entries!r}")
            maps[str(name)] = {str(k): _text(v) for k, v in entries.items()}
        return maps
    pairs = value.split(";") if isinstance(value, str) else value
    if not isinstance(pairs, (list, tuple)):
        raise ValueError(f"expected FIELD:FROM=VALUE, got {value!r}")
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        name, colon, rest = str(pair).partition(":")
        word, equals, text = rest.partition("=")
        if not colon or not equals or not name.strip() or not word.strip():
            raise ValueError(f"expected FIELD:FROM=VALUE, got {pair!r}")
        out.setdefault(name.strip(), {})[word.strip()] = text.strip()
    return out


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
