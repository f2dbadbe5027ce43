"""How fast and how often: the shared rate limiter and the retry policy.

No I/O here and no real clock: ``clock`` and ``sleep`` are parameters (defaulting to the event
loop's), so tests drive time by hand and never wait.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

from ..errors import ApiError, Stopped

log = logging.getLogger("importer.limits")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


def loop_time() -> float:
    return asyncio.get_running_loop().time()


class RateLimiter:
    """At most ``rate`` requests per second over all workers, in bursts of at most ``burst``,
    slowing down when the API says so and coming back gradually.

    Each caller reserves the next free slot (a virtual schedule, as in GCRA) and sleeps until
    it, so waiters leave in order, evenly spaced, and nothing polls. ``pause_until`` holds every
    caller, including those already asleep, until a moment the API named (429 Retry-After);
    they then leave one slot apart, not all at once.

    Adaptive rate (AIMD): ``throttled()`` (a 429) cuts the rate to ``decrease`` times the
    lower of the current rate and the rate of successes since the last pause (or halves it
    when there were too few to measure), and remembers that level as a ceiling; the rate then
    grows back additively, quickly up to the ceiling and slowly above it, toward ``target``
    (the user's ``--rate``), so that the limit is probed rarely and a 429 stays an exception.
    Usage::

        limiter = RateLimiter(rate=5)
        async with limiter:
            await send()
        limiter.succeeded()   # or limiter.throttled(retry_after) on a 429
    """

    #: Additive increase, as shares of the target per second: below and above the ceiling.
    FAST_RECOVERY = 0.10
    SLOW_RECOVERY = 0.001
    #: Successes counted to estimate the rate the API currently accepts.
    WINDOW = 2.0

    def __init__(self, rate: float, burst: int = 1, *, clock: Clock | None = None,
                 sleep: Sleep = asyncio.sleep, decrease: float = 0.9,
                 min_rate: float | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.target = rate
        self.rate = rate
        self.burst = burst
        self.decrease = decrease
        self.min_rate = min_rate if min_rate is not None else min(rate, 0.1)
        self.throttles = 0
        self._clock = clock or loop_time
        self._sleep = sleep
        self._next = float("-inf")  # theoretical arrival time of the next request
        self._paused_until = float("-inf")
        self._ceiling = rate
        self._grown_at: float | None = None
        self._successes: deque[float] = deque()
        self._tokens = float(burst)
        self._refilled_at = 0.0
        self._stopped = False
        self._naps: set[asyncio.Future[None]] = set()

    def stop(self) -> None:
        """Every wait ends now, and every later ``acquire`` too, with ``Stopped``: after a stop
        request nothing waits for its turn (its row stays pending), so that a stop ends the
        run within the time of the requests already on the wire, not of the queue."""
        self._stopped = True
        for nap in list(self._naps):
            nap.cancel()

    async def _nap(self, seconds: float) -> None:
        """``sleep(seconds)``, cut short by ``stop`` (``Stopped``)."""
        if self._stopped:
            raise Stopped()
        nap = asyncio.ensure_future(self._sleep(seconds))
        self._naps.add(nap)
        try:
            await nap
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._stopped and (task is None or not task.cancelling()):
                raise Stopped() from None
            raise
        finally:
            self._naps.discard(nap)

    async def acquire(self) -> None:
        if self._stopped:
            raise Stopped()
        while True:
            now = self._clock()
            if self._paused_until > now:
                await self._nap(self._paused_until - now)
                continue
            self._grow(now)
            interval = 1.0 / self.rate
            slot = max(self._next, now)
            self._next = slot + interval
            wait = slot - (self.burst - 1) * interval - now
            if wait > 0:
                await self._nap(wait)
            if await self._spaced(interval):
                return
            # A pause began while we slept: our slot is void, queue again after it.

    async def _spaced(self, interval: float) -> bool:
        """Keep the rate as sent, not only as scheduled: when the event loop stalls, every
        waiter wakes late, and without this check all of them would go at once, a burst the
        server would refuse. A token bucket over actual sends (``burst`` tokens, refilled at
        the rate) lets through exactly what a server's bucket of that size would accept.
        False if a pause began meanwhile."""
        while True:
            now = self._clock()
            if self._paused_until > now:
                return False
            self._tokens = min(float(self.burst),
                               self._tokens + (now - self._refilled_at) / interval)
            self._refilled_at = now
            if self._tokens >= 1.0 - 1e-9:  # float sums of refills fall a hair short
                self._tokens = max(0.0, self._tokens - 1.0)
                return True
            await self._nap((1.0 - self._tokens) * interval)

    def pause_until(self, moment: float) -> None:
        """Hold every request until ``moment`` (on this limiter's clock)."""
        if moment > self._paused_until:
            self._paused_until = moment
            self._next = max(self._next, moment)

    def succeeded(self) -> None:
        """A request went through: counts toward the rate the API is seen to accept."""
        now = self._clock()
        self._successes.append(now)
        while self._successes and self._successes[0] < now - self.WINDOW:
            self._successes.popleft()

    def throttled(self, retry_after: float | None, backoff: float) -> float:
        """A 429: hold everyone for ``retry_after`` (or ``backoff`` when the API named no
        time) and slow down, once per pause however many requests were refused in it.
        Returns the pause in seconds."""
        now = self._clock()
        pause = retry_after if retry_after is not None else backoff
        if self._paused_until <= now:  # the first 429 of this episode
            self.throttles += 1
            seen = self._accepted_rate(now)
            if seen is not None:  # settle just under what the API was seen to accept
                level = min(self.rate, seen)
                self.rate = max(self.min_rate, level * self.decrease)
                self._ceiling = max(self.min_rate, level * (1 + self.decrease) / 2)
            else:  # no measure yet: halve, as AIMD does, and probe slowly from there
                self.rate = self._ceiling = max(self.min_rate, self.rate / 2)
            self._grown_at = None
            self._successes.clear()  # a rate measured across the pause would read too low
            log.info("the API is throttling: %.2f requests/s for now (accepted lately: %s), "
                     "back toward %.2f gradually", self.rate,
                     f"{seen:.2f}/s" if seen is not None else "unknown", self.target)
        self.pause_until(now + pause)
        return pause

    def _accepted_rate(self, now: float) -> float | None:
        recent = [t for t in self._successes if t >= now - self.WINDOW]
        if len(recent) < 5 or recent[-1] - recent[0] < 0.5:
            return None
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def _grow(self, now: float) -> None:
        if self.rate >= self.target:
            return
        if self._grown_at is None:
            self._grown_at = now
            return
        elapsed = now - self._grown_at
        self._grown_at = now
        share = self.FAST_RECOVERY if self.rate < self._ceiling else self.SLOW_RECOVERY
        self.rate = min(self.target, self.rate + share * self.target * elapsed)

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


async def retrying(send: Callable[[], Awaitable[T]], policy: RetryPolicy, *, pause: Sleep,
                   on_error: Callable[[ApiError, int, float | None], Awaitable[T | None]]
                   | None = None) -> T:
    """The one retry loop, for uploads and lookups alike: ``send()`` makes one attempt; after
    an ``ApiError``, ``policy`` says how long to wait before the next (None: give up), and
    ``on_error(error, attempt number, that wait)`` may end the loop with a value of its own
    (an upload's outcome found out another way) or return None to let the policy decide: the
    error is raised when it gives up, else ``pause`` waits and ``send`` goes again."""
    number = 0
    while True:
        number += 1
        try:
            return await send()
        except ApiError as exc:
            delay = policy.decide(Attempt(number, exc))
            if on_error is not None and (result := await on_error(exc, number, delay)) \
                    is not None:
                return result
            if delay is None:
                raise
            await pause(delay)
