"""The one error handler decides each failed command's outcome in the metrics from what the
user is told: refused by a limit, the user's to fix, or the apology."""

from __future__ import annotations

import pytest
from discord.ext import commands

from bot.core.checks import NotAdmin
from bot.core.replies import message_for_exception, outcome_of
from bot.errors import EngineUnavailableError, LimitReachedError, NotFoundError
from bot.services.common.limits import RateLimitedError


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (NotAdmin(), "user_error"),
        (NotFoundError("No dataset `x`."), "user_error"),
        (commands.CommandInvokeError(NotFoundError("No job `1`.")), "user_error"),
        (RateLimitedError("You've used your !say allowance", 3), "limited"),
        (LimitReachedError("The voice queue is full (20 items)."), "limited"),
        (commands.CommandInvokeError(RateLimitedError("Too much audio", 60)), "limited"),
        (EngineUnavailableError("no engine"), "failed"),
        (commands.CommandInvokeError(ZeroDivisionError()), "failed"),
    ],
)
def test_outcome_follows_what_the_user_is_told(error: Exception, outcome: str) -> None:
    assert outcome_of(error, message_for_exception(error)) == outcome


def test_a_cooldown_is_limited() -> None:
    cooldown = commands.CommandOnCooldown(commands.Cooldown(1, 5), 4.0, commands.BucketType.user)
    assert outcome_of(cooldown, "Slow down") == "limited"
