"""A job file: what a scheduler would otherwise pass as flags, kept in one TOML file that
``run --job``, ``validate --job``, ``retry --job``, ``verify --job`` and ``config --job`` read::

    # nightly.toml
    manifest = "/data/exports/calls-*.csv"   # a path, or a glob: each match in turn
    ledger = "nightly.ledger.sqlite"          # relative paths: from this file's folder
    api_url = "https://apicfa.convirza.com"
    username = "importer@example.com"
    password_env = "CONVIRZA_NIGHTLY_PASSWORD" # the variable holding it, never the secret
    rate = 4
    max_duration = "6h"

    [columns]                                 # as in a --columns file
    "Call Start" = "call_date"

    [defaults]
    group_id = 12

Its keys are the settings' own (``options``: the variable's name in lower case), so nothing
here lists them. A key that is not one is refused, naming the nearest and every valid key; a
secret's value is refused outright (the job file is a file others read, back up and commit),
its ``<name>_env`` key naming the variable that holds it instead.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .options import nearest
from .resolve import DECLARED, JobValues
from .userfiles import read_toml, table_entries

#: Keys of a job file that are not settings.
MANIFEST_KEY = "manifest"
_KEYS = {d.job: d for d in DECLARED if d.job is not None}
_SECRETS = {d.name: d for d in DECLARED if d.opt.secret}
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GLOB = re.compile(r"[*?[]")


def valid_keys() -> list[str]:
    """Every key a job file may hold, sorted."""
    return sorted([*_KEYS, MANIFEST_KEY])


@dataclass(frozen=True)
class JobFile:
    """A job file read and checked: its settings (``values``) and its manifest, a path or a
    glob, made absolute against the file's folder."""

    path: Path
    manifest: str | None
    values: JobValues


def read_job(path: Path) -> JobFile:
    """The job file at ``path``, refused with one line when a key is unknown, a secret is
    written in it, or a value has the wrong shape (values themselves are checked with the
    other settings, and named as ``rate in nightly.toml``)."""
    data = read_toml(path, "the job file")
    folder = path.resolve().parent
    where = f"the job file {path}"
    values: dict[str, Any] = {}
    variables: dict[str, str] = {}
    manifest: str | None = None
    for key, value in data.items():
        if key == MANIFEST_KEY:
            if not isinstance(value, str) or not value.strip():
                raise UsageError(f"{where}: manifest must be a path or a glob, e.g. "
                                 "\"/data/exports/*.csv\"")
            manifest = str(folder / os.path.expanduser(value))
            continue
        declared = _KEYS.get(key)
        if declared is None:
            raise UsageError(_unknown(key, where))
        if declared.opt.secret:
            if not isinstance(value, str) or not _VARIABLE.match(value):
                raise UsageError(f"{where}: {key} names the environment variable that holds "
                                 "the secret (e.g. CONVIRZA_PASSWORD), not the secret itself")
            variables[declared.name] = value
        elif declared.name in ("column_map", "defaults"):
            values[declared.name] = table_entries(value, key, where)
        elif declared.is_path and isinstance(value, str):
            values[declared.name] = folder / os.path.expanduser(value)
        else:
            values[declared.name] = value
    # A job that names no ledger keeps one beside itself, after its name (nightly.toml ->
    # nightly.ledger.sqlite): every night's manifests go through one ledger, whatever their
    # names. As a job value, a --ledger flag or CONVIRZA_LEDGER still wins.
    notes: dict[str, str] = {}
    if "ledger" not in values:
        values["ledger"] = path.resolve().with_name(path.stem + ".ledger.sqlite")
        notes["ledger"] = " (a job's ledger, by default)"
    return JobFile(path, manifest, JobValues(str(path), values, variables, notes))


def _unknown(key: str, where: str) -> str:
    secret = _SECRETS.get(key)
    if secret is not None:
        return (f"{where}: {key} is a secret, which a job file never holds: name the variable "
                f"that holds it ({secret.job} = \"{secret.env}\")"
                + (", or give token_file = \"/path/to/token\"" if key == "token" else ""))
    return (f"{where}: unknown key {key!r}{nearest(key, valid_keys())}; valid keys: "
            f"{', '.join(valid_keys())}")


def manifests_of(pattern: str) -> list[Path]:
    """The manifests a job names: the path itself, or every regular file a glob matches, in
    sorted order (nightly exports named by date run oldest first); none when a glob matches
    nothing (``run`` refuses that: a night without its export is worth a failed job)."""
    if not _GLOB.search(pattern):
        return [Path(pattern)]
    return sorted(Path(p) for p in glob.glob(pattern) if os.path.isfile(p))
