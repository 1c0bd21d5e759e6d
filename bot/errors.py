"""Errors whose message is meant for the user, and the one registry of those that cross
processes.

Raise `UserFacingError("...")` anywhere (services included); the central error handler
sends its message as one reply. Any other exception is logged with its traceback and the
user sees a one-line apology.

A worker reports a task's error by its type's name (and `details()`); the bot raises it
again with `raised_again`. Only the types registered with `@crosses_processes` come back as
themselves (each module registers its own, here or beside the service that raises it).
"""

from __future__ import annotations

from typing import Any, TypeVar

E = TypeVar("E", bound="type[UserFacingError]")


class UserFacingError(Exception):
    """An error whose message is safe and useful to show to the user as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """What besides the message a worker sends for it (plain JSON data)."""
        return {}

    @classmethod
    def again(cls, message: str, details: dict[str, Any]) -> UserFacingError:
        """The error as the bot raises it again, from what a worker sent."""
        return cls(message)


_CROSSING: dict[str, type[UserFacingError]] = {}


def crosses_processes(cls: E) -> E:
    """Register an error type that a worker's task may report and the bot raises again."""
    known = _CROSSING.setdefault(cls.__name__, cls)
    if known is not cls:
        raise TypeError(f"two error types cross processes as {cls.__name__}")
    return cls


def raised_again(kind: str, message: str, details: dict[str, Any]) -> UserFacingError | None:
    """The registered error named `kind`, made again; None for a type that is not one."""
    found = _CROSSING.get(kind)
    return found.again(message, details) if found is not None else None


@crosses_processes
class NotFoundError(UserFacingError):
    """Something the user named (an id, a file, a dataset) does not exist."""


@crosses_processes
class InvalidInputError(UserFacingError):
    """The user's input (file, JSON, CSV, path, text) cannot be used."""


@crosses_processes
class TooLargeError(InvalidInputError):
    """The input is over a configured size or length limit."""


class LimitReachedError(UserFacingError):
    """A request refused by a limit: a rate limit, an allowance or a full queue (the user may
    try again later; the metrics count it as "limited")."""


class EngineUnavailableError(Exception):
    """An engine (speech or synthesis) is not installed or cannot be reached right now."""
