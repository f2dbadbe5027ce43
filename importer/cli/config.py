"""``convirza-import config``: the settings a command would run with and where each came
from (a flag, a variable, the job file, the default), secrets masked as ``aws configure list``
masks them: ``****************5b6c`` (the last four characters of a secret of 16 or more, so
that two tokens can be told apart; nothing of a shorter one).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ..run.jobs import Plan
from ..settings.resolve import DECLARED, named_sources
from . import logs
from .arguments import plan_of
from .output import output

MASK = "*" * 16
#: A secret shorter than this is shown as the mask alone.
SHOW_TAIL_FROM = 16


@dataclass(frozen=True)
class Entry:
    """One setting as ``config`` lists it: the name a job file gives it, its value (secrets
    masked), where it came from, and its flag and variable."""

    name: str
    value: Any
    source: str
    flag: str | None
    env: str | None


def mask(secret: str) -> str:
    return MASK + secret[-4:] if len(secret) >= SHOW_TAIL_FROM else MASK


def _shown(value: Any) -> Any:
    """A value as JSON holds it."""
    if isinstance(value, SecretStr):
        return mask(value.get_secret_value())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isinf(value):
        return "forever"
    if isinstance(value, tuple):  # Shard, ErrorBudget: as typed
        return str(value)
    return value


def entries(chosen: Plan) -> list[Entry]:
    """Every setting of ``chosen``, in the order ``Settings`` declares them, and the job's
    manifest first when it names one."""
    sources = named_sources(chosen.resolved.sources)
    found: list[Entry] = []
    if chosen.job is not None and chosen.job.manifest is not None:
        count = len(chosen.manifests)
        found.append(Entry("manifest", chosen.job.manifest,
                           f"job {chosen.job.path} ({count} file{'s' * (count != 1)})",
                           None, None))
    for d in DECLARED:
        name = d.name if d.opt.secret else d.job or d.name
        origin = " + ".join(str(s) for s in sources.get(d.name, ())) or "default"
        found.append(Entry(name, _shown(getattr(chosen.settings, d.name)), origin, d.flag,
                           d.env))
    return found


def config_json(found: list[Entry]) -> str:
    return json.dumps([asdict(e) for e in found], indent=2) + "\n"


def config_text(found: list[Entry]) -> str:
    """An aligned table: name, value, source."""
    def text(value: Any) -> str:
        if value is None:
            return "<not set>"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return f"{value:g}"
        if isinstance(value, dict):  # --map, --set; a value map by field: FIELD:WORD=VALUE
            return "; ".join(f"{k}:{w}={x}" if isinstance(v, dict) else f"{k}={v}"
                             for k, v in value.items()
                             for w, x in (v.items() if isinstance(v, dict) else [(k, v)])) \
                or "<none>"
        return str(value)

    rows = [("setting", "value", "source")] + [(e.name, text(e.value), e.source) for e in found]
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    return "".join(f"{a:<{width[0]}}  {b:<{width[1]}}  {c}\n" for a, b, c in rows)


def cmd_config(args: argparse.Namespace) -> int:
    chosen = plan_of(args)
    logs.remember_secrets(chosen.settings.secrets())
    found = entries(chosen)
    with output(None, for_people=True) as out:
        out.write(config_json(found) if args.format == "json" else config_text(found))
    return 0
