"""The budgets and the circuit breaker, on a fake clock and counts built by hand: no server, no
waiting."""

from __future__ import annotations

from importer.events import Outcome, RowEvent, RunSummary, StopReason
from importer.run.guard import WAIT, RunGuard, Stop
from importer.settings.resolve import Settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(**values: object) -> Settings:
    return Settings.load(values, environ={})


def test_max_duration_is_judged_on_the_clock_it_is_given() -> None:
    clock = FakeClock()
    guard = RunGuard(settings(max_duration="90m"), clock)
    assert guard.before_upload() is None
    clock.now += 89 * 60
    assert guard.before_upload() is None
    clock.now += 60
    stop = guard.before_upload()
    assert stop is not None and stop.reason is StopReason.BUDGET
    assert stop.detail == "budget: --max-duration 5400s reached"


def test_max_uploads_counts_the_uploads_started() -> None:
    guard = RunGuard(settings(max_uploads=2), FakeClock())
    for _ in range(2):
        assert guard.before_upload() is None
        guard.upload_started()
    stop = guard.before_upload()
    assert isinstance(stop, Stop) and stop.detail == "budget: --max-uploads 2 reached"


def test_max_uploads_is_reserved_before_the_row_is_checked() -> None:
    """Eight workers ask at once for a budget of one: one goes on, the others wait for its
    outcome. Sent, the budget is spent; not sent (its call found imported), the next goes."""
    guard = RunGuard(settings(max_uploads=1), FakeClock())
    assert guard.before_upload() is None
    assert all(guard.before_upload() is WAIT for _ in range(7))
    guard.unreserve()  # that row was not sent after all
    assert guard.before_upload() is None
    guard.upload_started()
    stop = guard.before_upload()
    assert isinstance(stop, Stop) and stop.detail == "budget: --max-uploads 1 reached"
    assert guard.uploads == 1


def problems(summary: RunSummary, outcome: Outcome, n: int) -> None:
    for i in range(n):
        summary.add(RowEvent(i, f"k{i}", outcome, "bad", "bad"))


def test_an_error_budget_of_rows_and_of_a_share() -> None:
    guard = RunGuard(settings(max_errors="3"), FakeClock())
    summary = RunSummary("m.csv", None)
    problems(summary, Outcome.INVALID, 2)
    assert guard.after_problem(summary, rows_read=2) is None
    problems(summary, Outcome.FAILED, 1)
    stop = guard.after_problem(summary, rows_read=3)
    assert stop is not None and "(3 rows failed or invalid)" in stop.detail

    share = RunGuard(settings(max_errors="10%"), FakeClock())
    summary = RunSummary("m.csv", None)
    problems(summary, Outcome.INVALID, 5)
    assert share.after_problem(summary, rows_read=100) is None  # too few outcomes to judge
    problems(summary, Outcome.SUCCEEDED, 30)
    assert share.after_problem(summary, rows_read=100) is None  # 5 of 100 read: 5%
    problems(summary, Outcome.INVALID, 5)
    stop = share.after_problem(summary, rows_read=100)
    assert stop is not None and "10 of 100 rows failed or invalid, over 10%" in stop.detail


def test_the_circuit_breaker_counts_failures_for_the_apis_sake_in_a_row() -> None:
    guard = RunGuard(settings(max_consecutive_failures=3), FakeClock())
    assert guard.after_failure(True, "HTTP 503") is None
    assert guard.after_failure(True, "HTTP 503") is None
    assert guard.after_failure(False, "HTTP 400: bad group") is None  # the API is there
    assert guard.after_failure(True, "HTTP 503") is None
    guard.after_success()
    assert guard.after_failure(True, "HTTP 503") is None
    assert guard.after_failure(True, "HTTP 503") is None
    stop = guard.after_failure(True, "cannot connect")
    assert stop is not None and stop.reason is StopReason.FAILING
    assert "3 rows in a row failed for the API's sake; last: cannot connect" in stop.detail
    assert RunGuard(settings(max_consecutive_failures=0), FakeClock()).after_failure(
        True, "x") is None  # 0: never
