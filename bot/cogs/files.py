"""`!getfile` and `!archive`: admin-only access to the server's own part of the data folder."""

from __future__ import annotations

import io

import discord
from discord.ext import commands

from bot.app import VoiceChatBot
from bot.cogs._checks import is_admin, scope_for
from bot.errors import InvalidInputError
from bot.services.tenancy import Tenants
from bot.services.text import MB, human_size

OWNER_VIEW = " Bot owners: `--server ID` reaches another server's folder."


class Files(commands.Cog):
    """Each server sees only its own folder (datasets, models, archives); the database, the
    logs and other servers' folders are never reachable from here."""

    def __init__(self, tenants: Tenants, max_upload_bytes: int) -> None:
        self.tenants = tenants
        self.max_upload_bytes = max_upload_bytes

    @commands.command(
        brief="Send a file from this server's data folder (admins).",
        help="Sends a file from this server's part of the data folder. PATH is relative to it, "
        "e.g. datasets/mydata.csv or models/smalltalk/manifest.json. Files larger than the "
        "upload limit are refused." + OWNER_VIEW,
        extras={"example": "getfile models/smalltalk/manifest.json"},
    )
    @is_admin()
    async def getfile(self, ctx: commands.Context[VoiceChatBot], *, path: str) -> None:
        scope, path = await scope_for(ctx, path)
        if scope.everywhere:
            raise InvalidInputError("`--all` doesn't work here; use `--server ID`.")
        name, data = await self.tenants.get(scope.namespace).files.read_for_upload(path)
        await ctx.reply(
            f"`{name}` ({human_size(len(data))})",
            file=discord.File(io.BytesIO(data), filename=name),
            mention_author=False,
        )

    @commands.command(
        brief="Zip a dataset or a folder of this server's data (admins).",
        help="Zips a dataset (by name) or a folder of this server's part of the data folder "
        "into archives/NAME-TIME.zip and attaches it when it is small enough." + OWNER_VIEW,
        extras={"example": "archive smalltalk"},
    )
    @is_admin()
    async def archive(self, ctx: commands.Context[VoiceChatBot], *, name: str) -> None:
        scope, name = await scope_for(ctx, name)
        if scope.everywhere:
            raise InvalidInputError("`--all` doesn't work here; use `--server ID`.")
        async with ctx.typing():
            archive = await self.tenants.get(scope.namespace).files.archive(name)
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
    await bot.add_cog(Files(bot.services.tenants, bot.settings.max_upload_mb * MB))
