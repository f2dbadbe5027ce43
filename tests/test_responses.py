"""The pure interpretation of API answers: every status class and every body shape we know,
with no server."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import pytest

from importer.client.responses import (
    interpret_lookup,
    interpret_token,
    interpret_upload,
    parse_retry_after,
)
from importer.errors import (
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

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
CURRENT_400 = json.dumps({"statusCode": 400, "message": "Validation failed",
                          "error": "Bad Request", "requestId": "req-1"}).encode()
NEST_400 = json.dumps({"statusCode": 400, "message": ["ring_to must be 10 digits"],
                       "error": "Bad Request", "requestId": "req-2"}).encode()
NGINX = (b"<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>"
         b"<h1>Welcome to nginx!</h1></body></html>\n")
LEGACY_ERR = json.dumps({"result": "error", "err": "Invalid channel id"}).encode()
SWAGGER_400 = json.dumps({"message": "Validation errors", "errors": [
    {"code": "INVALID_REQUEST_PARAMETER",
     "message": "Invalid parameter (group_id): Expected type integer but found type string"}]
}).encode()


@pytest.mark.parametrize(("status", "body"), [
    (200, b""),
    (201, b""),
    (200, b'{"result": "success", "err": null}'),
    (200, b"  \r\n"),
])
def test_successes(status: int, body: bytes) -> None:
    answer = interpret_upload(status, {}, body)
    assert answer.status == status


def test_success_keeps_a_request_id_header() -> None:
    assert interpret_upload(200, {"X-Request-Id": "abc"}, b"").request_id == "abc"


@pytest.mark.parametrize(("status", "headers", "body", "kind", "retryable", "unknown", "text"), [
    (200, {}, LEGACY_ERR, RequestRejected, False, False, "Invalid channel id"),
    (400, {}, CURRENT_400, RequestRejected, False, False, "Validation failed"),
    (400, {}, NEST_400, RequestRejected, False, False, "ring_to must be 10 digits"),
    (400, {}, SWAGGER_400, RequestRejected, False, False, "Expected type integer"),
    (404, {}, b"", RequestRejected, False, False, "Not Found"),
    (413, {}, b"", RequestRejected, False, False, "Payload Too Large"),
    (401, {}, b"", AuthError, False, False, "Unauthorized"),
    (403, {}, LEGACY_ERR, AuthError, False, False, "Invalid channel id"),
    (408, {}, b"", RequestTimeout, True, True, "Request Timeout"),
    (429, {"Retry-After": "7"}, b"", RateLimited, True, False, "Too Many Requests"),
    (500, {}, b"not json", ServerError, True, True, "Internal Server Error"),
    (502, {}, b"", ServerError, True, True, "Bad Gateway"),
    (503, {"retry-after": "2"}, b"", ServerError, True, True, "Service Unavailable"),
    (504, {}, b"", ServerError, True, True, "Gateway Timeout"),
    (302, {"Location": "https://elsewhere.test/up"}, b"", NotTheApi, False, False,
     "redirect to https://elsewhere.test/up, never followed"),
    (307, {}, b"", NotTheApi, False, False, "HTTP 307 a redirect, never followed"),
    (200, {"Content-Type": "text/html"}, NGINX, NotTheApi, False, False,
     "text/html ('Welcome to nginx!'), not an answer of the API"),
    (201, {}, b"OK", NotTheApi, False, False, "no content type ('OK')"),
])
def test_errors(status: int, headers: dict[str, str], body: bytes, kind: type[ApiError],
                retryable: bool, unknown: bool, text: str) -> None:
    with pytest.raises(kind) as caught:
        interpret_upload(status, headers, body, now=NOW)
    exc = caught.value
    assert type(exc) is kind
    assert exc.retryable is retryable
    assert exc.outcome_unknown is unknown
    assert exc.status == status
    assert text in str(exc)


@pytest.mark.parametrize("interpret", [interpret_upload, interpret_lookup, interpret_token])
def test_no_answer_of_ours_takes_a_redirect_or_a_page_for_the_api(
        interpret: Callable[[int, Mapping[str, str], bytes], object]) -> None:
    """Uploads, lookups and logins alike: only the API's own answer counts."""
    for status, headers, body in ((301, {"Location": "/x"}, b""), (308, {}, b""),
                                  (200, {"Content-Type": "text/html"}, NGINX)):
        with pytest.raises(NotTheApi):
            interpret(status, headers, body)


def test_a_failed_login_never_leaves_an_upload_in_doubt() -> None:
    """A token endpoint that answers 500 or cuts its answer sent no recording."""
    with pytest.raises(ServerError) as caught:
        interpret_token(500, {}, b"")
    assert caught.value.outcome_unknown is False and caught.value.retryable


def test_request_id_and_retry_after_are_attributes() -> None:
    with pytest.raises(RequestRejected) as caught:
        interpret_upload(400, {}, CURRENT_400)
    assert caught.value.request_id == "req-1"
    with pytest.raises(RateLimited) as limited:
        interpret_upload(429, {"Retry-After": "7"}, b"")
    assert limited.value.retry_after == 7.0
    with pytest.raises(ServerError) as unavailable:
        interpret_upload(503, {"Retry-After": "2"}, b"")
    assert unavailable.value.retry_after == 2.0


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0),
    (" 0 ", 0.0),
    ("1.5", 1.5),
    ("-3", 0.0),
    ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0),
    ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),
    ("soon", None),
    ("", None),
    (None, None),
])
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_token_answers() -> None:
    body = json.dumps({"access_token": "abc-123", "refresh_token": "r", "expires_in": 3600,
                       "status": "success", "token_type": "Bearer"}).encode()
    token = interpret_token(200, {}, body)
    assert (token.value, token.expires_in) == ("abc-123", 3600.0)
    assert "abc-123" not in repr(token)
    assert interpret_token(201, {}, body).value == "abc-123"


@pytest.mark.parametrize(("status", "body", "kind"), [
    (401, b'{"error": "invalid_grant", "error_description": "Bad credentials"}', AuthError),
    (400, b"", AuthError),
    (200, b'{"status": "success"}', TransportError),
    (429, b"", RateLimited),
    (500, b"", ServerError),
])
def test_token_refusals(status: int, body: bytes, kind: type[ApiError]) -> None:
    with pytest.raises(kind):
        interpret_token(status, {}, body)


@pytest.mark.parametrize(("status", "body", "items"), [
    (200, {"result": "success", "err": None, "data": [{"a": 1}, {"a": 2}]}, [{"a": 1}, {"a": 2}]),
    (200, {"result": "success", "err": None, "data": {"a": 1}}, [{"a": 1}]),
    (200, {"result": "success", "err": None, "data": None}, []),
    (200, {"result": "error", "err": "no records found."}, []),
    (404, {"result": "error", "err": "No records found. "}, []),
])
def test_lookup_envelopes(status: int, body: dict[str, object],
                          items: list[dict[str, object]]) -> None:
    assert interpret_lookup(status, {}, json.dumps(body).encode()) == items


@pytest.mark.parametrize(("status", "body", "kind", "text"), [
    (400, {"result": "error", "err": "Invalid column specified in filter on rule 1 : x=1"},
     RequestRejected, "Invalid column"),
    (200, {"result": "error", "err": "Please provide valid data."}, RequestRejected,
     "valid data"),
    (400, {"message": "Validation errors", "errors": [
        {"message": "Invalid parameter (limit): Value -5 is less than minimum 1"}]},
     RequestRejected, "minimum 1"),
    (401, {}, AuthError, "Unauthorized"),
    (503, {}, ServerError, "Service Unavailable"),
    (200, [1, 2], UnexpectedAnswer, "envelope"),
    (200, {"result": "success", "data": [1]}, UnexpectedAnswer, "list of objects"),
])
def test_lookup_errors(status: int, body: object, kind: type[ApiError], text: str) -> None:
    with pytest.raises(kind, match=text):
        interpret_lookup(status, {}, json.dumps(body).encode())
