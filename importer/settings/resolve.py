"""``Settings``: the fields of ``SettingFields``, merged from where a user gives them, flag >
environment > job file > default, per setting (``resolve``), with where each value came from
(what ``config`` prints). A value refused is named as its source spells it (``--rate``,
``CONVIRZA_RATE``, ``rate in nightly.toml``), never echoing a secret.

The environment is read here and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from pydantic import PrivateAttr, ValidationError

from ..errors import UsageError
from .fields import SettingFields
from .options import ENV_PREFIX, Declared, declared, nearest
from .units import parse_assignments
from .userfiles import read_columns_file


class Settings(SettingFields):
    """Configuration of one command, after flags, environment, job file and defaults are
    merged (``resolve``), each value with where it came from: a message about a value (a
    token refused) names the place the user must go to fix it."""

    _sources: dict[str, tuple[Source, ...]] = PrivateAttr(default_factory=dict)

    @property
    def sources(self) -> Mapping[str, tuple[Source, ...]]:
        """Where each value came from (a setting not in it: its default)."""
        return self._sources

    @property
    def zone_chosen(self) -> bool:
        """Whether the user chose the zone of naive call dates (a flag, a keyword,
        ``CONVIRZA_TIMEZONE``, a job file), not this machine's ``TZ`` or its default."""
        return any(s != Source("env", "TZ") for s in self._sources.get("timezone", ())) or \
            (self.timezone is not None and "timezone" not in self._sources)

    def credential_source(self) -> str:
        """Where the token or login came from, as the user gave it: ``the token file
        /etc/token (--token-file)``, ``CONVIRZA_TOKEN``, ``the variable NIGHTLY (token_env in
        nightly.toml)``, ``token=`` (the Python API)."""
        if self.token_file is not None:
            found = self._sources.get("token_file")
            where = f" ({_labelled('token_file', found[0])})" if found else ""
            return f"the token file {self.token_file}{where}"
        name = "token" if self.token is not None else "username"
        found = self._sources.get(name)
        if not found:
            return "CONVIRZA_TOKEN" if name == "token" else "CONVIRZA_USERNAME"
        source = found[0]
        if source.kind == "job" and " = " in source.name:  # token_env = VARIABLE
            origin, variable = source.name.split(": ", 1)[0], source.name.rsplit(" = ", 1)[1]
            return f"the variable {variable} ({BY_NAME[name].job} in {origin})"
        return _labelled(name, source)

    @classmethod
    def load(cls, flags: Mapping[str, Any], environ: Mapping[str, str] | None = None,
             job: JobValues | None = None) -> Settings:
        """Merge flags over ``CONVIRZA_*`` variables over a job file over defaults; flags set
        to None are unset (``resolve`` also says where each value came from)."""
        return resolve(flags, environ, job).settings


#: Every setting, declared once: the fields of ``Settings`` with their ``Opt``.
DECLARED: tuple[Declared, ...] = declared(Settings)
BY_NAME: dict[str, Declared] = {d.name: d for d in DECLARED}
#: Settings whose variable is not the field's name (``read_timeout`` -> ``CONVIRZA_TIMEOUT``):
#: variables follow the flags, so that users learn one name.
ENV_ALIASES: dict[str, str] = {
    d.name: d.env.removeprefix(ENV_PREFIX) for d in DECLARED
    if d.env is not None and d.env != ENV_PREFIX + d.name.upper()}
#: Several sources add up entry by entry (a --map and the job file's [columns]).
_MERGED = ("column_map", "defaults")
_TOKEN_SOURCES = ("token_file", "token")


def env_name(name: str) -> str:
    """The environment variable for a settings field."""
    found = BY_NAME[name].env
    assert found is not None
    return found


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secrets the environment holds, known before (and whether or not) the settings can
    be built: what an error about the settings must not print either."""
    env = os.environ if environ is None else environ
    return [env[name] for name in (ENV_PREFIX + "TOKEN", ENV_PREFIX + "PASSWORD",
                                   ENV_PREFIX + "CLIENT_SECRET") if env.get(name)]


@dataclass(frozen=True)
class JobValues:
    """What a job file sets (``jobfile.read_job``): settings by field name, their paths already
    made absolute, and for each secret the name of the variable that holds it."""

    origin: str
    values: Mapping[str, Any] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    #: Said of a value after the job's name (the ledger a job keeps by default).
    notes: Mapping[str, str] = field(default_factory=dict)


class Source(NamedTuple):
    """Where a setting's value came from: ``flag --rate``, ``keyword rate=``, ``env
    CONVIRZA_RATE``, ``job nightly.toml``, ``file mapping.toml [columns]`` (a columns file's
    table), ``default``."""

    kind: Literal["flag", "keyword", "env", "job", "file", "default"]
    name: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.name}".strip()

    def label(self, setting: str) -> str:
        """The setting as this source spells it, for an error message."""
        if self.kind == "flag":
            return self.name
        if self.kind == "keyword":
            return f"{setting}="
        if self.kind == "env":
            return self.name
        if self.kind == "job":
            return f"{BY_NAME[setting].job or setting} in {self.name}"
        if self.kind == "file":
            return self.name
        return BY_NAME[setting].flag or setting


@dataclass(frozen=True)
class Resolved:
    """The settings and where each came from (what ``config`` prints); merged settings
    (``--map`` over a job's ``[columns]``) name every source that added to them."""

    settings: Settings
    sources: Mapping[str, tuple[Source, ...]]


def resolve(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None,
            job: JobValues | None = None, *,
            given_as: Literal["flag", "keyword"] = "flag") -> Resolved:
    """Merge ``flags`` (or the Python API's keywords) over ``CONVIRZA_*`` variables over a job
    file over defaults, per setting; ``--map``/``--set`` and their kin merge entry by entry.

    The token follows its own order, as before job files: a token file given as a flag or
    variable wins over ``CONVIRZA_TOKEN``, which wins over the job file's ``token_file`` or
    ``token_env``. ``TZ`` stands in for ``timezone`` when nothing else gives one.
    """
    env = os.environ if environ is None else environ
    layers = [_given(flags, given_as), _environment(env)]
    if job is not None:
        layers.append(_job_layer(job, env))
    values: dict[str, Any] = {}
    sources: dict[str, tuple[Source, ...]] = {}
    for d in DECLARED:
        found = [layer[d.name] for layer in layers if d.name in layer]
        if not found:
            continue
        if d.name in _MERGED:
            merged: dict[str, str] = {}
            for source, value in reversed(found):
                merged.update(_parsed(d.name, source, value))
            values[d.name] = merged
            sources[d.name] = tuple(s for s, _ in found)
        else:
            sources[d.name], values[d.name] = (found[0][0],), found[0][1]
    _pick_token(values, sources)
    _url_header_value(values, env)
    if not values.get("timezone") and env.get("TZ"):
        values["timezone"] = env["TZ"].lstrip(":")
        sources["timezone"] = (Source("env", "TZ"),)
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        raise UsageError(_describe(exc, sources)) from None
    _columns_file_sources(settings, sources)
    settings._sources = sources
    return Resolved(settings, sources)


#: What a columns file's tables give: the setting each one feeds.
_COLUMNS_TABLES = (("column_map", "columns"), ("defaults", "defaults"), ("value_map", "values"))


def _columns_file_sources(settings: Settings, sources: dict[str, tuple[Source, ...]]) -> None:
    """A columns file's ``[columns]``, ``[defaults]`` and ``[values]`` named as the source of
    what they gave (after the flags' and the job's entries, which win over them)."""
    if settings.columns_file is None:
        return
    given = dict(zip(("column_map", "defaults", "value_map"),
                     read_columns_file(settings.columns_file), strict=True))
    for name, table in _COLUMNS_TABLES:
        if given[name]:
            sources[name] = (*sources.get(name, ()),
                             Source("file", f"{settings.columns_file} [{table}]"))


Layer = dict[str, tuple["Source", Any]]


def _given(flags: Mapping[str, Any], kind: Literal["flag", "keyword"]) -> Layer:
    unknown = sorted(set(flags) - set(BY_NAME))
    if unknown:
        raise UsageError(f"unknown setting {unknown[0]!r}{nearest(unknown[0], BY_NAME)}")
    return {k: (Source(kind), v) for k, v in flags.items() if v is not None and v != []}


def _environment(env: Mapping[str, str]) -> Layer:
    return {d.name: (Source("env"), env[d.env]) for d in DECLARED
            if d.env is not None and env.get(d.env, "") != ""}


def _job_layer(job: JobValues, env: Mapping[str, str]) -> Layer:
    layer: Layer = {name: (Source("job", job.origin + job.notes.get(name, "")), value)
                    for name, value in job.values.items()}
    for name, variable in job.variables.items():
        key = BY_NAME[name].job
        value = env.get(variable)
        if not value:
            raise UsageError(f"{key} in {job.origin} names the variable {variable}, which is "
                             "not set")
        layer[name] = (Source("job", f"{job.origin}: {key} = {variable}"), value)
    return layer


def _pick_token(values: dict[str, Any], sources: dict[str, tuple[Source, ...]]) -> None:
    """Keep one of ``token`` and ``token_file``: a file from a flag or a variable, else a
    token from a flag or a variable, else whichever the job file gives."""
    given = [n for n in _TOKEN_SOURCES if n in values]
    if len(given) < 2:
        return
    rank = {"flag": 0, "keyword": 0, "env": 1, "job": 2}
    first, second = sorted(given, key=lambda n: (rank[sources[n][0].kind],
                                                 _TOKEN_SOURCES.index(n)))
    if rank[sources[first][0].kind] == rank[sources[second][0].kind] == 0 or \
            sources[first][0].kind == sources[second][0].kind == "job":
        raise UsageError("give a token or a token file, not both")
    del values[second], sources[second]


def _url_header_value(values: dict[str, Any], env: Mapping[str, str]) -> None:
    """The secret ``--url-header NAME=VARIABLE`` names, read with the rest of the
    environment; a variable that is not set is a usage error naming it (not its value)."""
    spec = values.get("url_header")
    if not spec:
        return
    variable = str(spec).partition("=")[2].strip()
    if variable and not env.get(variable):
        raise UsageError(f"--url-header {spec}: the variable {variable} is not set")
    values["url_header_value"] = env.get(variable)


def _parsed(name: str, source: Source, value: object) -> dict[str, str]:
    try:
        return parse_assignments(value)
    except ValueError as exc:
        raise UsageError(f"{_labelled(name, source)}: {exc}") from None


def _labelled(name: str, source: Source) -> str:
    """``name`` as ``source`` spells it; a flag layer names the setting's own flag."""
    if source.kind == "flag" and not source.name:
        return BY_NAME[name].flag or name
    if source.kind == "env" and not source.name:
        return BY_NAME[name].env or name
    return source.label(name)


def named_sources(sources: Mapping[str, tuple[Source, ...]]) -> dict[str, tuple[Source, ...]]:
    """``sources`` with each flag and variable named (``flag --rate``, ``env CONVIRZA_RATE``)."""
    return {name: tuple(Source(s.kind, _labelled(name, s)) if s.kind in ("flag", "env")
                        and not s.name else s for s in found)
            for name, found in sources.items()}


def _describe(exc: ValidationError, sources: Mapping[str, tuple[Source, ...]]) -> str:
    """One line per bad setting, naming it as its source spells it, never echoing a secret's
    value."""
    lines = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else ""
        message = err["msg"].removeprefix("Value error, ")  # pydantic's, for a ValueError
        if name in BY_NAME:
            found = sources.get(name, (Source("default"),))
            lines.append(f"{_labelled(name, found[0])}: {message}")
        else:
            lines.append(message)
    return "invalid settings: " + "; ".join(lines)
