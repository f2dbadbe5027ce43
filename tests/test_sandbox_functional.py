"""The sandbox behaves as the API notes say, checked with a plain aiohttp client (not ours):
multipart only, bearer tokens that expire, the documented error body."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application

from importer.cli.commands import main
from importer.sandbox import STATE, STORE, Faults, SandboxConfig, make_app
from importer.sandbox.disposition import parse_disposition

from .conftest import SAMPLES, sha256_of

Client = TestClient  # type: ignore[type-arg]
MakeClient = Callable[[Application], Awaitable[Client]]
MakeServer = Callable[[Application], Awaitable[TestServer]]
AUTH = {"Authorization": "Bearer fixed"}
FIELDS = {"call_date": "2025-03-04T09:15:22-05:00", "group_id": "12", "caller_id": "6175550142"}


@pytest.fixture
async def client(aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(make_app(SandboxConfig(static_tokens=frozenset({"fixed"}),
                                                       max_file_size=200_000)))


def form(fields: dict[str, str], file: str | None = "call-0001-pcm8k.wav") -> FormData:
    data = FormData(default_to_multipart=True)
    for name, value in fields.items():
        data.add_field(name, value)
    if file:
        data.add_field("recording_file", (SAMPLES / file).open("rb"), filename=file,
                       content_type="audio/wav")
    return data


async def test_upload_is_stored_with_its_hash(client: Client) -> None:
    resp = await client.post("/v2/call/upload", data=form(FIELDS), headers=AUTH)
    assert resp.status == 200
    assert await resp.read() == b""
    [call] = client.app[STORE].calls()
    assert call.file_sha256 == sha256_of(SAMPLES / "call-0001-pcm8k.wav")
    assert call.fields == FIELDS


async def test_url_upload_without_a_file(client: Client) -> None:
    fields = {**FIELDS, "recording_url": "https://rec.example.com/a.mp3"}
    resp = await client.post("/v2/call/upload", data=form(fields, file=None), headers=AUTH)
    assert resp.status == 200


async def test_url_encoded_body_is_refused(client: Client) -> None:
    fields = {**FIELDS, "recording_url": "https://rec.example.com/a.mp3"}
    resp = await client.post("/v2/call/upload", data=fields, headers=AUTH)
    assert resp.status == 400
    body = await resp.json()
    assert body["message"] == "Validation failed" and body["statusCode"] == 400
    assert body["requestId"] and "multipart" in " ".join(body["details"])


@pytest.mark.parametrize(("fields", "file", "detail"), [
    ({**FIELDS, "colour": "red"}, "call-0001-pcm8k.wav", "property is not allowed"),
    ({k: v for k, v in FIELDS.items() if k != "group_id"}, "call-0001-pcm8k.wav",
     "(group_id): Value is required"),
    ({**FIELDS, "call_date": "2020-08-16T04:36:38.000"}, "call-0001-pcm8k.wav",
     "valid date and time"),
    ({**FIELDS, "ring_to": "123456789"}, "call-0001-pcm8k.wav", "valid ring to"),
    ({**FIELDS, "disposition": "ANS"}, "call-0001-pcm8k.wav", "Invalid disposition"),
    ({**FIELDS, "is_outbound": "yes"}, "call-0001-pcm8k.wav", "boolean"),
    (FIELDS, None, "call recording file"),
    (FIELDS, "call-0004-stereo16k.wav", None),  # over this sandbox's 200 kB: 413
])
async def test_validation_failures(client: Client, fields: dict[str, str], file: str | None,
                                   detail: str | None) -> None:
    resp = await client.post("/v2/call/upload", data=form(fields, file), headers=AUTH)
    body = await resp.json()
    if detail is None:
        assert resp.status == 413
    else:
        assert resp.status == 400
        assert any(detail in d for d in body["details"]), body
    assert set(body) >= {"statusCode", "message", "error", "requestId"}
    assert client.app[STORE].count() == 0


async def test_text_named_wav_is_refused(client: Client) -> None:
    data = FormData(default_to_multipart=True)
    for name, value in FIELDS.items():
        data.add_field(name, value)
    data.add_field("recording_file", b"just some text, honestly", filename="x.wav")
    resp = await client.post("/v2/call/upload", data=data, headers=AUTH)
    assert resp.status == 400
    assert "Invalid audio format." in (await resp.json())["details"]


@pytest.mark.parametrize("header", [{}, {"Authorization": "Bearer nope"},
                                    {"Authorization": "Basic fixed"}])
async def test_unauthorized(client: Client, header: dict[str, str]) -> None:
    resp = await client.post("/v2/call/upload", data=form(FIELDS), headers=header)
    assert resp.status == 401
    assert (await resp.json())["statusCode"] == 401


async def test_bearer_is_case_insensitive(client: Client) -> None:
    resp = await client.post("/v2/call/upload", data=form(FIELDS),
                             headers={"Authorization": "bearer fixed"})
    assert resp.status == 200


async def test_password_grant_tokens_expire(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(make_app(SandboxConfig(token_ttl=0.3)))
    login = {"grant_type": "password", "client_id": "system", "client_secret": "s",
             "username": "demo@example.com", "password": "demo-password"}
    resp = await client.post("/oauth/token", data=login)
    body = await resp.json()
    assert resp.status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 0
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await client.post("/v2/call/upload", data=form(FIELDS), headers=auth)).status == 200
    await asyncio.sleep(0.4)
    assert (await client.post("/v2/call/upload", data=form(FIELDS), headers=auth)).status == 401
    # JSON logins are accepted too; wrong passwords are not.
    assert (await client.post("/oauth/token", json=login)).status == 200
    bad = await client.post("/oauth/token", data={**login, "password": "x"})
    assert bad.status == 401


async def test_token_endpoint_allows_ten_a_minute(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(make_app(SandboxConfig()))
    statuses = [(await client.post("/oauth/token", data={"grant_type": "password"})).status
                for _ in range(12)]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]


async def test_fail_rate_is_reproducible(aiohttp_client: MakeClient) -> None:
    async def statuses() -> list[int]:
        config = SandboxConfig(static_tokens=frozenset({"fixed"}))
        config.faults.fail_rate, config.faults.seed = 0.5, 7
        client = await aiohttp_client(make_app(config))
        return [(await client.post("/v2/call/upload", data=form(FIELDS), headers=AUTH)).status
                for _ in range(12)]

    first, second = await statuses(), await statuses()
    assert first == second and {200, 500} == set(first)


async def test_errors_are_json_and_successes_have_no_body(client: Client) -> None:
    resp = await client.post("/v2/call/upload", data=b"x", headers=AUTH)
    assert resp.status == 400
    assert resp.content_type == "application/json"
    with pytest.raises(aiohttp.ContentTypeError):
        await (await client.post("/v2/call/upload", data=form(FIELDS), headers=AUTH)).json()


@pytest.mark.parametrize(("query", "code", "message"), [
    ("limit=-5", "MINIMUM", "Value -5 is less than minimum 1"),
    ("limit=abc", "INVALID_TYPE", "Expected type integer"),
    ("offset=-1", "MINIMUM", "less than minimum 0"),
])
async def test_paging_parameters_are_checked(client: Client, query: str, code: str,
                                             message: str) -> None:
    resp = await client.get(f"/v2/group/list?{query}", headers=AUTH)
    body = await resp.json()
    assert resp.status == 400 and body["message"] == "Validation errors"
    assert body["errors"][0]["errors"][0]["code"] == code
    assert message in body["errors"][0]["message"]


async def test_default_page_is_100_and_empty_is_an_error(client: Client) -> None:
    store = client.app[STORE]
    for n in range(130):
        store.add(f"r{n}", {"external_id": f"E{n}"}, None, None, None)
    first = await (await client.get("/v2/call/list", headers=AUTH)).json()
    assert first["result"] == "success" and len(first["data"]) == 100
    rest = await (await client.get("/v2/call/list?offset=100", headers=AUTH)).json()
    assert len(rest["data"]) == 30
    none = await (await client.get("/v2/call/list?offset=200", headers=AUTH)).json()
    assert none == {"result": "error", "err": "no records found.", "data": []}


async def test_unknown_group_is_refused_on_upload(client: Client) -> None:
    resp = await client.post("/v2/call/upload", data=form({**FIELDS, "group_id": "99"}),
                             headers=AUTH)
    assert resp.status == 400
    assert "You are unauthorized for this group." in (await resp.json())["details"]


BOUNDARY = b"sbx-7f3a9c"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"}


def raw_multipart(disposition: bytes) -> bytes:
    """An upload body built by hand, its file part's Content-Disposition exactly ``disposition``
    (bytes as they go on the wire), so no client library decides how a name is quoted."""
    crlf, boundary = b"\r\n", BOUNDARY
    body = b""
    for name, value in FIELDS.items():
        body += (b"--" + boundary + crlf
                 + b'Content-Disposition: form-data; name="' + name.encode() + b'"' + crlf + crlf
                 + value.encode() + crlf)
    body += (b"--" + boundary + crlf + b"Content-Disposition: " + disposition + crlf
             + b"Content-Type: audio/wav" + crlf + crlf
             + (SAMPLES / "call-0001-pcm8k.wav").read_bytes() + crlf)
    return body + b"--" + boundary + b"--" + crlf


@pytest.mark.parametrize(("sent", "stored"), [
    ('filename="Llamada José ñ.wav"'.encode(), "Llamada José ñ.wav"),  # raw UTF-8 bytes
    (b'filename="call recording 2024-05-01 0930.wav"', "call recording 2024-05-01 0930.wav"),
    (b'filename="a\\"b\\\\c.wav"', 'a"b\\c.wav'),  # quoted-pairs undone
    (b'filename="Llamada%20Jos%C3%A9.wav"', "Llamada%20Jos%C3%A9.wav"),  # not percent-decoded
    (b"filename=\"fallback.wav\"; filename*=UTF-8''Llamada%20Jos%C3%A9%20%C3%B1.wav",
     "Llamada José ñ.wav"),  # RFC 5987 wins over the plain form
    (b'filename="C:\\dir\\x.wav"', "C:\\dir\\x.wav"),  # unescaped backslashes, as browsers send
    (b'filename="/exports/x.wav"', "/exports/x.wav"),  # a leading slash kept (aiohttp drops it)
])
async def test_file_name_is_stored_as_sent(client: Client, sent: bytes, stored: str) -> None:
    resp = await client.post(
        "/v2/call/upload", data=raw_multipart(b'form-data; name="recording_file"; ' + sent),
        headers={**AUTH, **MULTIPART})
    assert resp.status == 200, await resp.text()
    [call] = client.app[STORE].calls()
    assert call.file_name == stored
    assert call.file_sha256 == sha256_of(SAMPLES / "call-0001-pcm8k.wav")
    listed = await (await client.get("/v2/call/list", headers=AUTH)).json()
    assert listed["data"][0]["recording_file_name"] == stored


def test_file_names_decoded_as_latin_1_are_read_as_utf_8() -> None:
    """Servers that decode header bytes as latin-1 (not aiohttp 3.14) end at the same text."""
    sent = 'form-data; name="recording_file"; filename="Llamada José ñ.wav"'.encode()
    assert parse_disposition(sent.decode("latin-1")).filename == "Llamada José ñ.wav"
    # Bytes that are not UTF-8 end as U+FFFD, not as surrogates SQLite would refuse.
    broken = b'form-data; name="recording_file"; filename="x\xff.wav"'
    assert parse_disposition(broken.decode("utf-8", "surrogateescape")).filename == "x\ufffd.wav"


def faulty(faults: Faults) -> Application:
    """A sandbox with these faults, that takes the token ``fixed``."""
    return make_app(SandboxConfig(static_tokens=frozenset({"fixed"}), faults=faults))


LOGIN = {"grant_type": "password", "client_id": "system", "client_secret": "s",
         "username": "demo@example.com", "password": "demo-password"}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_answers_before_anything_is_read(aiohttp_server: MakeServer,
                                                        status: int) -> None:
    target = await aiohttp_server(faulty(Faults()))
    front = await aiohttp_server(faulty(Faults(redirect_to=str(target.make_url("/")),
                                               redirect_status=status)))
    async with aiohttp.ClientSession(str(front.make_url(""))) as session:
        upload = await session.post("/v2/call/upload?probe=1&x=%20", data=raw_multipart(
            b'form-data; name="recording_file"; filename="x.wav"'),
            headers={**AUTH, **MULTIPART}, allow_redirects=False)
        login = await session.post("/oauth/token", data=LOGIN, allow_redirects=False)
        lookup = await session.get("/v2/group/list", allow_redirects=False)  # no token at all
    base = str(target.make_url(""))
    assert [r.status for r in (upload, login, lookup)] == [status] * 3
    assert upload.headers["Location"] == base + "/v2/call/upload?probe=1&x=%20"
    assert login.headers["Location"] == base + "/oauth/token"
    assert lookup.headers["Location"] == base + "/v2/group/list"
    state = front.app[STATE]
    assert front.app[STORE].count() == 0 and state.uploads == 0
    assert state.logins == state.refused_logins == 0 and not state.login_times
    assert state.unauthorized == 0 and not state.arrivals and state.received == 3
    assert target.app[STATE].received == 0  # nothing was followed


async def test_a_redirect_target_counts_every_request_it_receives(
        aiohttp_server: MakeServer) -> None:
    target = await aiohttp_server(faulty(Faults()))
    front = await aiohttp_server(faulty(Faults(redirect_to=str(target.make_url("")))))
    async with aiohttp.ClientSession(str(front.make_url(""))) as session:
        # A client that follows: the lookup arrives (without the token aiohttp drops on the
        # way to another origin), and the login's POST arrives as a GET the route refuses.
        followed = await session.get("/v2/group/list?limit=5", headers=AUTH)
        login = await session.post("/oauth/token", data=LOGIN)
    assert (followed.status, login.status) == (401, 405)
    state = target.app[STATE]
    assert state.received == 2 and state.logins == 0
    assert list(state.received_log) == ["GET /v2/group/list?limit=5", "GET /oauth/token"]
    async with aiohttp.ClientSession(str(target.make_url(""))) as session:
        assert (await session.get("/nowhere")).status == 404
        stats = await (await session.get("/_sandbox/stats?received=1")).json()
    assert stats["received"] == 3  # the 404 counts; the stats request itself does not
    assert stats["received_log"][-1] == "GET /nowhere"


async def test_html_200_stands_in_for_every_answer(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(faulty(Faults(html_200=True)))
    answers = [await client.post("/v2/call/upload", data=form(FIELDS), headers=AUTH),
               await client.post("/oauth/token", data=LOGIN),
               await client.get("/v2/group/list", headers=AUTH),
               await client.get("/v2/call/list")]  # no token: still the page
    for resp in answers:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "<title>Welcome to nginx!</title>" in await resp.text()
    state = client.app[STATE]
    assert client.app[STORE].count() == 0 and state.uploads == 0 and state.logins == 0
    assert state.received == 4


async def test_echoed_secrets_in_error_answers(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(faulty(Faults(echo_secrets=True)))

    def shows(text: str, authorization: str) -> bool:
        encoded = base64.b64encode(authorization.encode()).decode()
        return f"Authorization: {authorization}" in text and encoded in text

    refused = await client.post("/v2/call/upload", data=form(FIELDS),
                                headers={"Authorization": "Bearer wrong-s3cret-token"})
    body = await refused.json()
    assert refused.status == 401 and body["statusCode"] == 401
    assert body["message"].startswith("Unauthorized") and shows(body["message"],
                                                                "Bearer wrong-s3cret-token")
    invalid = await client.post("/v2/call/upload", data=form({**FIELDS, "ring_to": "1"}),
                                headers=AUTH)
    body = await invalid.json()
    assert invalid.status == 400 and shows(body["message"], "Bearer fixed") and body["details"]
    lookup = await client.get("/v2/group/list?filter=colour=red", headers=AUTH)
    body = await lookup.json()
    assert lookup.status == 400 and body["err"].startswith("Invalid column")
    assert shows(body["err"], "Bearer fixed") and shows(body["message"], "Bearer fixed")
    # The token endpoint's refusal repeats the login body byte for byte, URL-encoded.
    raw = ("grant_type=password&client_id=system&client_secret=cl%21ent"
           "&username=demo%40example.com&password=p%40ss+w%C3%B6rd%26x")
    login = await client.post("/oauth/token", data=raw.encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded", "Authorization": "Basic c3lz"})
    body = await login.json()
    assert login.status == 401 and body["error"] == "invalid_grant"
    assert f"request body: {raw}" in body["error_description"]
    assert shows(body["error_description"], "Basic c3lz") and shows(body["message"], "Basic c3lz")
    # Answers that are not errors repeat nothing.
    ok = await client.post("/oauth/token", data=LOGIN)
    assert ok.status == 200 and "message" not in await ok.json()


async def test_echoed_secrets_in_throttled_and_failed_answers(
        aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(faulty(Faults(echo_secrets=True, fail_rate=1.0,
                                                rate_limit=0.01, rate_burst=1)))
    failed = await client.post("/v2/call/upload", data=form(FIELDS), headers=AUTH)
    throttled = await client.post("/v2/call/upload", data=form(FIELDS), headers=AUTH)
    assert (failed.status, throttled.status) == (500, 429)
    for resp in (failed, throttled):
        assert "Authorization: Bearer fixed" in (await resp.json())["message"]
    assert throttled.headers["Retry-After"]


@pytest.mark.parametrize(("method", "path", "headers", "data", "status"), [
    ("GET", "/v2/group/list", AUTH, None, 200),
    ("GET", "/v2/call/list", AUTH, None, 200),  # "no records found."
    ("POST", "/v2/call/upload", AUTH, b"x", 400),
    ("GET", "/v2/group/list", {}, None, 401),
    ("POST", "/oauth/token", {}, {**LOGIN, "password": "x"}, 401),
])
async def test_split_answers_arrive_in_pieces(aiohttp_client: MakeClient, method: str,
                                              path: str, headers: dict[str, str],
                                              data: bytes | dict[str, str] | None,
                                              status: int) -> None:
    plain = await aiohttp_client(faulty(Faults()))
    split = await aiohttp_client(faulty(Faults(split_answers=10)))
    expected = await (await plain.request(method, path, headers=headers, data=data)).json()
    resp = await split.request(method, path, headers=headers, data=data)
    assert resp.status == status and resp.content_type == "application/json"
    first = await resp.content.readany()
    whole = first + await resp.read()
    assert 0 < len(first) < len(whole) == int(resp.headers["Content-Length"])
    answer = json.loads(whole)
    answer.pop("requestId", None)  # a fresh uuid in every error answer
    expected.pop("requestId", None)
    assert answer == expected


async def test_split_token_answers_still_log_in(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(faulty(Faults(split_answers=3)))
    resp = await client.post("/oauth/token", data=LOGIN)
    first = await resp.content.readany()
    body = json.loads(first + await resp.read())
    assert len(first) < int(resp.headers["Content-Length"])
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await client.get("/v2/group/list", headers=auth)).status == 200


@pytest.mark.parametrize("flags", [["--split-answers", "1"], ["--split-answers", "-2"],
                                   ["--redirect-to", "ftp://x"],
                                   ["--redirect-to", "apicfa.convirza.com"]])
def test_sandbox_refuses_nonsense_fault_flags(flags: list[str]) -> None:
    assert main(["sandbox", "--port", "0", *flags]) == 2
    with pytest.raises(ValueError, match="split_answers"):
        Faults(split_answers=1)
    with pytest.raises(ValueError, match="redirect_to"):
        Faults(redirect_to="apicfa.convirza.com")
