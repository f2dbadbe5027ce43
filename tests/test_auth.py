"""Token handling over a long run: renewal before expiry, single-flight, a refused login is
not retried, and never more than 10 logins a minute. Virtual time, no server."""

from __future__ import annotations

import asyncio

import pytest

from importer.auth import PasswordLogin, StaticToken
from importer.errors import AuthError
from importer.responses import Token

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
