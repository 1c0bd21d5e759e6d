"""The one error handler: user mistakes get a short clear reply, bugs get logged.

Commands raise. `on_command_error` answers `!` commands and hybrid `/` commands; the tree's
`on_error` answers the other app commands, context menus and modals; listeners (audio, chat)
call `core.replies.reply_error`. All answer through `VoiceContext.answer(private=True)`: a
reply to a message, an ephemeral message for an interaction. The texts are `core.replies`'.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord.ext import commands

from bot.core.bot import VoiceChatBot
from bot.core.command_metrics import count_command, count_interaction
from bot.core.context import VoiceContext
from bot.core.replies import APOLOGY, answer, message_for, message_for_app_error, outcome_of

log = logging.getLogger(__name__)


class Errors(commands.Cog):
    def __init__(self, bot: VoiceChatBot) -> None:
        self.bot = bot
        self._previous_handler: Any = None

    async def cog_load(self) -> None:
        self._previous_handler = self.bot.tree.on_error
        self.bot.tree.on_error = self.on_app_command_error  # type: ignore[method-assign]

    async def cog_unload(self) -> None:
        self.bot.tree.on_error = self._previous_handler  # type: ignore[method-assign]

    @commands.Cog.listener()
    async def on_command_error(self, ctx: VoiceContext, error: Exception) -> None:
        text = message_for(ctx, error)
        count_command(ctx, outcome_of(error, text))
        if text is None:
            log.error(
                "command %s failed", ctx.command and ctx.command.qualified_name, exc_info=error
            )
            text = APOLOGY
        await answer(ctx, text)

    async def on_app_command_error(
        self, interaction: discord.Interaction[Any], error: BaseException
    ) -> None:
        """Errors of app commands that are not hybrid, context menus and modals."""
        text = message_for_app_error(error)
        if interaction.type is not discord.InteractionType.autocomplete:
            count_interaction(interaction, outcome_of(error, text))
        name = interaction.command.qualified_name if interaction.command else interaction.type
        if text is None:
            log.error("interaction %s failed", name, exc_info=error)
            text = APOLOGY
        if interaction.type is discord.InteractionType.autocomplete:
            return  # suggestions that fail show none; there is nothing to answer
        ctx = interaction.extras.get("context")
        if isinstance(ctx, VoiceContext):
            await answer(ctx, text)
            return
        try:  # it failed before its context was made: answer the interaction itself
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            log.exception("could not send the error reply")


async def setup(bot: VoiceChatBot) -> None:
    await bot.add_cog(Errors(bot))
