"""Where the bearer token comes from, and keeping one valid over a run of many hours.

Either a fixed token (``CONVIRZA_TOKEN`` or ``--token-file``), or a login with the OAuth2
password grant that is renewed before it expires, once for all workers. The login itself is a
function handed in by the client, so this module does no I/O and is tested with a fake clock.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from ..errors import AuthError
from .limits import Clock, Sleep, loop_time
from .responses import Token

#: The token endpoint allows 10 requests a minute per IP; we never come near it.
LOGINS_PER_MINUTE = 10
#: A token refused within this long of the login that asked for it (and within half its
#: lifetime) cannot have expired: its refusal is a refusal of the credentials.
FRESH_SECONDS = 60.0
#: Renewals after a refused token before the refusal is taken as final.
RENEWALS = 2
T = TypeVar("T")


class TokenProvider(Protocol):
    """Hands out the current token; ``renew`` is called after a 401 with the token that failed."""

    credential: str  # names the credential in error messages, never its value

    async def token(self) -> str: ...

    async def renew(self, failed: str) -> str: ...

    def surely_valid(self, token: str) -> bool:
        """Whether ``token`` cannot have expired yet, so that a 401 for it is a refusal."""
        ...


async def authorized(auth: TokenProvider, send: Callable[[str], Awaitable[T]]) -> T:
    """``send(token)``, and again with a renewed token when the API answers 401. A renewed
    token refused in its turn is a refusal of the credentials only when it was surely valid
    (asked for moments before, by a process that did not stand still meanwhile); a token that
    arrived old, because the process was stopped during its login (a laptop asleep, a VM
    paused), is renewed once more."""
    token = await auth.token()
    renewals = 0
    while True:
        try:
            return await send(token)
        except AuthError as exc:
            if exc.status != 401:
                raise
            if renewals and (auth.surely_valid(token) or renewals >= RENEWALS):
                raise AuthError(f"{exc.message}: the API refused {auth.credential} even after "
                                "a renewal", status=exc.status,
                                request_id=exc.request_id) from exc
        token = await auth.renew(token)
        renewals += 1


class StaticToken:
    """A token given by the user: nothing can renew it, so a 401 is final."""

    def __init__(self, value: str, credential: str) -> None:
        self._value = value
        self.credential = credential

    async def token(self) -> str:
        return self._value

    async def renew(self, failed: str) -> str:
        raise AuthError(f"the API refused the token from {self.credential}", status=401)

    def surely_valid(self, token: str) -> bool:
        return True

    def __repr__(self) -> str:
        return f"StaticToken(credential={self.credential!r})"


class PasswordLogin:
    """Tokens from the password grant, renewed ``margin`` seconds before they expire.

    One lock makes renewal single-flight: a hundred workers that see the token expire cause
    one login, not a hundred. Logins are spaced to stay under the endpoint's own limit.
    """

    def __init__(self, login: Callable[[], Awaitable[Token]], credential: str, *,
                 margin: float = 120.0, clock: Clock | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        self._login = login
        self.credential = credential
        self._margin = margin
        self._clock = clock or loop_time
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._value: str | None = None
        self._expires_at = float("-inf")
        #: When the current token was asked for, and its lifetime as the server gave it.
        self._asked_at = float("-inf")
        self._lifetime = 0.0
        self._logins: deque[float] = deque(maxlen=LOGINS_PER_MINUTE)
        self._refused: AuthError | None = None
        self.login_count = 0

    async def token(self) -> str:
        if self._value is not None and self._clock() < self._expires_at:
            return self._value
        return await self._refresh(stale=self._value)

    async def renew(self, failed: str) -> str:
        return await self._refresh(stale=failed)

    async def _refresh(self, stale: str | None) -> str:
        async with self._lock:
            if self._refused is not None:
                raise self._refused  # the same login would be refused again: do not retry it
            if self._value is not None and self._value != stale \
                    and self._clock() < self._expires_at:
                return self._value  # another worker renewed it while we waited
            if len(self._logins) == LOGINS_PER_MINUTE:
                wait = self._logins[0] + 60.0 - self._clock()
                if wait > 0:
                    await self._sleep(wait)
            asked = self._clock()
            self._logins.append(asked)
            try:
                token = await self._login()
            except AuthError as exc:
                self._refused = exc
                raise
            self.login_count += 1
            self._value = token.value
            # Its life counts from the asking: the server may have issued it long before the
            # answer came (the process stood still during the login).
            lifetime = max(token.expires_in - self._margin, token.expires_in / 2)
            self._asked_at, self._lifetime = asked, token.expires_in
            self._expires_at = asked + lifetime
            return token.value

    def surely_valid(self, token: str) -> bool:
        """The current token, asked for moments ago (within a minute and half its life, on
        the monotonic clock): if the process stood still since, more time passed and it may
        have expired."""
        return token == self._value and \
            self._clock() - self._asked_at < min(FRESH_SECONDS, self._lifetime / 2)

    def __repr__(self) -> str:
        return f"PasswordLogin(credential={self.credential!r})"
