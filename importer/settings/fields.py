"""Every knob of a command in one validated, frozen model, each declared once.

Each field carries its type, default, bounds and unit parsing (sizes such as ``50MB``,
durations such as ``90m``: ``units``), and an ``Opt`` naming its flag, its ``CONVIRZA_*``
variable, its job-file key, the commands that take it and its help (``options``). The flags,
the variables, the job file's keys and ``config``'s listing are all derived from these fields,
so a new setting is one new field here. Values that make no sense (``concurrency=0``) are
refused before anything starts. ``Settings`` (``resolve``) is this model, merged from where
its values come from.

Memory bound of a run: the reader stays at most ``queue_size`` rows ahead of the workers, so the
rows held at once are about ``queue_size + concurrency + chunk_rows`` small records, plus one
64 KiB read buffer per upload in flight, whatever the manifest's length or the files' sizes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    SecretStr,
    field_validator,
    model_validator,
)

from .options import API, BUDGETS, FILES, MANIFEST, METRICS, OUTPUT, READS, UPLOADS, Opt
from .units import (
    ErrorBudget,
    Shard,
    parse_assignments,
    parse_duration,
    parse_error_budget,
    parse_shard,
    parse_size,
    parse_value_maps,
    parse_wait,
)
from .userfiles import file_encoding, read_columns_file, read_token_file

DEFAULT_API_URL = "https://apicfa.convirza.com"

Size = Annotated[int, BeforeValidator(parse_size)]
#: A duration is finite: TOML and Python can hand over ``inf`` and ``nan`` as floats, which no
#: duration's text can say (``wait_for_ledger`` alone means "forever" by infinity).
Seconds = Annotated[FiniteFloat, BeforeValidator(parse_duration)]
#: A duration or none (no limit): parsed outside the union, so that a bad one is one error.
MaybeSeconds = Annotated[FiniteFloat | None, BeforeValidator(
    lambda v: v if v is None else parse_duration(v))]
Assignments = Annotated[dict[str, str], BeforeValidator(parse_assignments)]
ValueMaps = Annotated[dict[str, dict[str, str]], BeforeValidator(parse_value_maps)]
VERIFY = frozenset({"verify"})
#: The commands that turn a folder or a prefix into a manifest (``run SOURCE --template``).
SCANS = frozenset({"run", "scan"})


def _no_credentials_in_url(url: str) -> str:
    """A user or password in the API URL (``http://user:pass@host``) is refused, not used:
    the URL is shown by ``config``, logged and kept in summaries, where a password must never
    be, and the API takes a bearer token, not basic auth. Its text is not echoed."""
    try:
        netloc = urlsplit(url.strip()).netloc
    except ValueError:
        netloc = ""
    if "@" in netloc:
        raise ValueError("an API URL must not hold a user or password (USER:PASSWORD@): give "
                         "the token in CONVIRZA_TOKEN (or --token-file), or a login in "
                         "CONVIRZA_USERNAME and CONVIRZA_PASSWORD")
    return url


def _header_spec(spec: str | None) -> str | None:
    """``NAME=VARIABLE``: a header's name and the variable that holds its value (a value
    given here instead would be a secret on the command line: refused, not echoed)."""
    if spec is None:
        return None
    name, sep, variable = spec.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9-]+", name.strip()) or \
            not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable.strip()):
        raise ValueError("expected NAME=VARIABLE: a header's name and the environment "
                         "variable that holds its value, e.g. Authorization=VENDOR_AUTH")
    return f"{name.strip()}={variable.strip()}"


class RecordingSources(BaseModel):
    """The settings of where recordings are (docs/sources.md): paths written on another
    machine, objects in a store, URLs behind credentials. Their own class only to keep each
    class readable; ``SettingFields`` has them as its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recordings_root: Annotated[Path | None, Opt(
        "relative recording paths start in DIR (default: the manifest's folder)", "DIR",
        READS, MANIFEST)] = None
    #: Absolute prefixes as the manifest's machine wrote them, and the folder each is here.
    path_map: Annotated[Assignments, Opt(
        "read recording paths that start with the folder FROM (as written where the manifest "
        "was made, e.g. C:\\exports) as starting with TO here (repeatable)", "FROM=TO", READS,
        MANIFEST)] = Field(default_factory=dict)
    #: Seconds a presigned URL lasts (None: objects are sent as bytes, streamed).
    presign: Annotated[MaybeSeconds, Field(gt=0, le=7 * 86400), Opt(
        "send s3:// recordings as a presigned recording_url, valid TTL from each attempt "
        "(alone: 1h), that Convirza fetches, instead of streaming their bytes through this "
        "machine (still checked first by ranged reads)", "TTL", UPLOADS, MANIFEST,
        bare="1h")] = None
    fetch_urls: Annotated[bool, Opt(
        "fetch recording_url rows here, with the login ~/.netrc holds for the URL's host (or "
        "--url-header), check them as files and send them as files: for URLs Convirza "
        "cannot fetch itself (validate: needs credentials too)", commands=READS,
        group=MANIFEST)] = False
    url_header: Annotated[str | None, AfterValidator(_header_spec), Opt(
        "with --fetch-urls, send the header NAME to the URLs' hosts, its value read from the "
        "environment variable VARIABLE (the secret is never on the command line), e.g. "
        "'Authorization=VENDOR_AUTH'", "NAME=VARIABLE", READS, MANIFEST)] = None
    template: Annotated[str | None, Opt(
        "read each recording's call facts from its name: a preset (asterisk, connect) or a "
        "template such as '{caller_id}-{ring_to}-{call_date:%%Y%%m%%d-%%H%%M%%S}-"
        "{external_id}.wav' (run: SOURCE is then a folder or an s3:// prefix, scanned "
        "first)", "T", SCANS, MANIFEST)] = None
    scan_since: Annotated[str | None, Opt(
        "list only files modified since TIME: a time (2025-03-04T02:00, UTC unless it says), "
        "an age (26h), or last (the newest file the previous scan into the same manifest "
        "saw)", "TIME", SCANS, MANIFEST, flag="--since")] = None
    #: The value of ``url_header``'s variable, read with the environment (``resolve``).
    url_header_value: Annotated[SecretStr | None, Opt(
        "the value of --url-header's variable", secret=True, env=None, job=None)] = None


class SettingFields(RecordingSources):
    """Every setting of a command as a field: its type, default, bounds, units and ``Opt``,
    checked together. Built through ``Settings``, which adds where the values come from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- the API and credentials ---------------------------------------------------------
    api_url: Annotated[str, AfterValidator(_no_credentials_in_url), Opt(
        "API root, to which /v2/... is appended", "URL", API)] = DEFAULT_API_URL
    token: Annotated[SecretStr | None, Opt(
        "a fixed bearer token", secret=True)] = None
    #: Where ``token`` was read from, if from a file: an input no output may be written over.
    token_file: Annotated[Path | None, Opt(
        "read the bearer token from FILE (instead of CONVIRZA_TOKEN)", "FILE", API)] = None
    username: Annotated[str | None, Opt(
        "a login whose tokens are renewed as they expire (with CONVIRZA_PASSWORD)",
        flag=None)] = None
    password: Annotated[SecretStr | None, Opt("the login's password", secret=True)] = None
    client_id: Annotated[str, Opt("the OAuth client of the login", flag=None)] = "system"
    client_secret: Annotated[SecretStr | None, Opt(
        "the OAuth client secret Convirza publishes for API users", secret=True)] = None

    ledger: Annotated[Path | None, Opt(
        "results ledger (default: MANIFEST.ledger.sqlite beside the manifest); re-running with "
        "the same ledger resumes", "FILE", frozenset({"run"}))] = None
    concurrency: Annotated[int, Field(ge=1, le=256), Opt(
        "files probed or uploaded (verify: calls looked up) at once", "N", FILES | VERIFY,
        short="-c")] = 4
    #: Finite (``inf``/``nan``: from a flag's text, TOML or Python): the limiter divides by it.
    rate: Annotated[FiniteFloat, Field(gt=0), Opt(
        "requests per second, over all workers, at most: a 429 finds the API's own pace "
        "(kept in the ledger for the next run)", "R", API, short="-r")] = 5.0
    burst: Annotated[int, Field(ge=1), Opt(
        "requests allowed back to back (1: evenly spaced)", "B", UPLOADS)] = 1
    max_attempts: Annotated[int, Field(ge=1, le=100), Opt(
        "attempts per request on retryable errors", "N", API)] = 5
    read_timeout: Annotated[Seconds, Field(gt=0), Opt(
        "longest silence from the server before a request is given up", "SECONDS", API,
        flag="--timeout")] = 120.0
    connect_timeout: Annotated[Seconds, Field(gt=0), Opt(
        "longest wait for a connection", "SECONDS", API)] = 30.0
    min_upload_rate: Annotated[Size, Field(gt=0), Opt(
        "bytes a second an upload is allowed at the least: its deadline is --timeout plus "
        "its size at this rate", "SIZE", API, shown="50KB")] = 50_000
    backoff_base: Annotated[Seconds, Field(gt=0), Opt(
        "first retry waits up to this, doubling each time", "SECONDS", API)] = 0.5
    backoff_cap: Annotated[Seconds, Field(gt=0), Opt(
        "longest wait between retries", "SECONDS", API)] = 60.0
    #: Seconds to wait for a ledger another run holds (``inf``: as long as it takes); None:
    #: refuse at once, naming the holder.
    wait_for_ledger: Annotated[float | None, BeforeValidator(parse_wait), Field(ge=0), Opt(
        "when another run or retry is writing the ledger, wait for it (at most TIME, e.g. "
        "30m; without TIME, as long as it takes) instead of stopping at once (exit 2, naming "
        "the holder)", "TIME", UPLOADS, bare="forever")] = None
    file_field: Annotated[Literal["recording_file", "file"], Opt(
        "multipart name of the audio part (older API: file)", commands=UPLOADS)] = \
        "recording_file"
    on_unknown: Annotated[Literal["resend", "skip"], Opt(
        "a row whose earlier upload has an unknown outcome is looked up by its external_id "
        "first; when that is impossible: skip it (it stays 'uploading') or resend it (may "
        "import it twice)", commands=UPLOADS)] = "skip"
    find_existing: Annotated[Literal["auto", "always", "never"], Opt(
        "ask Convirza before sending: auto (on a ledger that holds no row yet, look a sample "
        "of the manifest's rows up by external_id; if any is there, look every new row up "
        "and send only those not found), always (look every new row up), or never",
        commands=UPLOADS)] = "auto"
    preflight: Annotated[bool, Opt(
        "look up every distinct group_id, campaign_id and channel_id once; rows naming one "
        "the API does not show become invalid (validate: needs credentials)",
        commands=READS)] = False

    # --- the manifest and the files --------------------------------------------------------
    column_map: Annotated[Assignments, Opt(
        "read the manifest column COLUMN as upload field FIELD (repeatable), e.g. --map "
        "'Call Start=call_date'", "COLUMN=FIELD", READS, MANIFEST, flag="--map",
        job="columns")] = Field(default_factory=dict)
    defaults: Annotated[Assignments, Opt(
        "value of FIELD for rows that leave it empty (repeatable), e.g. --set group_id=12",
        "FIELD=VALUE", READS | {"scan"}, MANIFEST, flag="--set", job="defaults")] = \
        Field(default_factory=dict)
    value_map: Annotated[ValueMaps, Opt(
        "read the word FROM in FIELD's cells as VALUE (repeatable; any case), e.g. --value "
        "'disposition:Voicemail=NO ANSWER'; also [values.FIELD] in the columns file",
        "FIELD:FROM=VALUE", READS, MANIFEST, flag="--value", job="values")] = \
        Field(default_factory=dict)
    #: A TOML file of ``[columns]`` (column = field) and ``[defaults]`` (field = value), read
    #: when the settings are built, under ``column_map`` and ``defaults``: an entry given
    #: another way (a flag, a variable, a job file's table) wins.
    columns_file: Annotated[Path | None, Opt(
        "TOML file of [columns] (COLUMN = FIELD) and [defaults] (FIELD = VALUE); --map and "
        "--set win over it", "FILE", READS, MANIFEST, flag="--columns", job="columns_file")] = None
    sheet: Annotated[str | None, Opt(
        "the sheet of an Excel workbook to read (default: the first)", "NAME", READS,
        MANIFEST)] = None
    encoding: Annotated[str | None, Opt(
        "text encoding of a CSV manifest, e.g. cp1252 (default: UTF-8 with or without BOM, "
        "else cp1252 with a warning)", "NAME", READS, MANIFEST)] = None
    timezone: Annotated[str | None, Opt(
        "IANA zone for call dates written without one (default: TZ, else this machine's "
        "zone, named in a warning)", "ZONE", READS, MANIFEST)] = None
    dst_times: Annotated[Literal["refuse", "before", "after"], Opt(
        "a call date without a zone that a daylight-saving change skips or repeats (2:30 on "
        "the spring-forward night, 1:30 on the fall-back night): refuse the row, or read it "
        "with the UTC offset in force before or after the change", commands=READS,
        group=MANIFEST)] = "refuse"
    dayfirst: Annotated[bool, Opt(
        "read dates such as 04/03/2025 day first (4 March), not month first",
        commands=READS, group=MANIFEST)] = False
    max_file_size: Annotated[Size, Field(gt=0), Opt(
        "refuse recordings bigger than this, e.g. 50MB, 1GiB", "SIZE", FILES, MANIFEST,
        shown="50MB")] = 50_000_000
    min_age: Annotated[MaybeSeconds, Field(gt=0), Opt(
        "leave recordings modified within AGE (e.g. 10m) for the next run: a drop still "
        "being written; a text manifest whose last line has no end is left alone for AGE "
        "too (at least a minute) (default: every recording now)", "AGE", FILES,
        MANIFEST)] = None
    max_recording_duration: Annotated[MaybeSeconds, Field(gt=0), Opt(
        "refuse recordings longer than this: seconds, or e.g. 90m, 1h30m (default: no "
        "limit)", "DURATION", READS, MANIFEST)] = None
    #: Send a row of a call already imported under another key (the same audio and call
    #: facts, no two explicit ids apart); by default it is recorded as already imported.
    send_same_audio: Annotated[bool, Opt(
        "send a row of a call already imported under another key, or sent by another row of "
        "this run: the same audio, call_date, caller_id and group_id (default: not sent "
        "again, recorded as already imported); rows of other calls with the same audio are "
        "always sent", commands=READS, group=MANIFEST)] = False
    check_urls: Annotated[bool, Opt(
        "for recording_url rows, ask the URL's server (HEAD, or a one-byte GET) and refuse a "
        "non-2xx answer or a type that is not mp3/wav audio (uses the API client, so "
        "validate needs credentials too)", commands=READS, group=MANIFEST)] = False
    auto_external_id: Annotated[bool, Opt(
        "do not send a derived external_id for rows that have none", commands=READS,
        group=MANIFEST, flag="--no-auto-external-id")] = True
    shard: Annotated[Shard | None, BeforeValidator(parse_shard), Opt(
        "process only the rows whose key hashes to shard K of N (0 <= K < N); give each "
        "shard its own --ledger", "K/N", READS, MANIFEST)] = None

    # --- budgets ---------------------------------------------------------------------------
    max_errors: Annotated[ErrorBudget | None, BeforeValidator(parse_error_budget), Opt(
        "stop once N rows failed or were invalid, or N%% of the rows read so far (judged "
        "once 20 rows have an outcome)", "N|N%", UPLOADS, BUDGETS)] = None
    max_uploads: Annotated[int | None, Field(ge=1), Opt(
        "start no more than N uploads (e.g. a daily API quota)", "N", UPLOADS, BUDGETS)] = None
    #: The circuit breaker: this many rows in a row failed for a reason that is not theirs
    #: (the API unreachable, 5xx, throttled past every attempt) stop the run; 0 turns it off.
    max_consecutive_failures: Annotated[int, Field(ge=0), Opt(
        "stop once N rows in a row failed every attempt for the API's sake (unreachable, 5xx, "
        "throttled), not their own; rows not started stay pending (0: never; verify: N "
        "lookups in a row)", "N", UPLOADS | VERIFY, BUDGETS)] = 25
    max_duration: Annotated[MaybeSeconds, Field(gt=0), Opt(
        "start no new upload after TIME, e.g. 45m, 6h (uploads in flight finish)", "TIME",
        UPLOADS, BUDGETS)] = None

    # --- tuning and output -----------------------------------------------------------------
    chunk_rows: Annotated[int, Field(ge=1), Opt(
        "manifest rows read and admitted to the ledger at once", flag=None)] = 1000
    queue_size: Annotated[int, Field(ge=0), Opt(
        "rows the reader may be ahead of the workers (0: twice the concurrency)",
        flag=None)] = 0
    summary_json: Annotated[Path | None, Opt(
        "write the end-of-run summary to FILE as JSON, for schedulers", "FILE", FILES,
        OUTPUT)] = None
    quiet: Annotated[bool, Opt(
        "print only errors (the exit code tells the rest)", commands=API, group=OUTPUT,
        short="-q")] = False
    log_format: Annotated[Literal["text", "json"], Opt(
        "log lines as text or JSON objects", commands=API, group=OUTPUT)] = "text"
    stop_grace: Annotated[Seconds, Field(gt=0), Opt(
        "after the first Ctrl-C or SIGTERM, wait at most this long for uploads already on "
        "the wire (rows waiting for their turn stay pending at once), then abort as a second "
        "signal would; keep it under the scheduler's own grace (Kubernetes: 30s)", "SECONDS",
        UPLOADS, OUTPUT)] = 20.0
    progress_interval: Annotated[Seconds, Field(gt=0), Opt(
        "when stderr is not a terminal, a progress line this often", "SECONDS", API,
        OUTPUT)] = 10.0

    # --- metrics ---------------------------------------------------------------------------
    #: Prometheus metrics: served on this port during a run (0: any free port), on
    #: ``metrics_host`` (loopback unless widened), and/or written to ``metrics_textfile``.
    metrics_port: Annotated[int | None, Field(ge=0, le=65535), Opt(
        "serve Prometheus metrics at http://HOST:PORT/metrics while the run lasts (0: any "
        "free port, logged)", "PORT", UPLOADS, METRICS)] = None
    metrics_host: Annotated[str, Opt(
        "address for --metrics-port (this machine only by default; 0.0.0.0 to be scraped "
        "from elsewhere, e.g. in a pod)", "HOST", UPLOADS, METRICS)] = "127.0.0.1"
    metrics_linger: Annotated[Seconds, Field(ge=0), Opt(
        "after the run, keep --metrics-port's endpoint up until it is scraped once more "
        "(its final counts), at most SECONDS", "SECONDS", UPLOADS, METRICS)] = 0.0
    metrics_textfile: Annotated[Path | None, Opt(
        "write the same metrics to FILE (name it *.prom) every 15 s and at the end of the "
        "run, whole, for node_exporter's textfile collector (cron jobs)", "FILE", UPLOADS,
        METRICS)] = None

    @model_validator(mode="before")
    @classmethod
    def _read_files(cls, data: Any) -> Any:
        return with_files(data)

    @model_validator(mode="after")
    def _check(self) -> SettingFields:
        if not re.match(r"^https?://[^/\s]+", self.api_url):
            raise ValueError(f"api_url must be an http(s) URL such as {DEFAULT_API_URL}")
        if self.username and not self.password:
            raise ValueError("a username needs CONVIRZA_PASSWORD too")
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
        """``--max-errors`` as (limit, is_percent): ``100`` -> (100, False), ``5%`` ->
        (5, True); None when unlimited."""
        return self.max_errors

    @property
    def shard_of(self) -> tuple[int, int]:
        """(K, N) of ``--shard K/N``; (0, 1) when the run is not sharded."""
        return self.shard if self.shard is not None else (0, 1)

    @property
    def base_url(self) -> str:
        """The API root without a trailing slash; ``/v2/...`` and ``/oauth/token`` are appended."""
        return self.api_url.rstrip("/")

    @property
    def effective_queue_size(self) -> int:
        return self.queue_size or 2 * self.concurrency

    def secrets(self) -> list[str]:
        """Every secret value, so that log output can be scrubbed of them as a last defence."""
        secrets = (self.token, self.password, self.client_secret, self.url_header_value)
        return [v for s in secrets if s and len(v := s.get_secret_value()) >= 4]


def with_files(data: Any) -> Any:
    """The token file and the columns file are read when the settings are built, however they
    are built: ``Settings(columns_file=...)`` has the file's mapping, as a flag does."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    if data.get("token_file"):
        if data.get("token"):
            raise ValueError("give a token or a token file, not both")
        data["token"] = read_token_file(Path(data["token_file"]))
    if data.get("columns_file"):
        columns, defaults, values = read_columns_file(Path(data["columns_file"]))
        for name, entries in (("column_map", columns), ("defaults", defaults)):
            given = data.get(name)
            data[name] = {**entries, **(parse_assignments(given) if given else {})}
        given_maps = parse_value_maps(data["value_map"]) if data.get("value_map") else {}
        data["value_map"] = {field: {**values.get(field, {}), **given_maps.get(field, {})}
                             for field in {*values, *given_maps}}
    return data
