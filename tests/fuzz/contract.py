"""The contract every fuzz target checks: bad input gets one clear reply, in time.

`outcome(call, ...)` runs the call and returns its result, or the `UserFacingError` it
raised after checking that the message can be sent as one Discord reply. Any other
exception propagates, and the fuzz test fails with hypothesis's minimal example.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from hypothesis import event

from bot.errors import UserFacingError
from bot.services.common.text import DISCORD_LIMIT, unencodable

T = TypeVar("T")

# Seconds one call may take. Generous: the machine is shared, and a hang is what this catches.
TIME_BOUND = 10.0


def check_message(message: str) -> None:
    """A message the user can be sent as it is: one non-empty reply of plain, storable text."""
    assert message.strip(), "empty error message"
    assert len(message) <= DISCORD_LIMIT, f"message of {len(message)} characters"
    assert unencodable(message) is None, f"unencodable message {message!r}"
    assert "Traceback" not in message


def outcome(
    call: Callable[..., T], *args: Any, bound: float = TIME_BOUND, **kwargs: Any
) -> T | UserFacingError:
    """`call(*args, **kwargs)`: its result, or the UserFacingError it raised (checked)."""
    started = time.perf_counter()
    try:
        result: T | UserFacingError = call(*args, **kwargs)
    except UserFacingError as exc:
        check_message(exc.message)
        result = exc
    elapsed = time.perf_counter() - started
    event(f"{getattr(call, '__name__', 'call')}: {type(result).__name__}")
    assert elapsed < bound, f"took {elapsed:.1f} s (bound {bound} s)"
    return result


def async_outcome(
    call: Callable[..., Awaitable[T]], *args: Any, bound: float = TIME_BOUND, **kwargs: Any
) -> T | UserFacingError:
    """Like `outcome`, for a coroutine function (run to completion in a fresh event loop)."""

    def run() -> T:
        return asyncio.run(call(*args, **kwargs))  # type: ignore[arg-type]

    run.__name__ = getattr(call, "__name__", "call")
    return outcome(run, bound=bound)
