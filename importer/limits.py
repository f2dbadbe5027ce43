"""How fast and how often: the shared rate limiter and the retry policy.

No I/O here and no real clock: ``clock`` and ``sleep`` are parameters (defaulting to the event
loop's), so tests drive time by hand and never wait.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType

from .errors import ApiError

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def loop_time() -> float:
    return asyncio.get_running_loop().time()


class RateLimiter:
    """At most ``rate`` requests per second over all workers, in bursts of at most ``burst``.

    Each caller reserves the next free slot (a virtual schedule, as in GCRA) and sleeps until
    it, so waiters leave in order, evenly spaced, and nothing polls. ``pause_until`` holds every
    caller, including those already asleep, until a moment the API named (429 Retry-After);
    they then leave one slot apart, not all at once. Usage::

        limiter = RateLimiter(rate=5)
        async with limiter:
            await send()
    """

    def __init__(self, rate: float, burst: int = 1, *, clock: Clock | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock or loop_time
        self._sleep = sleep
        self._next = float("-inf")  # theoretical arrival time of the next request
        self._paused_until = float("-inf")

    async def acquire(self) -> None:
        while True:
            now = self._clock()
            if self._paused_until > now:
                await self._sleep(self._paused_until - now)
                continue
            interval = 1.0 / self.rate
            slot = max(self._next, now)
            self._next = slot + interval
            wait = slot - (self.burst - 1) * interval - now
            if wait > 0:
                await self._sleep(wait)
            if self._paused_until <= self._clock():
                return
            # A pause began while we slept: our slot is void, queue again after it.

    def pause_until(self, moment: float) -> None:
        """Hold every request until ``moment`` (on this limiter's clock)."""
        if moment > self._paused_until:
            self._paused_until = moment
            self._next = max(self._next, moment)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        return None


@dataclass(frozen=True)
class Attempt:
    """What a retry decision looks at: which attempt just ended, and how."""

    number: int
    error: ApiError | None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; Retry-After wins when the API gives one.

    ``decide`` returns the seconds to wait before the next attempt, or None to give up.
    """

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 60.0
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def decide(self, attempt: Attempt) -> float | None:
        error = attempt.error
        if error is None or not error.retryable or attempt.number >= self.max_attempts:
            return None
        if error.retry_after is not None:
            return min(max(float(error.retry_after), 0.0), self.cap * 10)
        ceiling = min(self.cap, self.base * 2.0 ** (attempt.number - 1))
        return float(ceiling * self.rand())
