"""Every knob of a run in one validated, frozen object.

The environment is read here and nowhere else: each field ``name`` can be given as
``CONVIRZA_<NAME>`` (``CONVIRZA_CONCURRENCY=8``), and a flag on the command line wins over the
environment. Values that make no sense (``concurrency=0``) are refused before anything starts.

Memory bound of a run: the reader stays at most ``queue_size`` rows ahead of the workers, so the
rows held at once are about ``queue_size + concurrency + chunk_rows`` small records, plus one
64 KiB read buffer per upload in flight, whatever the manifest's length or the files' sizes.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import UsageError
from .manifest import file_encoding, file_kind

DEFAULT_API_URL = "https://apicfa.convirza.com"
ENV_PREFIX = "CONVIRZA_"
#: Fields whose command-line flag has another name than the field: the environment variable
#: follows the flag (``--timeout`` -> ``CONVIRZA_TIMEOUT``), so users need learn one name.
ENV_ALIASES = {"read_timeout": "TIMEOUT", "column_map": "MAP", "defaults": "SET",
               "columns_file": "COLUMNS"}


def env_name(field: str) -> str:
    """The environment variable for a settings field."""
    return ENV_PREFIX + ENV_ALIASES.get(field, field.upper())

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Bytes from ``"50MB"``, ``"1GiB"``, ``"500KiB"`` or a plain number (MB = 10^6, MiB = 2^20)."""
    if isinstance(text, int):
        return text
    match = _SIZE_RE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise UsageError(f"not a size: {text!r} (expected bytes, or a number with KB, MB, GB, "
                         "KiB, MiB or GiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*"
                          r"(?:(\d+(?:\.\d+)?)s?)?\s*$")


def parse_duration(text: str | float) -> float:
    """Seconds from ``"90m"``, ``"2h"``, ``"1h30m"``, ``"45s"`` or a plain number of seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    match = _DURATION_RE.match(text)
    if not text.strip() or not match or not any(match.groups()):
        raise UsageError(f"not a duration: {text!r} (expected e.g. 45s, 90m, 2h, 1h30m)")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secrets the environment holds, known before (and whether or not) the settings can
    be built: what an error about the settings must not print either."""
    env = os.environ if environ is None else environ
    return [env[name] for name in (ENV_PREFIX + "TOKEN", ENV_PREFIX + "PASSWORD",
                                   ENV_PREFIX + "CLIENT_SECRET") if env.get(name)]


def parse_assignments(pairs: list[str], option: str) -> dict[str, str]:
    """``["A=b", "C=d"]`` from repeated ``--set``/``--map`` options, as a dict."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{option} expects NAME=VALUE, got {pair!r}")
        out[name.strip()] = value.strip()
    return out


class Settings(BaseModel):
    """Configuration of one command, after flags, environment and defaults are merged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_url: str = DEFAULT_API_URL
    token: SecretStr | None = None
    #: Where ``token`` was read from, if from a file: an input no output may be written over.
    token_file: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "system"
    client_secret: SecretStr | None = None

    ledger: Path | None = None
    concurrency: int = Field(4, ge=1, le=256)
    rate: float = Field(5.0, gt=0, description="requests per second, shared by all workers")
    burst: int = Field(1, ge=1)
    max_attempts: int = Field(5, ge=1, le=100)
    backoff_base: float = Field(0.5, gt=0)
    backoff_cap: float = Field(60.0, gt=0)
    connect_timeout: float = Field(30.0, gt=0)
    read_timeout: float = Field(120.0, gt=0)
    min_upload_rate: int = Field(50_000, gt=0,
                                 description="bytes/s that an upload's deadline allows for")
    max_file_size: int = Field(50_000_000, gt=0)
    max_recording_duration: float | None = Field(None, gt=0, description="seconds; None: no limit")
    #: Send a row whose audio bytes are already imported under another key (by default it is
    #: recorded as already imported and not sent).
    send_same_audio: bool = False
    check_urls: bool = False

    defaults: dict[str, str] = Field(default_factory=dict)
    column_map: dict[str, str] = Field(default_factory=dict)
    #: A TOML file of ``[columns]`` (column = field) and ``[defaults]`` (field = value), under
    #: ``column_map`` and ``defaults``: an entry given as a flag or variable wins.
    columns_file: Path | None = None
    sheet: str | None = None
    encoding: str | None = None
    dayfirst: bool = False
    timezone: str | None = None
    file_field: Literal["recording_file", "file"] = "recording_file"
    auto_external_id: bool = True
    preflight: bool = False
    on_unknown: Literal["resend", "skip"] = "skip"
    shard: str | None = Field(None, pattern=r"^\d+/[1-9]\d*$")
    summary_json: Path | None = None
    max_errors: str | None = Field(None, pattern=r"^\s*\d+(\.\d+)?\s*%?\s*$")
    max_uploads: int | None = Field(None, ge=1)
    #: The circuit breaker: this many rows in a row failed for a reason that is not theirs
    #: (the API unreachable, 5xx, throttled past every attempt) stop the run; 0 turns it off.
    max_consecutive_failures: int = Field(25, ge=0)
    max_duration: float | None = Field(None, gt=0)
    #: Seconds to wait for a ledger another run holds (``inf``: as long as it takes); None:
    #: refuse at once, naming the holder.
    wait_for_ledger: float | None = Field(None, ge=0)

    chunk_rows: int = Field(1000, ge=1)
    queue_size: int = Field(0, ge=0, description="0: twice the concurrency")
    log_format: Literal["text", "json"] = "text"
    quiet: bool = False
    progress_interval: float = Field(10.0, gt=0)
    #: Prometheus metrics: served on this port during a run (0: any free port), on
    #: ``metrics_host`` (loopback unless widened), and/or written to ``metrics_textfile``.
    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    metrics_textfile: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not re.match(r"^https?://[^/\s]+", self.api_url):
            raise ValueError(f"api_url must be an http(s) URL such as {DEFAULT_API_URL}")
        if self.username and not self.password:
            raise ValueError("a username needs CONVIRZA_PASSWORD too")
        if self.shard is not None and self.shard_of[0] >= self.shard_of[1]:
            raise ValueError("shard K/N needs 0 <= K < N, e.g. 0/4 .. 3/4")
        return self

    @field_validator("encoding")
    @classmethod
    def _text_encoding(cls, name: str | None) -> str | None:
        """Refused here, before anything starts: a codec that is not a file's text encoding
        (``zlib``, ``rot13``, ``idna``, ...) would fail only when the manifest is opened."""
        if name:
            try:
                file_encoding(name)
            except LookupError as exc:
                raise ValueError(str(exc)) from None
        return name

    @property
    def error_budget(self) -> tuple[float, bool] | None:
        """``--max-errors`` as (limit, is_percent): ``"100"`` -> (100, False), ``"5%"`` ->
        (5, True); None when unlimited."""
        if self.max_errors is None:
            return None
        text = self.max_errors.strip()
        return float(text.rstrip("%").strip()), text.endswith("%")

    @property
    def shard_of(self) -> tuple[int, int]:
        """(K, N) of ``--shard K/N``; (0, 1) when the run is not sharded."""
        if self.shard is None:
            return (0, 1)
        k, n = self.shard.split("/")
        return int(k), int(n)

    @property
    def base_url(self) -> str:
        """The API root without a trailing slash; ``/v2/...`` and ``/oauth/token`` are appended."""
        return self.api_url.rstrip("/")

    @property
    def effective_queue_size(self) -> int:
        return self.queue_size or 2 * self.concurrency

    def secrets(self) -> list[str]:
        """Every secret value, so that log output can be scrubbed of them as a last defence."""
        secrets = (self.token, self.password, self.client_secret)
        return [v for s in secrets if s and len(v := s.get_secret_value()) >= 4]

    @classmethod
    def load(cls, flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
        """Merge flags over ``CONVIRZA_*`` variables over defaults; flags set to None are unset.

        A token may come from ``token_file`` (a flag) so that it never shows in the process list.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(env_name(name))
            if raw is not None and raw != "":
                values[name] = raw
        token_file = flags.get("token_file") or env.get(ENV_PREFIX + "TOKEN_FILE")
        for name, value in flags.items():
            if name == "token_file" or value is None:
                continue
            values[name] = value
        if token_file:
            values["token"] = _read_token_file(Path(token_file))
            values["token_file"] = Path(token_file)
        if not values.get("timezone") and env.get("TZ"):
            values["timezone"] = env["TZ"].lstrip(":")
        for name in ("max_file_size", "min_upload_rate"):
            if isinstance(values.get(name), str):
                values[name] = parse_size(values[name])
        if isinstance(values.get("max_duration"), str):
            values["max_duration"] = parse_duration(values["max_duration"])
        if isinstance(values.get("wait_for_ledger"), str):
            text = values["wait_for_ledger"].strip().lower()
            values["wait_for_ledger"] = float("inf") if text in ("forever", "true", "yes") \
                else parse_duration(text)
        if isinstance(values.get("max_recording_duration"), str):
            values["max_recording_duration"] = parse_duration(values["max_recording_duration"])
        for name in ("defaults", "column_map"):
            if isinstance(values.get(name), str):  # from the environment: "A=b;C=d"
                values[name] = parse_assignments(values[name].split(";"), env_name(name))
        if values.get("columns_file"):
            columns, defaults = read_columns_file(Path(values["columns_file"]))
            values["column_map"] = {**columns, **values.get("column_map", {})}
            values["defaults"] = {**defaults, **values.get("defaults", {})}
        try:
            return cls(**values)
        except ValidationError as exc:
            raise UsageError(_describe(exc)) from None


#: A token is one line of a few hundred bytes; a file past this is not a token file.
TOKEN_FILE_CAP = 64 << 10
#: A mapping of even a thousand columns is a few tens of KiB.
COLUMNS_FILE_CAP = 1 << 20
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _read_small_file(path: Path, what: str, cap: int, cap_text: str) -> bytes:
    """The bytes of a small file the user named (``what``: "the token file"), refused with one
    line unless it is a regular file of at most ``cap`` bytes.

    Why so wary: a FIFO would block ``open()`` for ever, ``/dev/zero`` or ``/dev/urandom``
    would be read until memory runs out, and a folder or socket says nothing useful. The
    file is stat-ed first (no open of what is not a regular file), then opened non-blocking
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


def read_columns_file(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The column mapping and the defaults in a ``--columns`` TOML file::

        [columns]            # manifest column = upload field
        "Call Start" = "call_date"
        From = "caller_id"

        [defaults]           # upload field = value for rows that leave it empty
        group_id = 12
    """
    raw = _read_small_file(path, "the columns file", COLUMNS_FILE_CAP, "1 MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"the columns file {path} is not UTF-8 text (byte offset "
                         f"{exc.start}); save it as UTF-8, as TOML requires") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"the columns file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"columns", "defaults"})
    if unknown:
        raise UsageError(f"the columns file {path} has unknown section(s) {', '.join(unknown)}; "
                         "expected [columns] and [defaults]")
    out: list[dict[str, str]] = []
    for section in ("columns", "defaults"):
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise UsageError(f"the columns file {path}: {section} must be a table ([{section}])")
        entries: dict[str, str] = {}
        for name, value in table.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            allowed = str if section == "columns" else str | int
            if not isinstance(value, allowed):
                raise UsageError(f"the columns file {path}: [{section}] {name} = {value!r}: "
                                 "expected a text value")
            entries[name] = str(value)
        out.append(entries)
    return out[0], out[1]


def _read_token_file(path: Path) -> str:
    """The one line of a token file, without one final newline and surrounding spaces.

    Nothing of the file's content ever goes into a message: it is a secret, and a file that is
    not what it should be may be a secret of another kind (a key, a password list).
    """
    raw = _read_small_file(path, "the token file", TOKEN_FILE_CAP, "64 KiB")
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


def _describe(exc: ValidationError) -> str:
    """One line per bad setting, never echoing a secret's value."""
    lines = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        message = err["msg"].removeprefix("Value error, ")  # pydantic's, for a ValueError
        lines.append(f"--{name.replace('_', '-')}: {message}")
    return "invalid settings: " + "; ".join(lines)
