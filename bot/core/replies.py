"""What the user is told when something fails, decided in one place.

A user's mistake gets a short clear text; a refusal by a limit says so; a bug is logged with its
traceback and the user gets the apology. `reply_error` answers a failed listener (audio, chat)
or menu the way the errors cog answers commands; each answer is also the request's outcome in
the metrics (`outcome_of`).
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.command_metrics import note_outcome
from bot.core.context import VoiceContext
from bot.errors import EngineUnavailableError, LimitReachedError, UserFacingError
from bot.metrics import FAILED, LIMITED, USER_ERROR
from bot.services.common.engines import AllEnginesFailedError

log = logging.getLogger(__name__)

APOLOGY = (
    "Sorry, something went wrong on my side. The error has been logged; please try again later."
)
STALE_COMMAND = (
    "That command has changed since Discord last showed it to you. Try again in a moment "
    "(Discord updates the list when you reopen it)."
)
ALL_ENGINES_FAILED = (
    "That service is unavailable right now (no engine could be reached). Try again later."
)
ENGINE_UNAVAILABLE = (
    "That engine is unavailable right now (not installed or not reachable). Try again later."
)
# Refusals by a limit: the user may try again later.
LIMIT_ERRORS = (
    LimitReachedError,
    commands.CommandOnCooldown,
    commands.MaxConcurrencyReached,
    app_commands.CommandOnCooldown,
)


def _usage(ctx: commands.Context[Any]) -> str:
    command = ctx.command
    assert command is not None
    signature = getattr(command, "signature", "")
    return f"`{ctx.clean_prefix}{command.qualified_name} {signature}`".replace(" `", "`")


def closest_command(bot: commands.Bot, name: str) -> str | None:
    names = [alias for c in bot.walk_commands() if not c.hidden for alias in (c.name, *c.aliases)]
    match = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.5)
    return match[0] if match else None


def message_for(ctx: commands.Context[Any], error: Exception) -> str | None:
    """The reply for a command error, or None when the error is a bug."""
    prefix = ctx.clean_prefix
    if isinstance(error, commands.CommandNotFound):
        name = ctx.invoked_with or ""
        hint = closest_command(ctx.bot, name)
        suggestion = f" Did you mean `{prefix}{hint}`?" if hint else ""
        return f"Unknown command `{prefix}{name}`.{suggestion} Type `{prefix}help` for the list."
    if isinstance(error, commands.MissingRequiredArgument | commands.MissingRequiredAttachment):
        name = error.param.name
        return f"Missing `{name}`. Usage: {_usage(ctx)}"
    if isinstance(error, commands.TooManyArguments):
        return f"Too many arguments. Usage: {_usage(ctx)}"
    if isinstance(
        error, commands.BadArgument | commands.BadUnionArgument | commands.BadLiteralArgument
    ):
        return f"{error} Usage: {_usage(ctx)}"
    if isinstance(error, commands.ArgumentParsingError):
        return f"I couldn't read those arguments ({error}). Usage: {_usage(ctx)}"
    if isinstance(error, commands.CommandOnCooldown):
        return f"Slow down: you can use this command again in {error.retry_after:.0f} s."
    if isinstance(error, commands.MaxConcurrencyReached):
        return "That command is already running; wait for it to finish."
    if isinstance(error, commands.NoPrivateMessage):
        return "That command works only in a server channel."
    if isinstance(error, commands.CheckFailure):
        return str(error) or "You can't use this command here."
    if isinstance(error, commands.DisabledCommand):
        return "That command is turned off."
    if isinstance(error, commands.HybridCommandError):
        return message_for_app_error(error.original)
    return message_for_exception(error)


def message_for_app_error(error: BaseException) -> str | None:
    """The reply for an app command's error (a `/` option, check or stale definition)."""
    if isinstance(error, app_commands.TransformerError):
        return f"I couldn't use `{str(error.value)[:50]}` there. Check the option and try again."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "That command works only in a server channel."
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "You can't use this command here."
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        return STALE_COMMAND
    return message_for_exception(error)


def unwrapped(error: BaseException) -> BaseException:
    """The error a command raised, out of CommandInvokeError and its kin."""
    while isinstance(getattr(error, "original", None), BaseException):
        error = error.original  # type: ignore[attr-defined]
    return error


def outcome_of(error: BaseException, text: str | None) -> str:
    """The outcome the metrics count for a failure the user was told about as `text`
    (None: the apology)."""
    error = unwrapped(error)
    if text is None or isinstance(error, EngineUnavailableError):
        return FAILED
    if isinstance(error, LIMIT_ERRORS):
        return LIMITED
    return USER_ERROR


def message_for_exception(error: BaseException) -> str | None:
    """The reply for an exception, or None when it is a bug (then the apology is sent)."""
    error = unwrapped(error)
    if isinstance(error, commands.CheckFailure):
        return str(error) or "You can't use this command here."
    if isinstance(error, UserFacingError):
        return error.message
    if isinstance(error, EngineUnavailableError):  # the machine's state, not a bug
        log.warning("%s reached the user: %s", type(error).__name__, error)
        if isinstance(error, AllEnginesFailedError):
            return ALL_ENGINES_FAILED
        return ENGINE_UNAVAILABLE
    if isinstance(error, discord.HTTPException) and error.status == 413:
        return "That file is too large for Discord to accept."
    return None


def answer_for(error: BaseException, message_id: int) -> tuple[str, str]:
    """What the user is told about a failure, and its outcome for the metrics; a bug is logged
    and gets the apology."""
    text = message_for_exception(error)
    outcome = outcome_of(error, text)
    if text is None:
        log.error("error handling message %s", message_id, exc_info=error)
        text = APOLOGY
    return text, outcome


def error_text(error: BaseException, message_id: int) -> str:
    """What the user is told about a failure; a bug is logged and gets the apology."""
    return answer_for(error, message_id)[0]


async def reply_error(ctx: VoiceContext, error: BaseException) -> None:
    """Answer a failed listener (audio, chat) or menu the way commands are answered."""
    text, outcome = answer_for(error, ctx.message.id)
    note_outcome(ctx, outcome)
    await answer(ctx, text)


async def answer(ctx: VoiceContext, text: str) -> None:
    """Send an error's text privately; a failure to send is logged."""
    try:
        await ctx.answer(text, private=True)
    except discord.HTTPException:
        log.exception("could not send the error reply")
