"""The pace the API allows, found from its 429s and held: what the rate limiter sends at.

Nobody knows Convirza's rate limit, so users ask for more than it allows (``--rate``), and a
429 with ``Retry-After`` is how the API says so. Every 429 costs the whole run the pause it
names, so the aim is to find the API's pace in an answer or two and then hold just under it,
probing upward rarely. Servers keep their limit in different ways (a token bucket, a sliding
or a fixed one-second window; the sandbox has all three, ``bench/pace.py`` measures each), and
one 429 says different things under each; what holds for all of them:

* **The measure.** After at least a second of sending without a pause, the successes of the
  last second are what the API allowed in a second: a window's limit exactly, a bucket's rate
  and what was left of its burst. After less (the run's first second, or a pause just ended),
  the successes since sending resumed are a window's whole allowance, but only a bucket's
  burst; half the rate just refused is the floor then, since that pace was clearly too much
  and a window that allowed less than half would have refused sooner.
* **The cut.** After a measure, 0.9 of it: a measured limit is where 429s begin, so the run
  keeps a margin against the jitter of arrivals. After a floor, the floor itself: it is a
  guess from below already.
* **The growth.** From the cut, the rate climbs back toward the pace measured along a cubic
  (as TCP's CUBIC does): quickly at first, then flat for ``PLATEAU`` seconds close under it,
  then, if no 429 came, faster and faster above it, so that a limit that rose (the account's
  other clients gone) is found again within a minute, and one that did not costs a pause
  every fifteen seconds or so.

Pure: times are handed in, so tests drive it on a fake clock against the sandbox's models.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..events import PaceFound

#: Share of a measured pace the run goes back to after a 429.
MARGIN = 0.9
#: Seconds the rate stays close under the pace found before probing above it.
PLATEAU = 15.0
#: Sending this long without a pause makes the last second's successes a measure.
MEASURE = 1.0
#: Above the pace found, the cubic climbs this many times faster than it came back under
#: it: a limit that rose is found within a minute, and one that did not is met as rarely.
ABOVE = 3.0


@dataclass
class Pace:
    """The rate to send at, ``rate``, between ``min_rate`` and ``target`` (the asked rate);
    ``allowed`` is the pace the API was last found to allow (None: it refused nothing)."""

    target: float
    min_rate: float
    rate: float = 0.0
    allowed: float | None = None
    #: Answers 429, and the pauses they caused (several 429s of one pause are one episode).
    refused: int = 0
    episodes: int = 0
    #: Where the rate came from at the start: the asked rate, or one remembered.
    remembered: float | None = None
    _since: float | None = None  # when sending last resumed (the start, or a pause's end)
    _cut_at: float | None = 0.0  # None: a remembered pace, held from the first send
    _floor: float = 0.0
    _successes: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.rate = self.rate or self.target

    def found(self) -> PaceFound:
        """What was learned, for the run's summary (and the ledger, for the next run)."""
        return PaceFound(self.target, self.allowed, self.refused, self.episodes,
                         self.remembered)

    def start_from(self, allowed: float) -> None:
        """Begin at a pace found before (a ledger remembers it), held as if just found."""
        if allowed < self.target:
            self.remembered = self.allowed = allowed
            self.rate = self._floor = max(self.min_rate, allowed * MARGIN)
            self._cut_at = None

    def succeeded(self, now: float) -> None:
        if self._since is None:
            self._since = now
        self._successes.append(now)
        while self._successes and self._successes[0] < now - 2 * MEASURE:
            self._successes.popleft()

    def refused_at(self, now: float, pause: float, first: bool) -> None:
        """A 429 at ``now`` that pauses every request for ``pause`` seconds; ``first``: the
        first 429 of this pause (the others change nothing but the count)."""
        self.refused += 1
        if not first:
            return
        self.episodes += 1
        since = self._since if self._since is not None else now
        if now - since >= MEASURE:
            measured = float(sum(1 for t in self._successes if t > now - MEASURE))
            self.allowed = max(self.min_rate, min(self.rate, measured))
            self.rate = self.allowed * MARGIN
        else:
            resumed = float(sum(1 for t in self._successes if t >= since))
            floor = self.rate / 2
            self.allowed = max(self.min_rate, min(self.rate, max(resumed, floor)))
            self.rate = self.allowed * (MARGIN if resumed >= floor else 1.0)
        self.rate = max(self.min_rate, self.rate)
        self._floor = self.rate
        self._cut_at = self._since = now + pause
        self._successes.clear()

    def current(self, now: float) -> float:
        """The rate to send at ``now``: after a 429, the cubic climb (see the docstring)."""
        allowed = self.allowed
        if self._cut_at is None:
            self._cut_at = now
        if allowed is None or now < self._cut_at:
            return self.rate
        t = now - self._cut_at
        climb = allowed * (1 - MARGIN) / PLATEAU ** 3 * (ABOVE if t > PLATEAU else 1.0)
        self.rate = min(self.target, max(self.min_rate, self._floor,
                                         allowed + climb * (t - PLATEAU) ** 3))
        return self.rate
