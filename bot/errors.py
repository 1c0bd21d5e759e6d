"""Errors whose message is meant for the user.

Raise `UserFacingError("...")` anywhere (services included); the central error handler
sends its message as one reply. Any other exception is logged with its traceback and the
user sees a one-line apology.
"""

from __future__ import annotations


class UserFacingError(Exception):
    """An error whose message is safe and useful to show to the user as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(UserFacingError):
    """Something the user named (an id, a file, a dataset) does not exist."""


class InvalidInputError(UserFacingError):
    """The user's input (file, JSON, CSV, path, text) cannot be used."""


class TooLargeError(InvalidInputError):
    """The input is over a configured size or length limit."""


class LimitReachedError(UserFacingError):
    """A request refused by a limit: a rate limit, an allowance or a full queue (the user may
    try again later; the metrics count it as "limited")."""


class EngineUnavailableError(Exception):
    """An engine (speech or synthesis) is not installed or cannot be reached right now."""
