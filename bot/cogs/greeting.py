"""`!hi` and `!instruction`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from discord.ext import commands

from bot.core.bot import VoiceChatBot
from bot.core.context import VoiceContext
from bot.core.messages import send_chunks
from bot.errors import NotFoundError


def read_instructions(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise NotFoundError(
            "The instructions are not available: the bot's instructions file is missing. "
            "Ask the bot's owner to add it."
        ) from None
    if not text:
        raise NotFoundError("The instructions file is empty. Ask the bot's owner to fill it in.")
    return text


class Greeting(commands.Cog):
    def __init__(self, instructions_file: Path) -> None:
        self.instructions_file = instructions_file

    @commands.hybrid_command(brief="Say hello.", extras={"example": "hi"})
    async def hi(self, ctx: VoiceContext) -> None:
        await ctx.reply(
            f"Hi {ctx.author.display_name}! Type `{ctx.clean_prefix}help` to see what I can do."
        )

    @commands.hybrid_command(brief="Show how to use the bot.", extras={"example": "instruction"})
    async def instruction(self, ctx: VoiceContext) -> None:
        text = await asyncio.to_thread(read_instructions, self.instructions_file)
        await send_chunks(ctx, text)


async def setup(bot: VoiceChatBot) -> None:
    await bot.add_cog(Greeting(bot.settings.instructions_file))
