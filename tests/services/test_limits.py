"""Limits: burst buckets, audio-time budgets, give-back, retry times and arrival order."""

from __future__ import annotations

import asyncio

import pytest

from bot.errors import UserFacingError
from bot.services.common.limits import (
    InArrivalOrder,
    RateLimitedError,
    TokenBucket,
    WindowBudget,
    format_span,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def refused(limit: TokenBucket | WindowBudget, key: object, amount: float = 1.0) -> float:
    """The retry time of a refused take (the test fails if it is not refused)."""
    with pytest.raises(RateLimitedError) as info:
        limit.take(key, amount)
    return info.value.retry_after


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "1 s"),
        (1.0, "1 s"),
        (11.3, "12 s"),
        (59.5, "60 s"),
        (60, "1 min"),
        (61, "2 min"),
        (179.9, "3 min"),
        (3599, "1 h"),
        (3600, "1 h"),
        (3900, "1 h 5 min"),
        (7200, "2 h"),
    ],
)
def test_spans_are_rounded_up_in_human_terms(seconds: float, text: str) -> None:
    assert format_span(seconds) == text


def test_the_refusal_is_a_user_facing_message_naming_the_retry_time() -> None:
    error = RateLimitedError("You're sending `!say` very quickly", 11.2)
    assert isinstance(error, UserFacingError)
    assert error.message == "You're sending `!say` very quickly; try again in 12 s."
    assert error.retry_after == 11.2


# ----- token bucket ------------------------------------------------------------------------


def test_a_burst_goes_through_then_the_flood_is_refused() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5, 2.0, refusal="slow", clock=clock)
    for _ in range(5):
        bucket.take("ann")
    assert refused(bucket, "ann") == pytest.approx(2.0)
    clock.advance(0.5)
    assert refused(bucket, "ann") == pytest.approx(1.5)
    bucket.take("bob")  # other keys have their own bucket


def test_the_bucket_refills_one_use_per_interval_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(3, 2.0, refusal="slow", clock=clock)
    for _ in range(3):
        bucket.take("ann")
    clock.advance(2.0)
    bucket.take("ann")
    assert refused(bucket, "ann") == pytest.approx(2.0)
    clock.advance(100)
    assert bucket.available("ann") == 3  # never more than the burst
    for _ in range(3):
        bucket.take("ann")
    assert refused(bucket, "ann") == pytest.approx(2.0)


def test_waiting_the_stated_time_is_enough() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, 0.7, refusal="slow", clock=clock)
    for _ in range(2):
        bucket.take("ann")
    clock.advance(0.3)
    wait = refused(bucket, "ann")
    clock.advance(wait)
    bucket.take("ann")


def test_a_refused_take_costs_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1, 10.0, refusal="slow", clock=clock)
    bucket.take("ann")
    for _ in range(20):
        refused(bucket, "ann")
    clock.advance(10)
    bucket.take("ann")  # the refusals did not push the next use further away


def test_a_use_given_back_can_be_taken_again_once() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, 60.0, refusal="slow", clock=clock)
    bucket.take("ann")
    charge = bucket.take("ann")
    refused(bucket, "ann")
    charge.give_back()
    charge.give_back()  # a second give-back returns nothing more
    bucket.take("ann")
    refused(bucket, "ann")


def test_spending_gives_back_when_the_work_fails_and_not_when_it_succeeds() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1, 60.0, refusal="slow", clock=clock)
    with pytest.raises(ValueError), bucket.spending("ann"):
        raise ValueError("the work failed")
    with bucket.spending("ann"):
        pass
    with pytest.raises(RateLimitedError), bucket.spending("ann"):
        pytest.fail("a refused request must not run")


def test_exempt_keys_and_a_zero_refill_are_never_limited() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1, 60.0, refusal="slow", clock=clock)
    for _ in range(50):
        with bucket.spending("admin", exempt=True):
            pass
    bucket.take("admin")  # the exempt uses were not counted
    unlimited = TokenBucket(1, 0, refusal="slow", clock=clock)
    for _ in range(50):
        unlimited.take("ann")


def test_full_buckets_are_forgotten() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, 1.0, refusal="slow", clock=clock)
    for user in range(100):
        bucket.take(user)
    clock.advance(5)
    for user in range(100):
        assert bucket.available(user) == 2
    assert not bucket._buckets


# ----- window budget -----------------------------------------------------------------------


def test_a_budget_allows_up_to_its_amount_per_window() -> None:
    clock = FakeClock()
    budget = WindowBudget(60, 100, refusal="enough", clock=clock)
    budget.take("ann", 20)
    clock.advance(10)
    budget.take("ann", 30)
    clock.advance(10)
    budget.take("ann", 10)  # exactly the budget
    assert budget.used("ann") == 60
    # 5 more fits once the first 20 s (spent at t=0) leave the window, at t=100
    assert refused(budget, "ann", 5) == pytest.approx(80)
    # 25 more needs the first two spendings gone: t=110
    assert refused(budget, "ann", 25) == pytest.approx(90)
    budget.take("bob", 60)  # others have their own budget
    clock.advance(80)
    budget.take("ann", 5)
    assert budget.used("ann") == 45


def test_check_refuses_without_spending() -> None:
    clock = FakeClock()
    budget = WindowBudget(10, 60, refusal="enough", clock=clock)
    budget.check("ann", 10)
    budget.take("ann", 4)
    budget.check("ann", 6)
    with pytest.raises(RateLimitedError) as info:
        budget.check("ann", 7)
    assert info.value.retry_after == pytest.approx(60)
    assert budget.used("ann") == 4
    budget.take("ann", 6)
    with pytest.raises(RateLimitedError):
        budget.check("ann")  # nothing left at all


def test_a_request_larger_than_the_budget_waits_for_an_empty_window() -> None:
    clock = FakeClock()
    budget = WindowBudget(10, 60, refusal="enough", clock=clock)
    budget.take("ann", 50)  # nothing spent in the window: it goes through, once
    assert refused(budget, "ann", 1) == pytest.approx(60)
    clock.advance(60)
    budget.take("ann", 50)
    clock.advance(30)
    budget.take("bob", 3)
    assert refused(budget, "bob", 50) == pytest.approx(60)


def test_failed_work_gives_its_amount_back() -> None:
    clock = FakeClock()
    budget = WindowBudget(10, 60, refusal="enough", clock=clock)
    budget.take("ann", 4)
    with pytest.raises(RuntimeError), budget.spending("ann", 6):
        raise RuntimeError("no speech")
    assert budget.used("ann") == 4
    with budget.spending("ann", 6):
        pass
    assert budget.used("ann") == 10
    with budget.spending("ann", 100, exempt=True):
        pass
    assert budget.used("ann") == 10


def test_giving_back_an_old_charge_removes_only_it() -> None:
    clock = FakeClock()
    budget = WindowBudget(10, 60, refusal="enough", clock=clock)
    first = budget.take("ann", 3)
    budget.take("ann", 3)
    first.give_back()
    first.give_back()
    assert budget.used("ann") == 3
    clock.advance(61)
    first.give_back()  # long expired: nothing to do
    assert budget.used("ann") == 0
    assert not budget._spent


def test_keys_with_nothing_in_the_window_are_forgotten() -> None:
    clock = FakeClock()
    budget = WindowBudget(10, 60, refusal="enough", clock=clock)
    for user in range(100):
        budget.take(user, 1)
    clock.advance(61)
    budget.take("ann", 1)
    assert list(budget._spent) == ["ann"]


def test_waiting_the_stated_time_lets_the_request_through() -> None:
    clock = FakeClock()
    budget = WindowBudget(5, 20, refusal="enough", clock=clock)
    budget.take("ann", 2.6)
    clock.advance(1.3)
    budget.take("ann", 2.4)
    clock.advance(0.4)
    wait = refused(budget, "ann", 2.6)
    clock.advance(wait)
    budget.take("ann", 2.6)


def test_a_zero_budget_is_no_limit() -> None:
    budget = WindowBudget(0, 60, refusal="enough", clock=FakeClock())
    for _ in range(10):
        budget.take("ann", 3600)
    budget.check("ann", 3600)


# ----- arrival order -----------------------------------------------------------------------


async def test_work_for_one_key_runs_one_at_a_time_in_arrival_order() -> None:
    order = InArrivalOrder()
    log: list[str] = []
    running = 0

    async def work(key: str, name: str, delay: float) -> None:
        nonlocal running
        async with order.turn(key):
            running += 1
            assert running == 1 or key == "other"
            log.append(f"start {name}")
            await asyncio.sleep(delay)
            log.append(f"end {name}")
            running -= 1

    # later arrivals are quicker: without the line they would finish first
    tasks = [
        asyncio.create_task(work("ann", name, delay))
        for name, delay in [("a", 0.05), ("b", 0.01), ("c", 0.0)]
    ]
    await asyncio.sleep(0)
    assert order.waiting("ann") == 3
    await asyncio.gather(*tasks)
    assert log == ["start a", "end a", "start b", "end b", "start c", "end c"]
    assert order.waiting("ann") == 0 and not order._locks


async def test_other_keys_do_not_wait_and_a_failure_frees_the_line() -> None:
    order = InArrivalOrder()
    release = asyncio.Event()
    done: list[str] = []

    async def slow() -> None:
        async with order.turn("ann"):
            await release.wait()
            raise RuntimeError("failed")

    async def quick(key: str) -> None:
        async with order.turn(key):
            done.append(key)

    first = asyncio.create_task(slow())
    behind = asyncio.create_task(quick("ann"))
    await quick("bob")
    assert done == ["bob"]  # bob did not wait for ann's slow work
    release.set()
    with pytest.raises(RuntimeError):
        await first
    await behind
    assert done == ["bob", "ann"]
