"""A Convirza-compatible API server for tests and the demo (aiohttp.web, loopback by default).

It follows ../shared/api/NOTES.md: ``POST /oauth/token`` (password grant, form or JSON, tokens
that expire, 10 logins a minute per IP), bearer auth on ``/v2/*`` (401 JSON), and
``POST /v2/call/upload`` reading the multipart body as a stream (the file is hashed chunk by
chunk, never held whole), answering 200 with no body, or 400 with
``{"statusCode", "message", "error", "requestId"}``. The notes do not say whether the API
details its validation failures; the sandbox adds them as ``details`` (a GUESS, marked so).

The lookup endpoints (``lookups.py``) serve a seeded account (``seed.py``) and the calls
received. Faults for tests are switched on in ``Faults``: random 5xx, dropped connections,
latency, a rate limit, and what a wrong or broken server in front of the API does (redirects,
an HTML page with 200, error bodies that repeat the request's secrets, answers written in
pieces). Build with ``make_app(SandboxConfig(...))``; the received calls are in
``app[STORE]``, and ``app[STATE].received`` counts every request that reached the server, so a
sandbox used as a redirect's target shows whether anything followed the redirect.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import BodyPartReader, hdrs, web

from .disposition import parse_disposition
from .fetching import Fetched, fetch_recording_url
from .lookups import lookup
from .ratelimits import MODELS, Limit, Model, Scheduled, make
from .rules import FILE_FIELDS, audio_kind, check_fields
from .seed import Seed, default_seed
from .store import CallStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_TEXT_FIELD = 64 * 1024
LOGINS_PER_MINUTE = 10
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
#: The pause between the pieces of a split answer: long enough for a client's first read to
#: return with only the first piece.
SPLIT_PAUSE = 0.02


@dataclass
class Faults:
    """Failures to inject, reproducible with ``seed``.

    ``redirect_to``, ``html_200``, ``echo_secrets`` and ``split_answers`` stand for what can
    answer in the API's place, badly or slowly (a moved host, a captive portal, a careless
    server, a slow proxy), so tests can show that the importer takes none of it for the API's
    answer, reads answers whole and leaks no secret through them. They apply to the API's
    routes (``/v2/*`` and ``/oauth/token``), never to the sandbox's own ``/_sandbox/*``.
    """

    fail_rate: float = 0.0       # share of uploads answered 500 before anything is stored
    call_list_fail_rate: float = 0.0  # share of GET /v2/call/list (call lookups) answered 500
    call_list_fail_after: int = 0  # call lookups answered 500 once this many were answered
    ambiguous_rate: float = 0.0  # share of uploads stored, then answered 500 anyway
    lost_answer_rate: float = 0.0  # share of uploads stored, then the connection dropped
    reset_rate: float = 0.0      # share of uploads whose connection is dropped, nothing stored
    latency: float = 0.0         # seconds added to every /v2 answer
    rate_limit: float = 0.0      # /v2 requests a second; over it: 429 with Retry-After
    rate_burst: int = 0          # the bucket's size; 0: a fifth of a second's worth, at least 2
    rate_model: Model = "bucket"  # how the limit is kept: bucket, sliding or fixed window
    # The limit over time: (seconds since the first /v2 request, requests a second), in order;
    # empty: rate_limit throughout.
    rate_schedule: tuple[tuple[float, float], ...] = ()
    seed: int | None = None
    # Every API request answered redirect_status with Location: redirect_to + its path and
    # query, before anything is read, checked, counted (logins, rate limit) or stored.
    redirect_to: str | None = None
    redirect_status: int = 302
    html_200: bool = False       # every API request answered 200 with nginx's welcome page
    # Error answers (status >= 400, JSON) repeat the request's headers, Authorization verbatim
    # and in base64, and the token endpoint's refusals its raw body (the password with it).
    echo_secrets: bool = False
    split_answers: int = 0       # JSON answers written in this many flushed pieces (0: whole)
    login_error: int = 0         # the token endpoint answers this status (e.g. 500); 0: off

    def __post_init__(self) -> None:
        if self.redirect_status not in REDIRECT_STATUSES:
            raise ValueError(f"redirect_status must be one of {REDIRECT_STATUSES}, "
                             f"not {self.redirect_status}")
        if self.redirect_to is not None and not self.redirect_to.startswith(
                ("http://", "https://")):
            raise ValueError(f"redirect_to must be an http(s) URL, not {self.redirect_to!r}")
        if self.rate_model not in MODELS:
            raise ValueError(f"rate_model must be one of {', '.join(MODELS)}, "
                             f"not {self.rate_model!r}")
        if self.split_answers < 0 or self.split_answers == 1:
            raise ValueError(f"split_answers must be 0 (off) or at least 2, "
                             f"not {self.split_answers}")


@dataclass
class SandboxConfig:
    users: dict[str, str] = field(default_factory=lambda: {"demo@example.com": "demo-password"})
    client_id: str = "system"
    client_secret: str | None = None  # None: any secret is taken
    static_tokens: frozenset[str] = frozenset()
    token_ttl: float = 3600.0
    max_file_size: int = 50_000_000
    login_limit: bool = True
    store_path: str = ":memory:"
    #: Fetch each recording_url (loopback only) as Convirza would, and record what came.
    fetch_urls: bool = False
    faults: Faults = field(default_factory=Faults)
    seed: Seed = field(default_factory=default_seed)


@dataclass
class SandboxState:
    """Counters tests read to check the client's manners."""

    uploads: int = 0
    logins: int = 0
    refused_logins: int = 0
    unauthorized: int = 0
    throttled: int = 0        # answered 429
    early: int = 0            # arrived before the Retry-After we gave had passed
    login_times: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    arrivals: list[float] = field(default_factory=list)  # monotonic times of /v2 requests
    call_lists: int = 0  # GET /v2/call/list requests (call lookups) that reached the faults
    # Every request that reached the server, on any route (a 404 or 405 too), before any fault
    # answered it; only the sandbox's own /_sandbox/* routes are left out.
    received: int = 0
    received_log: deque[str] = field(default_factory=lambda: deque(maxlen=1000))  # "GET /path?q"
    limit: Limit | None = None  # the rate limit as kept (made at the first /v2 request)
    retry_at: float = 0.0     # the moment our last 429 told clients to come back


CONFIG = web.AppKey("config", SandboxConfig)
STORE = web.AppKey("store", CallStore)
STATE = web.AppKey("state", SandboxState)
TOKENS = web.AppKey("tokens", dict)
RNG = web.AppKey("rng", random.Random)


def _error(status: int, message: str, error: str, request_id: str,
           details: list[str] | None = None) -> web.Response:
    body: dict[str, Any] = {"statusCode": status, "message": message, "error": error,
                            "requestId": request_id}
    if details:
        body["details"] = details  # GUESS: the real API's body may not itemize problems
    return web.json_response(body, status=status)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _is_api(request: web.Request) -> bool:
    """The API's own routes, the ones faults apply to (not the sandbox's ``/_sandbox/*``)."""
    return request.path.startswith("/v2/") or request.path == "/oauth/token"


@web.middleware
async def count_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request before anything can answer it (a fault, a 404), so that a sandbox
    standing as a redirect's target shows whether a client followed the redirect."""
    if not request.path.startswith("/_sandbox/"):
        state = request.app[STATE]
        state.received += 1
        state.received_log.append(f"{request.method} {request.raw_path}")
    return await handler(request)


NGINX_WELCOME = """<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>
<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""


def _nginx_status_page(status: HTTPStatus) -> str:
    """The page nginx itself sends with a redirect, so the answer looks like the real thing."""
    title = f"{status.value} {status.phrase}"
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n")


@web.middleware
async def front_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Another server in the API's place: a redirect (a moved host, an http-to-https hop) or a
    200 HTML page (a captive portal, a default site). It answers before the body is read, so
    nothing is stored, no login counted and no rate limit spent: whatever the client makes of
    the answer, the API never saw the request."""
    faults = request.app[CONFIG].faults
    if not _is_api(request):
        return await handler(request)
    if faults.redirect_to:
        status = HTTPStatus(faults.redirect_status)
        location = faults.redirect_to.rstrip("/") + request.raw_path
        return web.Response(status=status.value, text=_nginx_status_page(status),
                            content_type="text/html", headers={"Location": location})
    if faults.html_200:
        return web.Response(status=200, text=NGINX_WELCOME, content_type="text/html")
    return await handler(request)


def _echo(request: web.Request) -> str:
    """The request's headers as a careless server logs them into its answer: verbatim, and the
    Authorization value once more in base64."""
    text = "request headers: " + ", ".join(f"{k}: {v}" for k, v in request.headers.items())
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        encoded = base64.b64encode(authorization.encode("utf-8", "surrogateescape"))
        text += f"; authorization (base64): {encoded.decode('ascii')}"
    return text


@web.middleware
async def echo_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Error answers that repeat the request's secrets, for tests of the importer's scrubbing:
    the headers go into ``message`` (and ``err`` when the body has one), and the token
    endpoint's raw body, the password URL-encoded in it, into ``error_description``."""
    if not request.app[CONFIG].faults.echo_secrets or not _is_api(request):
        return await handler(request)
    login = await request.read() if request.path == "/oauth/token" else None  # kept for post()
    response = await handler(request)
    if (not isinstance(response, web.Response) or response.status < 400
            or response.content_type != "application/json"
            or not isinstance(response.body, bytes)):
        return response
    body = json.loads(response.body)
    if not isinstance(body, dict):
        return response
    echo = _echo(request)
    body["message"] = f"{body['message']} | {echo}" if "message" in body else echo
    if isinstance(body.get("err"), str):
        body["err"] += f" | {echo}"
    if login is not None:
        said = f"{body['error_description']} | " if body.get("error_description") else ""
        body["error_description"] = (f"{said}request body: {login.decode('utf-8', 'replace')}"
                                     f" | {echo}")
    response.body = json.dumps(body).encode()
    return response


@web.middleware
async def split_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON answers written in ``split_answers`` flushed pieces with a pause between them, as
    a slow proxy or a long network delivers them, so that a client reading the body with one
    ``content.read(n)`` gets only the first piece. Status and headers stay as they were,
    Content-Length included."""
    pieces = request.app[CONFIG].faults.split_answers
    response = await handler(request)
    if (pieces < 2 or not _is_api(request) or not isinstance(response, web.Response)
            or response.prepared or response.content_type != "application/json"
            or not isinstance(response.body, bytes) or not response.body):
        return response
    body = response.body
    stream = web.StreamResponse(status=response.status, reason=response.reason,
                                headers=response.headers)
    stream.content_length = len(body)
    await stream.prepare(request)
    count = min(pieces, len(body))
    for i in range(count):
        if i:
            await asyncio.sleep(SPLIT_PAUSE)
        await stream.write(body[len(body) * i // count:len(body) * (i + 1) // count])
    await stream.write_eof()
    return stream


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v2/"):
        return await handler(request)
    app = request.app
    token = _bearer(request)
    expires = app[TOKENS].get(token) if token else None
    valid = token in app[CONFIG].static_tokens or (expires is not None and expires > time.time())
    if not valid:
        app[STATE].unauthorized += 1
        return _error(401, "Unauthorized", "Unauthorized", str(uuid.uuid4()))
    return await handler(request)


#: In-flight requests sent before the client could see our 429 are not counted as early.
EARLY_GRACE = 0.25


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    faults = request.app[CONFIG].faults
    if not request.path.startswith("/v2/"):
        return await handler(request)
    state = request.app[STATE]
    now = time.monotonic()
    state.arrivals.append(now)
    if faults.rate_limit or faults.rate_schedule:
        refused = _over_limit(state, faults, now)
        if refused is not None:
            return refused
    if faults.latency:
        await asyncio.sleep(faults.latency)
    if request.path == "/v2/call/list" and _lookup_fails(request.app, faults, state):
        return _error(500, "Internal server error", "Internal Server Error", str(uuid.uuid4()))
    return await handler(request)


def _lookup_fails(app: web.Application, faults: Faults, state: SandboxState) -> bool:
    """Whether this call lookup is answered 500 (an outage of the lookups alone)."""
    state.call_lists += 1
    if faults.call_list_fail_after and state.call_lists > faults.call_list_fail_after:
        return True
    return bool(faults.call_list_fail_rate) and app[RNG].random() < faults.call_list_fail_rate


def _over_limit(state: SandboxState, faults: Faults, now: float) -> web.Response | None:
    """The rate limit as ``faults.rate_model`` keeps it (``ratelimits``); a 429 with a
    whole-second Retry-After when over it, and a count of clients that came back before it
    had passed."""
    limit = state.limit
    if limit is None:
        rate = faults.rate_limit or faults.rate_schedule[0][1]
        kept = make(faults.rate_model, rate, faults.rate_burst)
        limit = state.limit = Scheduled(kept, faults.rate_schedule) \
            if faults.rate_schedule else kept
    early = now < state.retry_at - EARLY_GRACE
    if early:
        state.early += 1
    wait = limit.admit(now) if not early else max(1, math.ceil(state.retry_at - now))
    if wait is None:
        return None
    state.throttled += 1
    state.retry_at = max(state.retry_at, now + wait)
    response = _error(429, "Too Many Requests", "Too Many Requests", str(uuid.uuid4()))
    response.headers["Retry-After"] = str(wait)
    return response


async def stats_handler(request: web.Request) -> web.Response:
    """Sandbox-only: what the server saw, for benchmarks in another process."""
    state = request.app[STATE]
    body: dict[str, Any] = {"uploads": state.uploads, "throttled": state.throttled,
                            "early": state.early, "logins": state.logins,
                            "requests": len(state.arrivals), "received": state.received,
                            "call_lists": state.call_lists}
    if "arrivals" in request.query:
        body["arrivals"] = state.arrivals
    if "received" in request.query:
        body["received_log"] = list(state.received_log)
    return web.json_response(body)


async def token_handler(request: web.Request) -> web.Response:
    app = request.app
    cfg, state = app[CONFIG], app[STATE]
    now = time.time()
    if cfg.login_limit:
        recent = [t for t in state.login_times if t > now - 60]
        if len(recent) >= LOGINS_PER_MINUTE:
            return web.json_response({"error": "too_many_requests",
                                      "error_description": "10 token requests per minute"},
                                     status=429, headers={"Retry-After": "60"})
    state.login_times.append(now)
    if cfg.faults.login_error:
        await request.read()
        return _error(cfg.faults.login_error, "Internal server error", "Login failed",
                      str(uuid.uuid4()))
    if request.content_type == "application/json":
        try:
            form = {k: str(v) for k, v in (await request.json()).items()}
        except (ValueError, AttributeError):
            form = {}
    else:
        form = {k: str(v) for k, v in (await request.post()).items()}
    ok = (form.get("grant_type") == "password" and form.get("client_id") == cfg.client_id
          and (cfg.client_secret is None or form.get("client_secret") == cfg.client_secret)
          and form.get("username") in cfg.users
          and cfg.users[form.get("username", "")] == form.get("password"))
    if not ok:
        state.refused_logins += 1
        return web.json_response({"error": "invalid_grant",
                                  "error_description": "Invalid resource owner credentials"},
                                 status=401)
    state.logins += 1
    access = str(uuid.uuid4())
    app[TOKENS][access] = now + cfg.token_ttl
    return web.json_response({"access_token": access, "refresh_token": str(uuid.uuid4()),
                              "expires_in": int(cfg.token_ttl), "status": "success",
                              "token_type": "Bearer"})


async def upload_handler(request: web.Request) -> web.Response:
    app = request.app
    cfg = app[CONFIG]
    request_id = str(uuid.uuid4())
    if cfg.faults.fail_rate and app[RNG].random() < cfg.faults.fail_rate:
        await request.read()
        return _error(500, "Internal server error", "Internal Server Error", request_id)
    if cfg.faults.reset_rate and app[RNG].random() < cfg.faults.reset_rate:
        if request.transport is not None:
            request.transport.abort()  # no answer, nothing stored
        raise ConnectionResetError("sandbox: connection dropped on purpose")
    if request.content_type != "multipart/form-data":
        return _error(400, "Validation failed", "Bad Request", request_id,
                      [f"the body must be multipart/form-data, not {request.content_type}"])
    fields: dict[str, str] = {}
    problems: list[str] = []
    file_name: str | None = None
    file_size = 0
    digest = hashlib.sha256()
    head = b""
    files = 0
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            problems.append("nested or unnamed multipart part")
            continue
        # The name and file name as sent (RFC 7578), not as aiohttp's reader would retell them.
        disposition = parse_disposition(part.headers.get(hdrs.CONTENT_DISPOSITION))
        name = disposition.name
        if not name:
            problems.append("nested or unnamed multipart part")
            continue
        if name in FILE_FIELDS and disposition.filename is not None:
            files += 1
            file_name = disposition.filename
            while chunk := await part.read_chunk(1 << 16):
                if len(head) < 12:
                    head += chunk[: 12 - len(head)]
                file_size += len(chunk)
                if file_size > cfg.max_file_size:
                    return _error(413, "File too large", "Payload Too Large", request_id,
                                  [f"recording_file is over {cfg.max_file_size} bytes"])
                digest.update(chunk)
            continue
        raw = await part.read(decode=True)
        if len(raw) > MAX_TEXT_FIELD:
            problems.append(f"Invalid parameter ({name}): value too long")
            continue
        if name in fields:
            problems.append(f"Invalid parameter ({name}): sent more than once")
        fields[name] = raw.decode("utf-8", errors="replace")
    if files > 1:
        problems.append("only one recording_file may be sent")
    problems.extend(check_fields(fields, has_file=files > 0))
    problems.extend(_check_references(cfg.seed, fields))
    if files and file_size == 0:
        problems.append("Failed to upload File . Please enter call recording file.")
    elif files and audio_kind(head) is None:
        problems.append("Invalid audio format.")
    got = await fetch_recording_url(fields["recording_url"], cfg.max_file_size) \
        if cfg.fetch_urls and not files and not problems and "recording_url" in fields else None
    if isinstance(got, str):
        problems.append(got)
    if problems:
        return _error(400, "Validation failed", "Bad Request", request_id, problems)
    if isinstance(got, Fetched):  # the bytes the URL served stand for the file part
        app[STORE].add(request_id, fields, got.name, got.size, got.sha256)
    else:
        app[STORE].add(request_id, fields, file_name, file_size if files else None,
                       digest.hexdigest() if files else None)
    app[STATE].uploads += 1
    faults = cfg.faults
    if faults.ambiguous_rate and app[RNG].random() < faults.ambiguous_rate:
        return _error(500, "Internal server error", "Internal Server Error", request_id)
    if faults.lost_answer_rate and app[RNG].random() < faults.lost_answer_rate:
        if request.transport is not None:
            request.transport.abort()  # stored, but the client never hears of it
        raise ConnectionResetError("sandbox: answer lost on purpose")
    return web.Response(status=200)


def _check_references(seed: Seed, fields: dict[str, str]) -> list[str]:
    """Ids must name things this account has (messages from the QA suite)."""
    problems = []
    known = {name: {str(row.get(key)) for row in seed[resource]}
             for name, resource, key in (("group_id", "groups", "group_id"),
                                         ("campaign_id", "campaigns", "campaign_id"),
                                         ("channel_id", "channels", "channel_id"))}
    group = fields.get("group_id")
    if group and group.isdigit() and group not in known["group_id"]:
        problems.append("You are unauthorized for this group.")
    campaign = fields.get("campaign_id")
    if campaign and campaign.isdigit() and campaign not in known["campaign_id"]:
        problems.append("Invalid campaign id")
    channel = fields.get("channel_id")
    if channel and channel.isdigit() and channel not in known["channel_id"]:
        problems.append("Invalid channel id")
    return problems


def _add_lookups(app: web.Application, seed: Seed) -> None:
    def seeded(name: str, drop: tuple[str, ...] = ()) -> Callable[[web.Request], list[Any]]:
        return lambda request: [{k: v for k, v in row.items() if k not in drop}
                                for row in seed[name]]

    def custom_sources(request: web.Request) -> list[dict[str, Any]]:
        ou = request.query.get("ouId")
        return [r for r in seed["custom_sources"] if ou is None or str(r["org_unit_id"]) == ou]

    def calls(request: web.Request) -> list[dict[str, Any]]:
        return request.app[STORE].call_records()

    group_cols = frozenset({"group_id", "group_ext_id", "group_name", "group_parent_id",
                            "top_group_id", "group_status"})
    campaign_cols = frozenset({"campaign_id", "campaign_ext_id", "campaign_name", "group_id",
                               "campaign_status"})
    call_cols = frozenset({"call_id", "external_id", "group_id", "campaign_id", "channel_id",
                           "call_started", "caller_id", "tracking_number", "ring_to",
                           "disposition"})
    flow_cols = frozenset({"call_flow_id", "campaign_id", "group_id", "channel",
                           "tracking_number"})
    get = app.router.add_get
    get("/v2/group/list", lookup(seeded("groups"), group_cols))
    get("/v2/group", lookup(seeded("groups"), group_cols, "group_id"))
    get("/v2/campaign/list", lookup(seeded("campaigns", ("users",)), campaign_cols))
    get("/v2/campaign", lookup(seeded("campaigns", ("users",)), campaign_cols, "campaign_id"))
    get("/v2/campaign/user", lookup(seeded("campaigns"), campaign_cols))
    get("/v2/customsource", lookup(custom_sources,
                                   frozenset({"custom_source_id", "custom_source_name"})))
    get("/v2/callflow", lookup(seeded("callflows"), flow_cols))
    get("/v2/channel/list", lookup(seeded("channels"),  # GUESS: path not in the notes
                                   frozenset({"channel_id", "channel_name"})))
    get("/v2/number/search", lookup(seeded("numbers"),
                                    frozenset({"number", "number_status", "group_id"})))
    get("/v2/call/list", lookup(calls, call_cols))
    get("/v2/call", lookup(calls, call_cols, "call_id"))
    get("/v2/call/detail", lookup(calls, call_cols))


def make_app(config: SandboxConfig | None = None) -> web.Application:
    """The sandbox as an aiohttp application, for ``aiohttp_server`` or ``web.AppRunner``."""
    cfg = config or SandboxConfig()
    # Outermost first: every request is counted, a front may answer in the API's place, and
    # the API's answers are then echoed into and split on their way out.
    app = web.Application(middlewares=[count_middleware, front_middleware, split_middleware,
                                       echo_middleware, fault_middleware, auth_middleware],
                          client_max_size=cfg.max_file_size + (1 << 20))
    app[CONFIG] = cfg
    app[STORE] = CallStore(cfg.store_path)
    app[STATE] = SandboxState()
    app[TOKENS] = {}
    app[RNG] = random.Random(cfg.faults.seed)
    app.router.add_post("/oauth/token", token_handler)
    app.router.add_post("/v2/call/upload", upload_handler)
    app.router.add_get("/_sandbox/stats", stats_handler)
    _add_lookups(app, cfg.seed)

    async def close_store(app: web.Application) -> None:
        app[STORE].close()

    app.on_cleanup.append(close_store)
    return app


async def start(config: SandboxConfig | None = None, host: str = "127.0.0.1",
                port: int = 0) -> tuple[web.AppRunner, str]:
    """Start the sandbox on ``host:port`` (0: a free port); returns the runner and base URL."""
    app = make_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, f"http://{host}:{bound}"


async def serve_forever(config: SandboxConfig, host: str, port: int,
                        announce: Callable[[str], None]) -> None:
    """Run until cancelled (Ctrl-C); ``announce`` gets the base URL once listening."""
    runner, url = await start(config, host, port)
    announce(url)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()

