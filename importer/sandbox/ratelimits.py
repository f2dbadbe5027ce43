"""The API's rate limit, kept as a server might keep it. Convirza's own limiter is not known
(the API notes say nothing of it), so the sandbox offers the three that servers commonly use,
and a schedule for a limit that changes during a run (the account's other clients take their
share):

* ``bucket``: a token bucket of ``rate`` a second holding ``burst`` (nginx, most gateways);
* ``sliding``: at most ``rate`` requests in any window of one second (a log of arrivals);
* ``fixed``: at most ``rate`` requests in each whole second of the clock (a counter reset at
  each second: bursts of twice the limit pass across a boundary).

Each answers ``admit(now)``: None when the request may go on, else the seconds to put in a
429's ``Retry-After`` (whole seconds, at least one, as HTTP has them). Pure: ``now`` is handed
in, so tests drive them with a fake clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Protocol

Model = Literal["bucket", "sliding", "fixed"]
MODELS: tuple[Model, ...] = ("bucket", "sliding", "fixed")


class Limit(Protocol):
    @property
    def rate(self) -> float: ...

    def admit(self, now: float) -> int | None: ...


def _whole(seconds: float) -> int:
    return max(1, math.ceil(seconds - 1e-9))


@dataclass
class TokenBucket:
    rate: float
    burst: int = 0  # 0: a fifth of a second's worth, at least 2
    _tokens: float = -1.0
    _at: float = 0.0

    def admit(self, now: float) -> int | None:
        size = self.burst or max(2, math.ceil(self.rate / 5))
        if self._tokens < 0:
            self._tokens, self._at = float(size), now
        self._tokens = min(size, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        return _whole((1 - self._tokens) / self.rate)


@dataclass
class SlidingWindow:
    rate: float
    _seen: deque[float] = field(default_factory=deque)

    def admit(self, now: float) -> int | None:
        while self._seen and self._seen[0] <= now - 1.0:
            self._seen.popleft()
        if len(self._seen) < max(1, math.floor(self.rate)):
            self._seen.append(now)
            return None
        return _whole(self._seen[0] + 1.0 - now)


@dataclass
class FixedWindow:
    rate: float
    _second: int = -1
    _count: int = 0

    def admit(self, now: float) -> int | None:
        second = math.floor(now)
        if second != self._second:
            self._second, self._count = second, 0
        if self._count < max(1, math.floor(self.rate)):
            self._count += 1
            return None
        return _whole(second + 1 - now)


Kept = TokenBucket | SlidingWindow | FixedWindow


def make(model: Model, rate: float, burst: int = 0) -> Kept:
    if model == "bucket":
        return TokenBucket(rate, burst)
    if model == "sliding":
        return SlidingWindow(rate)
    return FixedWindow(rate)


def parse_schedule(text: str) -> tuple[tuple[float, float], ...]:
    """``"0:20,10:10,20:20"``: the limit is 20 a second from the first request, 10 from ten
    seconds later, 20 again from twenty (``ValueError`` for anything else)."""
    steps = []
    for part in text.split(","):
        at, sep, rate = part.strip().partition(":")
        try:
            steps.append((float(at), float(rate)))
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"expected SECONDS:RATE, got {part.strip()!r}")
    if not steps or any(r <= 0 or a < 0 for a, r in steps) or \
            [a for a, _ in steps] != sorted(a for a, _ in steps):
        raise ValueError("expected SECONDS:RATE pairs in order, with rates above 0")
    return tuple(steps)


@dataclass
class Scheduled:
    """A limit whose rate follows ``schedule`` (seconds since the first request, rate)."""

    limit: Kept
    schedule: tuple[tuple[float, float], ...]
    _start: float | None = None

    @property
    def rate(self) -> float:
        return self.limit.rate

    def admit(self, now: float) -> int | None:
        if self._start is None:
            self._start = now
        for at, rate in self.schedule:
            if now - self._start >= at:
                self.limit.rate = rate
        return self.limit.admit(now)
