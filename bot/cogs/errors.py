"""The one error handler: user mistakes get a short clear reply, bugs get logged.

Commands raise; `on_command_error` answers. Listeners (audio, chat) call `reply_error`.
"""

from __future__ import annotations

import difflib
import logging

import discord
from discord.ext import commands

from bot.app import VoiceChatBot
from bot.errors import EngineUnavailableError, UserFacingError
from bot.services.engines import AllEnginesFailedError

log = logging.getLogger(__name__)

APOLOGY = (
    "Sorry, something went wrong on my side. The error has been logged; please try again later."
)
ALL_ENGINES_FAILED = (
    "That service is unavailable right now (no engine could be reached). Try again later."
)
ENGINE_UNAVAILABLE = (
    "That engine is unavailable right now (not installed or not reachable). Try again later."
)


def _usage(ctx: commands.Context[VoiceChatBot]) -> str:
    command = ctx.command
    assert command is not None
    return f"`{ctx.clean_prefix}{command.qualified_name} {command.signature}`".replace(" `", "`")


def closest_command(bot: commands.Bot, name: str) -> str | None:
    names = [alias for c in bot.walk_commands() if not c.hidden for alias in (c.name, *c.aliases)]
    match = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.5)
    return match[0] if match else None


def message_for(ctx: commands.Context[VoiceChatBot], error: Exception) -> str | None:
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
    original = getattr(error, "original", error)
    return message_for_exception(original)


def message_for_exception(error: BaseException) -> str | None:
    """The reply for an exception, or None when it is a bug (then the apology is sent)."""
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


def error_text(error: BaseException, message_id: int) -> str:
    """What the user is told about a failure; a bug is logged and gets the apology."""
    text = message_for_exception(error)
    if text is None:
        log.error("error handling message %s", message_id, exc_info=error)
        text = APOLOGY
    return text


async def reply_error(message: discord.Message, error: BaseException) -> None:
    """Answer a failed listener (audio, chat) the same way commands are answered."""
    await message.reply(error_text(error, message.id), mention_author=False)


class Errors(commands.Cog):
    @commands.Cog.listener()
    async def on_command_error(self, ctx: commands.Context[VoiceChatBot], error: Exception) -> None:
        text = message_for(ctx, error)
        if text is None:
            log.error(
                "command %s failed", ctx.command and ctx.command.qualified_name, exc_info=error
            )
            text = APOLOGY
        try:
            await ctx.reply(text, mention_author=False)
        except discord.HTTPException:
            log.exception("could not send the error reply")


async def setup(bot: VoiceChatBot) -> None:
    await bot.add_cog(Errors())
