"""How each setting is given: an ``Opt`` beside each ``Settings`` field names its flag, its
``CONVIRZA_*`` variable, its job-file key, the commands that take it and the words of its
``--help``; the field itself holds its type, default, bounds and unit parsing. From these one
declaration per setting, the command line's flags (``add_flags``), the environment
(``settings.resolve``), the job file's keys (``jobfile``) and ``config``'s listing all come.

Adding a setting is adding one field to ``Settings``, annotated with an ``Opt``; nothing else
lists settings.

Names follow one rule so that a user learns one name: the flag is the field's name with
dashes (``--max-file-size``) unless ``Opt.flag`` says otherwise (``--timeout``); the variable
is the flag's name in capitals without a ``no-`` (``CONVIRZA_AUTO_EXTERNAL_ID`` for
``--no-auto-external-id``); the job key is the variable's name in lower case
(``timeout = 30``), and for a secret ``<name>_env``, the name of the variable that holds it.
"""

from __future__ import annotations

import argparse
import difflib
import math
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

ENV_PREFIX = "CONVIRZA_"

# The commands a setting can belong to (``config`` takes every flag, to show what wins).
READS = frozenset({"run", "validate"})  # read a manifest
FILES = READS | {"retry"}  # probe and upload (or check) files
UPLOADS = frozenset({"run", "retry"})  # write a ledger
API = FILES | {"lookup", "verify"}  # talk to the API

# Groups of --help, in the order they are shown.
MANIFEST = "manifest"
CONNECTION = "API"
BUDGETS = "budgets (a run they stop exits 4; run again to go on)"
OUTPUT = "output"
METRICS = "metrics (Prometheus)"
GROUPS = (MANIFEST, CONNECTION, BUDGETS, OUTPUT, METRICS)


@dataclass(frozen=True)
class Opt:
    """How a user gives one setting. ``flag``, ``env`` and ``job`` are derived from the
    field's name when left empty, and None when the setting has no such form."""

    help: str
    metavar: str | None = None
    commands: frozenset[str] = frozenset()
    group: str = CONNECTION
    flag: str | None = ""
    env: str | None = ""
    job: str | None = ""
    #: The default as ``--help`` shows it ("50MB"); None: the field's default as it is.
    shown: str | None = None
    #: Never on the command line nor in a job file (the job file names its variable instead).
    secret: bool = False
    #: The value a flag given without one stands for (``--wait-for-ledger`` alone: forever).
    bare: str | None = None
    #: A one-letter flag beside the long one, for the options typed most (``-c``, ``-r``).
    short: str | None = None


@dataclass(frozen=True)
class Declared:
    """One setting as a user meets it: a ``Settings`` field with its ``Opt``."""

    name: str
    opt: Opt
    annotation: Any
    default: Any

    @property
    def flag(self) -> str | None:
        if self.opt.flag is None or self.opt.secret:
            return None
        return self.opt.flag or "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str | None:
        if self.opt.env is None:
            return None
        if self.opt.env:
            return self.opt.env
        base = self.flag[2:] if self.flag else self.name
        return ENV_PREFIX + base.upper().replace("-", "_").removeprefix("NO_")

    @property
    def job(self) -> str | None:
        """The job file's key: the variable's name in lower case; ``<name>_env`` for a
        secret, whose value is the name of the variable holding it."""
        if self.opt.job is None:
            return None
        if self.opt.job:
            return self.opt.job
        if self.opt.secret:
            return self.name + "_env"
        return (self.env or ENV_PREFIX + self.name.upper()).removeprefix(ENV_PREFIX).lower()

    @property
    def kind(self) -> Literal["switch", "list", "value"]:
        """How the flag is given: alone (a switch), repeated (a list), or with a value."""
        base = _without_none(self.annotation)
        if base is bool:
            return "switch"
        if get_origin(base) is dict:
            return "list"
        return "value"

    @property
    def is_path(self) -> bool:
        """A file the user names: relative to the job file's folder when given there."""
        return _without_none(self.annotation) is Path

    @property
    def choices(self) -> tuple[str, ...] | None:
        base = _without_none(self.annotation)
        return tuple(get_args(base)) if get_origin(base) is Literal else None

    def help_text(self) -> str:
        """The flag's help, with its default appended unless it goes without saying (none, a
        switch that is off) or the help already says it."""
        default = self.opt.shown if self.opt.shown is not None else self.default
        if self.kind == "switch" or default in (None, {}, "") or "(default" in self.opt.help:
            return self.opt.help
        if isinstance(default, float):
            default = "forever" if math.isinf(default) else f"{default:g}"
        return f"{self.opt.help} (default {default})"


def nearest(name: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'rate'?)`` for a mistyped name, or nothing when none is close."""
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _without_none(annotation: Any) -> Any:
    """``X`` of ``X | None``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def declared(model: type[BaseModel]) -> tuple[Declared, ...]:
    """Every field of ``model`` with its ``Opt``, in the model's order; a field without one is
    a mistake caught at import, not a setting silently missing from the flags."""
    found = []
    for name, info in model.model_fields.items():
        opts = [m for m in info.metadata if isinstance(m, Opt)]
        if len(opts) != 1:
            raise TypeError(f"Settings.{name} needs exactly one Opt(...) in its annotation")
        found.append(Declared(name, opts[0], info.annotation, info.get_default(
            call_default_factory=True)))
    return tuple(found)


def for_command(settings: Iterable[Declared], command: str) -> list[Declared]:
    """The settings that ``command`` takes as flags (``config``: every one with a flag)."""
    return [d for d in settings if d.flag is not None
            and (command == "config" or command in d.opt.commands)]


def add_flags(parser: argparse.ArgumentParser, command: str,
              settings: Sequence[Declared]) -> dict[str, argparse._ArgumentGroup]:
    """Add ``command``'s setting flags to ``parser``, in their groups; returns the groups, for
    the flags of the command line alone (``--verbose``) to join. Every flag's value is left
    as typed (its ``dest`` the field's name, None when not given): ``settings.resolve``
    parses flags, variables and job keys alike."""
    groups = {title: parser.add_argument_group(title) for title in GROUPS}
    for d in for_command(settings, command):
        group = groups[d.opt.group]
        assert d.flag is not None  # for_command keeps settings with a flag
        names = (d.opt.short, d.flag) if d.opt.short else (d.flag,)
        if d.kind == "switch":
            off = d.flag.startswith("--no-")
            group.add_argument(*names, dest=d.name, action="store_const", const=not off,
                               default=None, help=d.help_text())
        elif d.kind == "list":
            group.add_argument(*names, dest=d.name, action="append", default=None,
                               metavar=d.opt.metavar, help=d.help_text())
        elif d.opt.bare is not None:
            group.add_argument(*names, dest=d.name, nargs="?", const=d.opt.bare,
                               metavar=d.opt.metavar, help=d.help_text())
        else:
            group.add_argument(*names, dest=d.name, metavar=d.opt.metavar,
                               choices=d.choices, help=d.help_text())
    return groups
