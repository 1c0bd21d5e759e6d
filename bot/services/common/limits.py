"""Limits that let people through and stop floods: burst buckets, time budgets, fair order.

    say = TokenBucket(burst=5, refill_seconds=2, refusal="You're sending `!say` very fast")
    with say.spending(user_id):      # raises RateLimitedError; nothing is spent then
        await do_the_work()          # an exception here gives the use back

- `TokenBucket`: up to `burst` uses at once, then one more every `refill_seconds`.
- `WindowBudget`: up to `budget` (seconds of audio, say) per key in any `window_seconds`.
- `InArrivalOrder`: one piece of work at a time per key, in the order the callers arrived.

A refusal is a `RateLimitedError` (a `LimitReachedError`) whose message ends with when to try
again; waiting that long is enough, provided nothing else was spent in between. "Try, then
give back": `take` returns a `Charge`; `give_back()` undoes it, so a request that is refused
later or fails costs nothing. All of it runs on one event loop: `take` never awaits, so a
check and its charge cannot be split by another request. The clock is injectable for tests.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from bot.errors import LimitReachedError

Clock = Callable[[], float]


def format_span(seconds: float) -> str:
    """A time span in human terms, rounded up: 12 s, 3 min, 1 h, 1 h 5 min."""
    if seconds < 60:
        return f"{max(1, math.ceil(seconds - 1e-9))} s"
    minutes = math.ceil(seconds / 60 - 1e-9)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


class RateLimitedError(LimitReachedError):
    """A request refused by a limit; `retry_after` is the seconds until it would go through."""

    def __init__(self, refusal: str, retry_after: float) -> None:
        super().__init__(f"{refusal}; try again in {format_span(retry_after)}.")
        self.retry_after = retry_after


class Charge:
    """What one `take` spent; `give_back()` returns it (once; later calls do nothing)."""

    def __init__(self, undo: Callable[[], None] | None = None) -> None:
        self._undo = undo

    def give_back(self) -> None:
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()


FREE = Charge()  # nothing was spent (no limit, or an exempt user)


class _Limit:
    def take(self, key: Hashable, amount: float = 1.0) -> Charge:
        raise NotImplementedError

    @contextmanager
    def spending(
        self, key: Hashable, amount: float = 1.0, *, exempt: bool = False
    ) -> Iterator[None]:
        """Take `amount` for the block; give it back if the block raises (or is cancelled)."""
        charge = FREE if exempt else self.take(key, amount)
        try:
            yield
        except BaseException:
            charge.give_back()
            raise


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucket(_Limit):
    """`burst` uses at once per key, then one more every `refill_seconds` (0: no limit).

    A key whose bucket has filled up again is forgotten, so idle users cost no memory.
    """

    def __init__(
        self, burst: int, refill_seconds: float, *, refusal: str, clock: Clock = time.monotonic
    ) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.burst = burst
        self.refill_seconds = refill_seconds
        self.refusal = refusal
        self._clock = clock
        self._buckets: dict[Hashable, _Bucket] = {}

    def available(self, key: Hashable) -> float:
        """Uses the key has now (may be fractional while refilling)."""
        return self._refill(key, self._clock())

    def take(self, key: Hashable, amount: float = 1.0) -> Charge:
        """Spend `amount` uses or raise RateLimitedError (then nothing is spent)."""
        if self.refill_seconds <= 0:
            return FREE
        now = self._clock()
        tokens = self._refill(key, now)
        if tokens < amount - 1e-9:
            raise RateLimitedError(self.refusal, (amount - tokens) * self.refill_seconds)
        self._buckets[key] = _Bucket(tokens - amount, now)

        def undo() -> None:
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket.tokens = min(self.burst, bucket.tokens + amount)

        return Charge(undo)

    def _refill(self, key: Hashable, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(self.burst)
        tokens = bucket.tokens + (now - bucket.updated) / self.refill_seconds
        if tokens >= self.burst:
            del self._buckets[key]
            return float(self.burst)
        return tokens


@dataclass(eq=False)  # compared by identity: give_back removes this very entry
class _Spent:
    at: float
    amount: float


class WindowBudget(_Limit):
    """Up to `budget` per key in any span of `window_seconds` (budget 0: no limit).

    A request fits when what the key spent in the last window plus the request stays within
    the budget. One request larger than the whole budget fits when the key has spent nothing
    in the window, so it is delayed rather than refused forever. Keys with nothing left in
    the window are forgotten (swept at most once a window), so idle users cost no memory.
    """

    def __init__(
        self,
        budget: float,
        window_seconds: float,
        *,
        refusal: str,
        clock: Clock = time.monotonic,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.budget = budget
        self.window_seconds = window_seconds
        self.refusal = refusal
        self._clock = clock
        self._spent: dict[Hashable, deque[_Spent]] = {}
        self._next_sweep = clock() + window_seconds

    def used(self, key: Hashable) -> float:
        """What the key spent in the last window."""
        return sum(s.amount for s in self._recent(key, self._clock()))

    def check(self, key: Hashable, amount: float = 0.0) -> None:
        """Raise RateLimitedError unless `amount` fits now; spends nothing.

        With `amount` 0 this asks whether anything is left at all.
        """
        if self.budget > 0:
            wait = self._wait(key, amount, self._clock())
            if wait > 0:
                raise RateLimitedError(self.refusal, wait)

    def take(self, key: Hashable, amount: float = 1.0) -> Charge:
        """Spend `amount` or raise RateLimitedError (then nothing is spent)."""
        if self.budget <= 0:
            return FREE
        now = self._clock()
        wait = self._wait(key, amount, now)
        if wait > 0:
            raise RateLimitedError(self.refusal, wait)
        if now >= self._next_sweep:
            self._next_sweep = now + self.window_seconds
            for other in list(self._spent):
                self._recent(other, now)
        entry = _Spent(now, amount)
        self._spent.setdefault(key, deque()).append(entry)

        def undo() -> None:
            spent = self._spent.get(key)
            if spent is not None and entry in spent:
                spent.remove(entry)
                if not spent:
                    del self._spent[key]

        return Charge(undo)

    def _fits(self, used: float, amount: float) -> bool:
        return used <= 0 or (used < self.budget and used + amount <= self.budget)

    def _wait(self, key: Hashable, amount: float, now: float) -> float:
        """Seconds until `amount` fits (0: it fits now), as the spending in the window expires."""
        recent = self._recent(key, now)
        used = sum(s.amount for s in recent)
        if self._fits(used, amount):
            return 0.0
        for spent in recent:  # oldest first
            used -= spent.amount
            if self._fits(used, amount):
                return spent.at + self.window_seconds - now
        raise AssertionError("an empty window always fits")  # pragma: no cover

    def _recent(self, key: Hashable, now: float) -> deque[_Spent]:
        spent = self._spent.get(key)
        if spent is None:
            return deque()
        while spent and spent[0].at <= now - self.window_seconds:
            spent.popleft()
        if not spent:
            del self._spent[key]
        return spent


class InArrivalOrder:
    """One piece of work at a time per key, started in the order the callers arrived.

    `async with order.turn(key):` takes a place in line before it first yields to the event
    loop (asyncio.Lock queues its waiters first come, first served), so work for one key
    that arrives as separate tasks runs, and answers, in arrival order. Other keys never wait.
    """

    def __init__(self) -> None:
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._users: dict[Hashable, int] = {}

    @asynccontextmanager
    async def turn(self, key: Hashable) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]

    def waiting(self, key: Hashable) -> int:
        """Callers holding or waiting for the key's turn."""
        return self._users.get(key, 0)
