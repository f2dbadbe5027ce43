"""The sandbox's rate limits, as servers keep them (issue 20): each model on a clock handed in,
no server and no waiting. They are the API's stand-in, so what they refuse is what the
importer's pace is measured against."""

from __future__ import annotations

import pytest

from importer.sandbox.ratelimits import (
    FixedWindow,
    Scheduled,
    SlidingWindow,
    TokenBucket,
    parse_schedule,
)


def admitted(limit: SlidingWindow | FixedWindow | TokenBucket | Scheduled,
             times: list[float]) -> list[bool]:
    return [limit.admit(t) is None for t in times]


def test_a_sliding_window_allows_the_limit_in_any_second() -> None:
    limit = SlidingWindow(rate=3)
    assert admitted(limit, [0.0, 0.1, 0.2, 0.3, 0.9, 1.05, 1.15, 1.25]) == \
        [True, True, True, False, False, True, True, True]
    assert SlidingWindow(rate=3).admit(0.0) is None
    crowded = SlidingWindow(rate=1)
    crowded.admit(10.0)
    assert crowded.admit(10.2) == 1  # whole seconds, at least one


def test_a_fixed_window_counts_per_second_of_the_clock() -> None:
    """Twice the limit passes across a boundary, as real fixed windows let it."""
    limit = FixedWindow(rate=2)
    assert admitted(limit, [0.8, 0.9, 0.95, 1.0, 1.1, 1.2]) == \
        [True, True, False, True, True, False]


def test_a_token_bucket_lets_its_burst_through_then_its_rate() -> None:
    limit = TokenBucket(rate=10, burst=3)
    assert admitted(limit, [0.0, 0.0, 0.0, 0.0]) == [True, True, True, False]
    assert limit.admit(0.1) is None  # a token every 0.1 s


def test_a_schedule_changes_the_limit_from_the_first_request() -> None:
    limit = Scheduled(SlidingWindow(rate=4), parse_schedule("0:4,10:1"))
    assert admitted(limit, [5.0, 5.1, 5.2, 5.3]) == [True, True, True, True]
    assert admitted(limit, [15.0, 15.1]) == [True, False]  # ten seconds after the first
    assert limit.rate == 1


@pytest.mark.parametrize("text", ["20", "0:20,x:1", "5:20,1:10", "0:0", ""])
def test_a_schedule_must_be_pairs_in_order(text: str) -> None:
    with pytest.raises(ValueError, match="SECONDS:RATE"):
        parse_schedule(text)


def test_the_sandbox_command_refuses_a_schedule_it_cannot_read_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    from importer.cli.commands import main

    assert main(["sandbox", "--port", "0", "--rate-schedule", "0:20,10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["convirza-import: error: --rate-schedule: expected SECONDS:RATE, got '10'"]
