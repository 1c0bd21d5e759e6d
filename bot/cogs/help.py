"""`!help` and `/help`: every command with a one-line description and an example, in both
forms (`!name` and `/name`)."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.context import context_of
from bot.core.help import HELP_BRIEF
from bot.core.suggest import matching, suggest
from bot.errors import NotFoundError


class Help(commands.Cog):
    """`/help`, the twin of `!help` (which discord.py provides as the bot's help command)."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description=HELP_BRIEF)
    @app_commands.describe(command="A command, like train or voice engine (empty: all of them)")
    async def help_slash(
        self, interaction: discord.Interaction[Any], command: str | None = None
    ) -> None:
        ctx = await context_of(self.bot, interaction)  # type: ignore[arg-type]
        name = (command or "").strip().lstrip("!/")
        if not name:
            await ctx.send_help()
            return
        found = self.bot.get_command(name)
        if found is None:
            raise NotFoundError(f"There is no command called `{name}`. Type `/help` for the list.")
        await ctx.send_help(found)

    @help_slash.autocomplete("command")
    @suggest
    async def _command_names(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[str]:
        names = sorted(c.qualified_name for c in self.bot.walk_commands() if not c.hidden)
        return matching(names, current)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Help(bot))
