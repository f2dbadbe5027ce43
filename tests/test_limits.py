"""Rate limiter and retry policy, driven by a fake clock: no test waits on the wall clock."""

from __future__ import annotations

import pytest

from importer.client.limits import Attempt, RateLimiter, RetryPolicy
from importer.errors import RateLimited, RequestRejected, ServerError, Stopped, TransportError

from .helpers import FakeTime


async def test_requests_are_evenly_spaced() -> None:
    t = FakeTime()
    limiter = RateLimiter(rate=4, clock=t.clock, sleep=t.sleep)
    starts = []

    async def go() -> None:
        for _ in range(5):
            async with limiter:
                starts.append(t.now)

    await t.run(go())
    assert starts == [0.0, 0.25, 0.5, 0.75, 1.0]


async def test_burst_lets_the_first_requests_through() -> None:
    t = FakeTime()
    limiter = RateLimiter(rate=2, burst=3, clock=t.clock, sleep=t.sleep)
    starts = []

    async def go() -> None:
        for _ in range(5):
            await limiter.acquire()
            starts.append(t.now)

    await t.run(go())
    assert starts[:3] == [0.0, 0.0, 0.0]
    assert starts[3:] == [0.5, 1.0]


async def test_concurrent_waiters_leave_in_order_one_slot_apart() -> None:
    t = FakeTime()
    limiter = RateLimiter(rate=10, clock=t.clock, sleep=t.sleep)
    starts: list[float] = []

    async def worker() -> None:
        await limiter.acquire()
        starts.append(round(t.now, 6))

    await t.run(*(worker() for _ in range(4)))
    assert starts == [0.0, 0.1, 0.2, 0.3]


async def test_pause_holds_everyone_then_resumes_spaced() -> None:
    t = FakeTime()
    limiter = RateLimiter(rate=10, clock=t.clock, sleep=t.sleep)
    starts: list[float] = []

    async def worker() -> None:
        await limiter.acquire()
        starts.append(round(t.now, 6))

    async def pause_soon() -> None:
        await limiter.acquire()  # takes the slot at 0.0
        await t.sleep(0.05)      # the workers are now asleep until 0.1, 0.2, 0.3
        limiter.pause_until(5.0)

    # Workers already asleep in the limiter when the pause comes must wait for it too.
    await t.run(pause_soon(), worker(), worker(), worker())
    assert starts == [5.0, 5.1, 5.2]


def test_limiter_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0)
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=0)


def test_backoff_is_exponential_jittered_and_capped() -> None:
    policy = RetryPolicy(max_attempts=10, base=0.5, cap=4.0, rand=lambda: 1.0)
    error = ServerError("boom", status=500)
    delays = [policy.decide(Attempt(n, error)) for n in range(1, 7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    half = RetryPolicy(max_attempts=10, base=0.5, cap=4.0, rand=lambda: 0.5)
    assert half.decide(Attempt(3, error)) == 1.0


def test_retry_after_wins_over_backoff() -> None:
    policy = RetryPolicy(max_attempts=5, rand=lambda: 1.0)
    assert policy.decide(Attempt(1, RateLimited("slow", status=429, retry_after=9.0))) == 9.0


def test_give_up_on_final_errors_and_after_the_last_attempt() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.decide(Attempt(1, RequestRejected("no", status=400))) is None
    assert policy.decide(Attempt(3, TransportError("reset"))) is None
    assert policy.decide(Attempt(2, TransportError("reset"))) is not None
    assert policy.decide(Attempt(1, None)) is None


async def test_a_stalled_loop_does_not_release_a_burst() -> None:
    t = FakeTime()
    limiter = RateLimiter(rate=10, clock=t.clock, sleep=t.sleep)
    starts: list[float] = []

    async def worker() -> None:
        await limiter.acquire()
        starts.append(round(t.now, 6))

    async def stall() -> None:
        await t.sleep(0.05)
        t.now = 1.0  # the event loop was busy for almost a second

    await t.run(worker(), stall(), worker(), worker(), worker())
    assert starts[0] == 0.0
    # The three that overslept leave one interval apart, not together at 1.0.
    assert starts[1:] == [1.0, 1.1, 1.2]


def test_throttle_without_a_measure_halves_then_probes_slowly() -> None:
    t = FakeTime()
    limiter = RateLimiter(rate=40, clock=t.clock, sleep=t.sleep)
    pause = limiter.throttled(retry_after=2.0, backoff=1.0)
    assert (pause, limiter.rate) == (2.0, 20.0)
    limiter.throttled(retry_after=2.0, backoff=1.0)  # same episode: no second cut
    assert limiter.rate == 20.0 and limiter.throttles == 1
    t.now = 3.0
    limiter._grow(t.now)
    t.now = 13.0
    limiter._grow(t.now)
    # Above its ceiling it grows by SLOW_RECOVERY x target per second.
    assert limiter.rate == pytest.approx(20.0 + 10 * RateLimiter.SLOW_RECOVERY * 40)


def test_throttle_settles_under_the_measured_rate_and_recovers_fast_to_it() -> None:
    t = FakeTime()
    limiter = RateLimiter(rate=40, clock=t.clock, sleep=t.sleep)
    for i in range(41):          # 20 successes a second for two seconds
        t.now = i * 0.05
        limiter.succeeded()
    limiter.throttled(retry_after=None, backoff=1.0)
    assert limiter.rate == pytest.approx(0.9 * 20)
    t.now = 3.0
    limiter._grow(t.now)
    t.now = 3.1
    limiter._grow(t.now)
    assert limiter.rate == pytest.approx(18 + 0.1 * RateLimiter.FAST_RECOVERY * 40)
    assert limiter.rate < 40


def test_rate_never_drops_below_its_floor() -> None:
    limiter = RateLimiter(rate=0.5, clock=lambda: 0.0)
    for _ in range(20):
        limiter._paused_until = float("-inf")
        limiter.throttled(None, 1.0)
    assert limiter.rate == limiter.min_rate > 0


async def test_a_stop_ends_every_wait_at_once() -> None:
    """Rows waiting for their slot (here 20 s apart) are not sent after a stop: their waits
    end at once, and so does every later acquire."""
    t = FakeTime()
    limiter = RateLimiter(rate=0.05, clock=t.clock, sleep=t.sleep)
    outcomes: list[tuple[str, float]] = []

    async def worker() -> None:
        try:
            await limiter.acquire()
            outcomes.append(("went", t.now))
        except Stopped:
            outcomes.append(("stopped", t.now))

    async def stopper() -> None:
        await t.sleep(1.0)
        limiter.stop()

    await t.run(*(worker() for _ in range(3)), stopper())

    assert outcomes == [("went", 0.0), ("stopped", 1.0), ("stopped", 1.0)]
    with pytest.raises(Stopped):
        await limiter.acquire()


async def test_a_stop_ends_a_pause_the_api_asked_for() -> None:
    t = FakeTime()
    limiter = RateLimiter(rate=10, clock=t.clock, sleep=t.sleep)
    limiter.throttled(retry_after=30.0, backoff=1.0)
    ended: list[float] = []

    async def worker() -> None:
        with pytest.raises(Stopped):
            await limiter.acquire()
        ended.append(t.now)

    async def stopper() -> None:
        await t.sleep(2.0)
        limiter.stop()

    await t.run(worker(), stopper())
    assert ended == [2.0]
