"""The pace the API allows, found from its 429s and held (issue 20): the rate limiter against
each way a server keeps its limit (the sandbox's models), on a fake clock. A run of 400 rows
at concurrency 8 asks for one, two and four times the limit; over the steady middle (the
middle half of the run) it must keep at least 0.9 of the limit with at most 2% of requests
answered 429, and at the limit itself at least 0.95 with none."""

from __future__ import annotations

import pytest

from importer.client.limits import RateLimiter
from importer.client.pace import MARGIN, PLATEAU, Pace
from importer.sandbox.ratelimits import MODELS, Model, Scheduled, make

from .helpers import FakeTime

LIMIT = 20.0


async def simulate(model: Model, asked: float, *, rows: int = 400, concurrency: int = 8,
                   latency: float = 0.03,
                   schedule: tuple[tuple[float, float], ...] = ()) -> tuple[list[float], int]:
    """Upload ``rows`` rows through the limiter to a server keeping ``model``: the times of
    the successes, and how many requests were answered 429. A request takes ``latency`` there
    and back; a 429's Retry-After holds everyone (the limiter) and the row is tried again
    after it, as the client and its retry policy do. A request sent before the pause it
    arrives in is refused too, as the sandbox refuses those that come back early."""
    t = FakeTime()
    kept = make(model, LIMIT)
    server = Scheduled(kept, schedule) if schedule else kept
    limiter = RateLimiter(rate=asked, clock=t.clock, sleep=t.sleep)
    ok: list[float] = []
    refused = 0
    retry_at = 0.0
    todo = iter(range(rows))

    async def worker() -> None:
        nonlocal refused, retry_at
        for _ in todo:
            while True:
                await limiter.acquire()
                await t.sleep(latency / 2)
                early = t.now < retry_at - 0.25
                wait = max(1, round(retry_at - t.now)) if early else server.admit(t.now)
                if wait is not None:
                    retry_at = max(retry_at, t.now + wait)
                await t.sleep(latency / 2)
                if wait is None:
                    limiter.succeeded()
                    ok.append(t.now)
                    break
                refused += 1
                await t.sleep(limiter.throttled(float(wait), 1.0))

    await t.run(*(worker() for _ in range(concurrency)))
    return ok, refused


def middle_pace(ok: list[float]) -> float:
    first, last = ok[0], ok[-1]
    low, high = first + (last - first) / 4, last - (last - first) / 4
    return sum(1 for x in ok if low <= x < high) / (high - low) / LIMIT


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("factor", [2, 4])
async def test_an_over_asked_run_settles_at_the_apis_pace(model: Model, factor: int) -> None:
    ok, refused = await simulate(model, factor * LIMIT)
    assert middle_pace(ok) >= 0.9, (model, factor)
    assert refused <= 0.02 * (len(ok) + refused), (model, factor, refused)


@pytest.mark.parametrize("model", MODELS)
async def test_at_the_limit_the_run_keeps_it_without_a_429(model: Model) -> None:
    ok, refused = await simulate(model, LIMIT, latency=0.02)
    assert middle_pace(ok) >= 0.95
    if model != "sliding":  # a sliding window at exactly its limit refuses on jitter
        assert refused == 0


async def test_a_limit_that_drops_is_followed_down_within_seconds_and_back_up() -> None:
    """The account's other clients take half the limit ten seconds in, and give it back
    fifteen seconds later."""
    ok, refused = await simulate("sliding", 2 * LIMIT, rows=1400, schedule=(
        (0.0, LIMIT), (10.0, LIMIT / 2), (25.0, LIMIT)))
    start = ok[0]

    def per_second(second: float) -> int:
        return sum(1 for x in ok if start + second <= x < start + second + 1)

    assert all(per_second(s) <= LIMIT / 2 + 1 for s in range(14, 25))  # down within 4 s
    assert max(per_second(s) for s in range(60, 70)) >= 0.9 * LIMIT   # up again
    assert refused <= 0.02 * (len(ok) + refused)


def test_a_measured_pace_is_cut_to_its_margin_and_climbs_back_to_it() -> None:
    pace = Pace(target=40.0, min_rate=0.1)
    for i in range(41):  # 20 successes a second for two seconds of sending
        pace.succeeded(i * 0.05)
    pace.refused_at(2.0, pause=1.0, first=True)
    pace.refused_at(2.0, pause=1.0, first=False)  # another of the same pause: counted only
    assert (pace.allowed, pace.rate, pace.refused, pace.episodes) == (20.0, 20.0 * MARGIN, 2, 1)
    assert pace.current(2.5) == 20.0 * MARGIN    # paused
    early, late = pace.current(3.0 + 2.0), pace.current(3.0 + PLATEAU)
    assert 20.0 * MARGIN < early < late == pytest.approx(20.0)
    assert pace.current(3.0 + 3 * PLATEAU) > 20.0  # above it, probing, after a long calm


def test_a_refusal_too_soon_to_measure_takes_half_the_rate_at_least() -> None:
    """Five successes in a tenth of a second, then a 429: a bucket's burst, or a window's
    whole allowance; half the rate refused is the floor."""
    pace = Pace(target=40.0, min_rate=0.1)
    for i in range(5):
        pace.succeeded(i * 0.02)
    pace.refused_at(0.1, pause=1.0, first=True)
    assert pace.allowed == pace.rate == 20.0


def test_a_remembered_pace_is_where_the_next_run_starts() -> None:
    pace = Pace(target=40.0, min_rate=0.1)
    pace.start_from(19.6)
    assert pace.rate == pytest.approx(19.6 * MARGIN) and pace.remembered == 19.6
    assert pace.current(0.0) == pytest.approx(19.6 * MARGIN)
    assert pace.current(PLATEAU) == pytest.approx(19.6)
    above = Pace(target=10.0, min_rate=0.1)
    above.start_from(19.6)  # the user asks for less than was allowed: the user wins
    assert above.rate == 10.0 and above.remembered is None
