"""Token handling over a long run: renewal before expiry, single-flight, a refused login is
not retried, and never more than 10 logins a minute. Virtual time, no server."""

from __future__ import annotations

import asyncio

import pytest

from importer.client.auth import PasswordLogin, StaticToken, authorized
from importer.client.responses import Token
from importer.errors import AuthError

from .helpers import FakeTime


class Logins:
    """Hands out token-1, token-2, ... and counts the calls."""

    def __init__(self, ttl: float = 3600.0, refuse: bool = False) -> None:
        self.calls = 0
        self.ttl = ttl
        self.refuse = refuse

    async def __call__(self) -> Token:
        self.calls += 1
        await asyncio.sleep(0)
        if self.refuse:
            raise AuthError("login refused: Bad credentials", status=401)
        return Token(f"token-{self.calls}", self.ttl)


async def test_one_login_serves_many_concurrent_workers() -> None:
    t = FakeTime()
    logins = Logins()
    auth = PasswordLogin(logins, "user", clock=t.clock, sleep=t.sleep)
    tokens = await asyncio.gather(*(auth.token() for _ in range(50)))
    assert set(tokens) == {"token-1"}
    assert logins.calls == 1


async def test_renewed_before_expiry() -> None:
    t = FakeTime()
    logins = Logins(ttl=3600)
    auth = PasswordLogin(logins, "user", margin=120, clock=t.clock, sleep=t.sleep)
    assert await auth.token() == "token-1"
    t.now = 3400.0
    assert await auth.token() == "token-1"
    t.now = 3481.0  # within the margin of expiry
    assert await auth.token() == "token-2"
    assert logins.calls == 2


async def test_renew_after_401_is_single_flight() -> None:
    t = FakeTime()
    logins = Logins()
    auth = PasswordLogin(logins, "user", clock=t.clock, sleep=t.sleep)
    stale = await auth.token()
    renewed = await asyncio.gather(*(auth.renew(stale) for _ in range(10)))
    assert set(renewed) == {"token-2"}
    assert logins.calls == 2


async def test_refused_login_is_not_tried_again() -> None:
    t = FakeTime()
    logins = Logins(refuse=True)
    auth = PasswordLogin(logins, "user", clock=t.clock, sleep=t.sleep)
    results = await asyncio.gather(*(auth.token() for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, AuthError) for r in results)
    assert logins.calls == 1


async def test_never_more_than_ten_logins_a_minute() -> None:
    t = FakeTime()
    times: list[float] = []

    async def login() -> Token:
        times.append(t.now)
        return Token(f"token-{len(times)}", 3600.0)

    auth = PasswordLogin(login, "user", clock=t.clock, sleep=t.sleep)

    async def go() -> None:
        for _ in range(25):  # every request refused: each renew forces a new login
            await auth.renew(await auth.token())

    await t.run(go())
    assert len(times) == 26
    for i in range(len(times)):
        window = [x for x in times if times[i] <= x < times[i] + 60]
        assert len(window) <= 10


async def test_static_token_cannot_be_renewed() -> None:
    auth = StaticToken("secret-value", "CONVIRZA_TOKEN")
    assert await auth.token() == "secret-value"
    with pytest.raises(AuthError) as caught:
        await auth.renew("secret-value")
    assert "CONVIRZA_TOKEN" in str(caught.value)
    assert "secret-value" not in str(caught.value) + repr(auth)


class Server:
    """The API's side of tokens: each lives ``ttl`` seconds from when the login issued it
    (on the fake clock); ``revoked`` ones are refused at once. A login may stall after the
    server issued its token (the process stopped: a laptop asleep, a VM paused)."""

    def __init__(self, t: FakeTime, ttl: float, stalls: list[float]) -> None:
        self.t = t
        self.ttl = ttl
        self.stalls = stalls
        self.issued: dict[str, float] = {}
        self.revoked: set[str] = set()
        self.refuse_all = False

    async def login(self) -> Token:
        name = f"token-{len(self.issued) + 1}"
        self.issued[name] = self.t.now
        stall = self.stalls.pop(0) if self.stalls else 0.0
        if stall:
            await self.t.sleep(stall)
        return Token(name, self.ttl)

    async def send(self, token: str) -> str:
        await self.t.sleep(0.01)
        if self.refuse_all or token in self.revoked or \
                self.t.now - self.issued[token] > self.ttl:
            raise AuthError("Unauthorized", status=401)
        return f"done with {token}"


async def test_a_renewal_whose_login_stalled_is_renewed_once_more() -> None:
    """The renewed token arrived after it had expired (the process stood still during the
    login): that is no refusal of the credentials, so the login is made once more."""
    t = FakeTime()
    server = Server(t, ttl=6.0, stalls=[0.0, 15.0, 0.0])
    auth = PasswordLogin(server.login, "CONVIRZA_USERNAME", clock=t.clock, sleep=t.sleep)
    server.revoked.add("token-1")

    [answer] = await t.run(authorized(auth, server.send))

    assert answer == "done with token-3"


async def test_a_fresh_renewed_token_refused_is_a_refusal_of_the_credentials() -> None:
    t = FakeTime()
    server = Server(t, ttl=3600.0, stalls=[])
    auth = PasswordLogin(server.login, "CONVIRZA_USERNAME", clock=t.clock, sleep=t.sleep)
    server.refuse_all = True

    with pytest.raises(AuthError, match="even after a renewal"):
        await t.run(authorized(auth, server.send))
    assert len(server.issued) == 2  # the first token and one renewal: no third login


async def test_a_token_is_taken_as_valid_from_when_it_was_asked_for() -> None:
    """A login that took 15 s (a stall) gave a token the server issued 15 s ago: its
    lifetime counts from the asking, so it is renewed before the server's clock runs out."""
    t = FakeTime()
    server = Server(t, ttl=20.0, stalls=[15.0])
    auth = PasswordLogin(server.login, "u", margin=0.0, clock=t.clock, sleep=t.sleep)
    await t.run(auth.token())
    t.now = 21.0  # 6 s after the login returned; 21 s after the server issued the token
    assert await auth.token() == "token-2"
