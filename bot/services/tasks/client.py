"""A task's failure raised again in the bot as the error it was (the registry of error types
that cross processes is `bot.errors`')."""

from __future__ import annotations

from typing import Any

from bot.errors import raised_again
from bot.services.tasks.base import TaskFailedError, TaskResult


def raise_failure(result: TaskResult) -> None:
    """Raise the error a failed task reported: the registered type it was (bot.errors), else
    TaskFailedError with its message."""
    if result.ok:
        return
    value: dict[str, Any] = result.value
    message = str(value.get("error") or "The task failed.")
    details = value.get("details")
    again = raised_again(str(value.get("type", "")), message, details or {})
    raise again if again is not None else TaskFailedError(message)
