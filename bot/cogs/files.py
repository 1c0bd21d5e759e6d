"""`!getfile` and `!archive`: admin-only access to files under DATA_DIR."""

from __future__ import annotations

import io

import discord
from discord.ext import commands

from bot.app import VoiceChatBot
from bot.cogs._checks import is_admin
from bot.services.files import FileService
from bot.services.text import MB, human_size


class Files(commands.Cog):
    def __init__(self, files: FileService, max_upload_bytes: int) -> None:
        self.files = files
        self.max_upload_bytes = max_upload_bytes

    @commands.command(
        brief="Send a file from the data folder (admins).",
        help="Sends a file from the bot's data folder. PATH is relative to it, "
        "e.g. datasets/smalltalk.csv. Files larger than the upload limit are refused.",
        extras={"example": "getfile datasets/smalltalk.csv"},
    )
    @is_admin()
    async def getfile(self, ctx: commands.Context[VoiceChatBot], *, path: str) -> None:
        name, data = await self.files.read_for_upload(path)
        await ctx.reply(
            f"`{name}` ({human_size(len(data))})",
            file=discord.File(io.BytesIO(data), filename=name),
            mention_author=False,
        )

    @commands.command(
        brief="Zip a dataset or a folder of the data folder (admins).",
        help="Zips a dataset (by name) or a folder under the data folder into "
        "archives/NAME-TIME.zip and attaches it when it is small enough.",
        extras={"example": "archive smalltalk"},
    )
    @is_admin()
    async def archive(self, ctx: commands.Context[VoiceChatBot], *, name: str) -> None:
        async with ctx.typing():
            archive = await self.files.archive(name)
        size = human_size(archive.size)
        summary = f"Archived {archive.files} file(s) to `{archive.path_relative}` ({size})."
        if archive.uploadable and archive.data is not None:
            filename = archive.path_relative.rsplit("/", 1)[-1]
            await ctx.reply(
                summary,
                file=discord.File(io.BytesIO(archive.data), filename=filename),
                mention_author=False,
            )
        else:
            limit = human_size(self.max_upload_bytes)
            await ctx.reply(
                f"{summary} It is too large to attach (the limit is {limit}); "
                "it stays in the bot's data folder.",
                mention_author=False,
            )


async def setup(bot: VoiceChatBot) -> None:
    await bot.add_cog(Files(bot.services.files, bot.settings.max_upload_mb * MB))
