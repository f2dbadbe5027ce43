"""What the API's answers mean, as pure functions: status, headers and body in, a result or one
of our exceptions out. No I/O, so every status class and body shape is tested without a server.

Bodies we know (see the API notes): the current ``{"statusCode", "message", "error",
"requestId"}`` (``message`` may be a list, NestJS style), the older ``{"result": "error",
"err"}`` (sometimes with HTTP 200), and swagger-tools' ``{"message", "errors": [...]}``.

Only the API's own answer counts as success (``NotTheApi`` otherwise): a redirect is never
followed (a 307 would carry the audio and the token to another host, a 302 would turn the upload
into a GET whose 200 says nothing), and a 2xx is the API's only with a body the API writes:
none, or JSON. A captive portal's or a proxy's HTML page is not an upload's success.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from ..errors import (
    ApiError,
    AuthError,
    NotTheApi,
    RateLimited,
    RequestRejected,
    RequestTimeout,
    ServerError,
    TransportError,
    UnexpectedAnswer,
)

#: The V2 lookups answer an empty result with this error string (API notes, section 4).
NO_RECORDS = "no records found."


@dataclass(frozen=True)
class UploadAnswer:
    """A successful upload: the API returns no call id, only (perhaps) a request id."""

    status: int
    request_id: str | None


@dataclass(frozen=True)
class Token:
    """An access token and how many seconds it lives; ``repr`` never shows the value."""

    value: str
    expires_in: float

    def __repr__(self) -> str:
        return f"Token(expires_in={self.expires_in})"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _json(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def error_message(data: Any, fallback: str) -> str:
    """The most useful human text in an error body, whatever its shape."""
    if not isinstance(data, dict):
        return fallback
    parts: list[str] = []
    message = data.get("message")
    if isinstance(message, list):
        parts.extend(str(m) for m in message)
    elif message:
        parts.append(str(message))
    for key in ("details", "errors"):
        items = data.get(key)
        if isinstance(items, list):
            parts.extend(str(i.get("message", i)) if isinstance(i, dict) else str(i)
                         for i in items)
    for key in ("err", "error_description"):
        if data.get(key):
            parts.append(str(data[key]))
    return ": ".join(dict.fromkeys(parts)) if parts else fallback


def request_id_of(data: Any, headers: Mapping[str, str]) -> str | None:
    if isinstance(data, dict):
        for key in ("requestId", "request_id"):
            if data.get(key):
                return str(data[key])
    return _header(headers, "x-request-id")


def not_the_api(status: int, headers: Mapping[str, str], body: bytes) -> NotTheApi | None:
    """``NotTheApi`` for a redirect, or a 2xx whose body the API would not write (anything
    but nothing or JSON); None for an answer that may be the API's."""
    if 300 <= status < 400:
        where = _header(headers, "location")
        return NotTheApi("a redirect" + (f" to {where}" if where else "") + ", never followed "
                         "(it would take the request, its body and the token elsewhere); check "
                         "--api-url (the API's root, such as https://apicfa.convirza.com)",
                         status=status)
    if 200 <= status < 300 and body.strip() and _json(body) is None:
        kind = (_header(headers, "content-type") or "no content type").split(";")[0].strip()
        return NotTheApi(f"{kind} ({_glimpse(body)}), not an answer of the API (a proxy, a "
                         "captive portal or a wrong --api-url)", status=status)
    return None


def _glimpse(body: bytes) -> str:
    """A few words of a foreign answer, for the error message: an HTML page's title, or the
    start of its text, without markup or control characters."""
    text = body[:4096].decode("utf-8", errors="replace")
    match = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
    text = match.group(1) if match else re.sub(r"<[^>]*>", " ", text)
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def interpret_upload(status: int, headers: Mapping[str, str], body: bytes,
                     now: datetime | None = None) -> UploadAnswer:
    """An ``UploadAnswer`` for a success, else the ``ApiError`` subclass that fits."""
    foreign = not_the_api(status, headers, body)
    if foreign is not None:
        raise foreign
    data = _json(body)
    request_id = request_id_of(data, headers)
    if 200 <= status < 300:
        if isinstance(data, dict) and str(data.get("result", "")).lower() == "error":
            raise RequestRejected(error_message(data, "the API answered result=error"),
                                  status=status, request_id=request_id)
        return UploadAnswer(status=status, request_id=request_id)
    raise error_for(status, headers, data, now)


def error_for(status: int, headers: Mapping[str, str], data: Any,
              now: datetime | None = None) -> ApiError:
    """The exception for a non-2xx answer (shared by uploads, logins and lookups)."""
    request_id = request_id_of(data, headers)
    reason = error_message(data, _REASONS.get(status, "error"))
    if status in (401, 403):
        return AuthError(reason, status=status, request_id=request_id)
    if status == 408:
        return RequestTimeout(reason, status=status, request_id=request_id, outcome_unknown=True)
    if status == 429:
        return RateLimited(reason, status=status, request_id=request_id,
                           retry_after=parse_retry_after(_header(headers, "retry-after"), now))
    if status >= 500:
        return ServerError(reason, status=status, request_id=request_id,
                           retry_after=parse_retry_after(_header(headers, "retry-after"), now),
                           outcome_unknown=True)
    if 400 <= status < 500:
        return RequestRejected(reason, status=status, request_id=request_id)
    return TransportError(f"unexpected HTTP status {status}", status=status,
                          request_id=request_id, outcome_unknown=True)


def interpret_lookup(status: int, headers: Mapping[str, str], body: bytes,
                     now: datetime | None = None) -> list[dict[str, Any]]:
    """The ``data`` items of a V2 ``{"result", "err", "data"}`` envelope; the error
    ``"no records found."`` is an empty list, whatever the HTTP status that carries it."""
    foreign = not_the_api(status, headers, body)
    if foreign is not None:
        raise foreign
    data = _json(body)
    envelope = isinstance(data, dict) and "result" in data
    if envelope and str(data.get("err") or "").strip().lower() == NO_RECORDS:
        return []
    if not 200 <= status < 300:
        raise error_for(status, headers, data, now)
    if not envelope:
        raise UnexpectedAnswer("the answer is not a {result, err, data} envelope",
                               status=status, request_id=request_id_of(data, headers))
    if str(data.get("result")).lower() != "success":
        raise RequestRejected(error_message(data, "the API answered result=error"),
                              status=status, request_id=request_id_of(data, headers))
    items = data.get("data")
    if items is None:
        return []
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise UnexpectedAnswer("the envelope's data is not a list of objects", status=status)
    return items


def interpret_token(status: int, headers: Mapping[str, str], body: bytes) -> Token:
    """The access token from ``POST /oauth/token``; a refusal is an ``AuthError``. Whatever
    else goes wrong, the login sent no recording: its errors never leave an upload's outcome
    unknown (``outcome_unknown`` is false)."""
    foreign = not_the_api(status, headers, body)
    if foreign is not None:
        raise foreign
    data = _json(body)
    if status in (200, 201) and isinstance(data, dict):
        token = data.get("access_token")
        if isinstance(token, str) and token:
            try:
                expires_in = float(data.get("expires_in", 3600))
            except (TypeError, ValueError):
                expires_in = 3600.0
            return Token(token, expires_in)
        raise TransportError("the token endpoint answered without an access_token", status=status)
    if status in (400, 401, 403):
        reason = error_message(data, "credentials refused")
        raise AuthError(f"login refused: {reason}",
                        status=status, request_id=request_id_of(data, headers))
    error = error_for(status, headers, data)
    error.outcome_unknown = False
    raise error


_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    408: "Request Timeout", 413: "Payload Too Large", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}
