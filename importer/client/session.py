"""``ConvirzaClient``: the one place that speaks HTTP to Convirza.

It owns the run's single ``aiohttp.ClientSession``, the bearer token, and the shared rate
limiter, for uploads and lookups alike; it turns every aiohttp exception into one of ours
(``translate``) and leaves the meaning of answers to ``responses``. Callers never see aiohttp.
Lookups (``fetch``, ``iterate``, ``get_one``, ``find_calls``) retry transient failures here,
since a GET is safe to repeat; uploads are retried by the pipeline, which records each try.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from ..audio.info import AudioInfo
from ..audio.urls import UrlAnswer
from ..errors import (
    ApiError,
    AudioError,
    AuthError,
    NotTheApi,
    RateLimited,
    RequestTimeout,
    TransportError,
    UnexpectedAnswer,
    UsageError,
)
from ..events import UPLOAD_PATH, RequestEvent
from ..manifest.records import UploadRecord
from ..observers import NullObserver, Observer
from ..redact import Redactor
from ..settings.resolve import Settings
from .auth import PasswordLogin, StaticToken, TokenProvider, authorized
from .limits import RateLimiter, RetryPolicy, Sleep
from .lookups import LOOKUPS_AT_ONCE, THROTTLE_PAUSE, Lookups
from .objects import CheckedObject, presigned
from .payload import CheckedFile
from .responses import Token, UploadAnswer, interpret_token, interpret_upload

TOKEN_PATH = "/oauth/token"
#: Answers are read whole (a body can arrive in many pieces), up to this: a page of lookups
#: is far smaller, and a misbehaving server cannot fill memory.
MAX_ANSWER_BYTES = 8 << 20
#: No headers beyond the token's (a default argument that is never changed).
_NO_HEADERS: Mapping[str, str] = {}
T = TypeVar("T")


def _user_agent() -> str:
    try:
        return f"convirza-import/{version('convirza-import')}"
    except PackageNotFoundError:
        return "convirza-import"


def translate(exc: BaseException, *, body_sent: bool) -> ApiError:
    """Our exception for an aiohttp/OS/timeout failure. ``body_sent`` says whether the request
    may have reached the server, which decides if the outcome is unknown."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return RequestTimeout(f"connection timed out ({exc})", outcome_unknown=False)
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return RequestTimeout("no answer within the timeout", outcome_unknown=body_sent)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(f"cannot connect to {exc.host}:{exc.port} ({exc.os_error})",
                              outcome_unknown=False)
    if isinstance(exc, aiohttp.InvalidURL):
        return TransportError(f"invalid URL: {exc.url}", outcome_unknown=False)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportError("the server closed the connection without an answer",
                              outcome_unknown=body_sent)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError(f"the answer was cut short ({exc})", outcome_unknown=True)
    if isinstance(exc, aiohttp.ClientResponseError):
        return TransportError(f"unreadable answer: {exc.message}", status=exc.status or None,
                              outcome_unknown=True)
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return TransportError(f"{type(exc).__name__}: {exc}", outcome_unknown=body_sent)
    raise TypeError(f"no ApiError for {type(exc).__name__}") from exc


def require_credentials(s: Settings) -> None:
    """Refuse settings that give no credential (``UsageError``): asked before anything is
    created for a run (its ledger, the ledger's lock), which a run that cannot send must not
    leave behind."""
    if s.token is None and not (s.username and s.password is not None):
        raise UsageError("no credentials: set CONVIRZA_TOKEN (or --token-file), or "
                         "CONVIRZA_USERNAME and CONVIRZA_PASSWORD")


class ConvirzaClient(Lookups):
    """Async client for one run: ``async with ConvirzaClient(settings) as client: ...``."""

    def __init__(self, settings: Settings, *, limiter: RateLimiter | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.settings = settings
        self.limiter = limiter or RateLimiter(settings.rate, settings.burst)
        self.policy = RetryPolicy(settings.max_attempts, settings.backoff_base,
                                  settings.backoff_cap)
        self._sleep = sleep
        #: Blanks our secrets in what servers say back (an error that echoes the request).
        self.redact = Redactor(settings.secrets())
        self.auth = self._token_provider(settings)
        self._session: aiohttp.ClientSession | None = None
        self.observer: Observer = NullObserver()  # told of every request (the metrics)

    def _token_provider(self, s: Settings) -> TokenProvider:
        require_credentials(s)
        if s.token is not None:
            return StaticToken(s.token.get_secret_value(), s.credential_source())
        return PasswordLogin(self.login, f"the login of {s.username} "
                                         f"({s.credential_source()})")

    async def __aenter__(self) -> ConvirzaClient:
        s = self.settings
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=s.connect_timeout,
                                          sock_read=s.read_timeout),
            connector=aiohttp.TCPConnector(limit=max(s.concurrency, LOOKUPS_AT_ONCE) + 2),
            headers={"User-Agent": _user_agent()},
        )
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use ConvirzaClient as an async context manager")
        return self._session

    async def login(self) -> Token:
        """One password-grant login at ``/oauth/token``."""
        s = self.settings
        form = {"grant_type": "password", "client_id": s.client_id,
                "username": s.username or "",
                "password": s.password.get_secret_value() if s.password else ""}
        if s.client_secret is not None:
            form["client_secret"] = s.client_secret.get_secret_value()
        try:
            async with self.session.post(s.base_url + TOKEN_PATH, data=form,
                                         allow_redirects=False) as resp:
                body = await _read_body(resp)
                return interpret_token(resp.status, resp.headers, body)
        except NotTheApi as exc:
            raise _answered("POST", s.base_url + TOKEN_PATH, exc).redacted(self.redact) \
                from None
        except AuthError as exc:
            raise AuthError(f"the token endpoint refused {self.auth.credential} "
                            f"(client_id {s.client_id}): {exc.message}", status=exc.status,
                            request_id=exc.request_id).redacted(self.redact) from None
        except ApiError as exc:
            raise exc.redacted(self.redact) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise translate(exc, body_sent=False).redacted(self.redact) from exc

    async def _authorized(self, send: Callable[[str], Awaitable[T]]) -> T:
        """``send(token)``, and again with a renewed token if the API answers 401
        (``auth.authorized`` says how often)."""
        return await authorized(self.auth, send)

    def stop_waiting(self) -> None:
        """A stop request: requests waiting for their turn (the rate limiter, a 429's
        Retry-After) do not leave (``Stopped``); those on the wire go on."""
        self.limiter.stop()

    async def upload(self, record: UploadRecord, audio: AudioInfo | None) -> UploadAnswer:
        """Send one recording: one request, or two when a 401 makes us renew the token first.

        Each request builds its multipart body afresh from a newly opened file: a body that
        was half sent can never be sent again. Retries are the caller's, which records them.
        """
        return await self._authorized(lambda token: self._upload_once(record, audio, token))

    # --- lookups ----------------------------------------------------------------------

    def _paced(self, interpret: Callable[[int, Mapping[str, str], bytes], T], status: int,
               headers: Mapping[str, str], body: bytes) -> T:
        """Interpret an answer, and tell the limiter how it went: a success counts toward
        the rate the API accepts; a 429 pauses every request and slows the rate down."""
        try:
            result = interpret(status, headers, body)
        except RateLimited as exc:
            exc.retry_after = self.limiter.throttled(exc.retry_after, THROTTLE_PAUSE)
            raise
        self.limiter.succeeded()
        return result

    async def _upload_once(self, record: UploadRecord, audio: AudioInfo | None,
                           token: str) -> UploadAnswer:
        s = self.settings
        size = audio.size if audio else 0
        timeout = aiohttp.ClientTimeout(total=s.read_timeout + size / s.min_upload_rate,
                                        connect=s.connect_timeout, sock_read=s.read_timeout)
        fields = record.form_fields()
        if audio is not None:  # sent as a file (a URL fetched here too): no recording_url
            fields = [field for field in fields if field[0] != "recording_url"]
        if audio is not None and audio.source is not None and s.presign:
            fields, audio = await presigned(fields, audio.source, s.presign), None
        if audio is None or audio.data is not None:
            # A small file was read whole when it was checked: those bytes are the body,
            # built in one piece (no file to open again, no reads in a thread), unless the
            # file has changed since (the user may have replaced it: send neither version).
            if audio is not None and audio.source is None:  # an object: its ETag was read
                _unchanged(audio, _stat(audio))
            body, content_type = multipart_body(fields, s.file_field, audio)
            return await self._request("POST", UPLOAD_PATH, token, interpret_upload,
                                       data=body, timeout=timeout,
                                       extra_headers={"Content-Type": content_type})
        filename = form_filename(audio.path.name)
        part = CheckedObject(audio, audio.source, filename) if audio.source is not None else \
            CheckedFile(audio, await _open(audio), filename)
        try:
            # Names as RFC 7578 has them: UTF-8 in a quoted string, quotes and backslashes
            # escaped (aiohttp's default percent-encodes them: "Jos%C3%A9%20n.wav").
            form = aiohttp.FormData(default_to_multipart=True, quote_fields=False)
            for name, value in fields:
                form.add_field(name, value)
            form.add_field(s.file_field, part, filename=filename,
                           content_type=audio.content_type)
            try:
                return await self._request("POST", UPLOAD_PATH, token, interpret_upload,
                                           data=form, timeout=timeout)
            except ApiError:
                if part.changed is not None:  # we abandoned it: the API got no whole request
                    raise part.changed from None
                raise
        finally:
            part.finish()

    async def _request(self, method: str, path: str, token: str,
                       interpret: Callable[[int, Mapping[str, str], bytes], T],
                       extra_headers: Mapping[str, str] = _NO_HEADERS, **kwargs: Any) -> T:
        """One request through the limiter, its answer interpreted; every aiohttp failure
        comes out as one of ours, knowing whether the request may have reached the server."""
        sent = False
        status: int | None = None
        try:
            async with self.limiter:
                sent, began = True, time.monotonic()
                self.observer.request_started(method, path)
                async with self.session.request(
                        method, self.settings.base_url + path, allow_redirects=False,
                        headers={"Authorization": f"Bearer {token}", **extra_headers},
                        **kwargs) as resp:
                    status = resp.status
                    body = await _read_body(resp)
                    return self._paced(interpret, resp.status, resp.headers, body)
        except NotTheApi as exc:
            raise _answered(method, self.settings.base_url + path, exc).redacted(
                self.redact) from None
        except ApiError as exc:
            raise exc.redacted(self.redact) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise translate(exc, body_sent=sent).redacted(self.redact) from exc
        finally:
            if sent:
                self.observer.request_finished(RequestEvent(
                    method, path, status, time.monotonic() - began, self.limiter.rate,
                    self.limiter.pace.allowed))

    async def check_url(self, url: str) -> UrlAnswer:
        """Ask a ``recording_url``'s server what it would serve, without fetching it: a HEAD,
        or a one-byte ranged GET when HEAD is refused (403/405/501: presigned URLs are often
        signed for GET only). ``audio.judge_url_answer`` decides what the answer means.

        The request goes to the recording's host, not to the API: it carries no token and
        does not count against the API's rate limit.
        """
        s = self.settings
        timeout = aiohttp.ClientTimeout(total=s.connect_timeout + s.read_timeout,
                                        connect=s.connect_timeout)

        def answer(method: str, resp: aiohttp.ClientResponse) -> UrlAnswer:
            ctype = resp.headers.get("Content-Type")
            size = resp.content_length if resp.status == 200 else None
            total = resp.headers.get("Content-Range", "").rpartition("/")[2]
            if resp.status == 206 and total.isdigit():
                size = int(total)
            return UrlAnswer(method, resp.status,
                             ctype.split(";")[0].strip().lower() if ctype else None, size)

        try:
            async with self.session.head(url, timeout=timeout, allow_redirects=True) as resp:
                result = answer("HEAD", resp)
            if result.status in (403, 405, 501):
                async with self.session.get(url, timeout=timeout,
                                            headers={"Range": "bytes=0-0"}) as resp:
                    result = answer("GET", resp)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise translate(exc, body_sent=False) from exc
        return result


def _answered(method: str, url: str, exc: NotTheApi) -> NotTheApi:
    """``exc`` naming the request that met it: which URL, and what answered in the API's
    place."""
    return NotTheApi(f"{method} {url} was answered with {exc.message}", status=exc.status,
                     request_id=exc.request_id)


def multipart_body(fields: list[tuple[str, str]], file_field: str,
                   audio: AudioInfo | None) -> tuple[bytes, str]:
    """An upload's ``multipart/form-data`` body in one piece, and its Content-Type, for a file
    held in memory (or none: a ``recording_url`` row). As RFC 7578 has it: each field a part
    with its name, the file a part with its file name (UTF-8, quotes and backslashes escaped)
    and its type; a random boundary that no part contains."""
    data = audio.data if audio is not None and audio.data is not None else b""
    while True:
        boundary = uuid.uuid4().hex
        if boundary.encode() not in data:
            break
    dash = f"--{boundary}\r\n".encode()
    parts = [dash + f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
             + value.encode() + b"\r\n" for name, value in fields]
    if audio is not None:
        name = form_filename(audio.path.name).replace("\\", "\\\\").replace('"', '\\"')
        parts.append(dash + (f'Content-Disposition: form-data; name="{file_field}"; '
                             f'filename="{name}"\r\nContent-Type: {audio.content_type}\r\n\r\n'
                             ).encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def form_filename(name: str) -> str:
    """A file name for a multipart header: as it is, but for line breaks and other control
    characters, which would end the header (encoded as browsers do, ``%0A``)."""
    return "".join(f"%{ord(c):02X}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in name)


async def _read_body(resp: aiohttp.ClientResponse) -> bytes:
    """The whole body of an answer, however many pieces it arrives in, up to
    ``MAX_ANSWER_BYTES`` (over it, ``UnexpectedAnswer``)."""
    if resp.content_length is not None and resp.content_length > MAX_ANSWER_BYTES:
        raise UnexpectedAnswer(f"an answer of {resp.content_length:,} bytes, over the "
                               f"{MAX_ANSWER_BYTES:,} an answer of the API can be",
                               status=resp.status)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise UnexpectedAnswer(f"an answer of more than {MAX_ANSWER_BYTES:,} bytes, more "
                                   "than an answer of the API can be", status=resp.status)
        chunks.append(chunk)
    return b"".join(chunks)


async def _open(audio: AudioInfo) -> io.BufferedReader:
    """The file to send, opened anew for this attempt, after checking that it is still the file
    that was checked (size and mtime): a file emptied or replaced during a backoff is not sent
    as other bytes than those probed and hashed."""
    return await asyncio.to_thread(_open_checked, audio)


def _open_checked(audio: AudioInfo) -> io.BufferedReader:
    try:
        handle = audio.path.open("rb")
    except OSError as exc:
        raise AudioError(str(audio.path), f"cannot open for upload: {exc.strerror}") from None
    try:
        _unchanged(audio, os.fstat(handle.fileno()))
    except AudioError:
        handle.close()
        raise
    return handle


def _stat(audio: AudioInfo) -> os.stat_result:
    try:
        return os.stat(audio.path)
    except OSError as exc:
        raise AudioError(str(audio.path), f"cannot open for upload: {exc.strerror}") from None


def _unchanged(audio: AudioInfo, st: os.stat_result) -> None:
    """``AudioError`` when the file is no longer the one checked (size, mtime)."""
    if st.st_size != audio.size or (audio.mtime_ns and st.st_mtime_ns != audio.mtime_ns):
        change = f"{audio.size:,} bytes then, {st.st_size:,} now" \
            if st.st_size != audio.size else "modified since"
        raise AudioError(str(audio.path), f"changed since it was checked ({change}); not sent: "
                         "run again to check it anew")
