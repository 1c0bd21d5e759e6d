"""`!getfile` and `!archive`: admin-only access to the server's own part of the data folder.

Both are hybrid commands (`/getfile path: server:`, `/archive name: server:`): one definition,
the same checks; an owner's `--server ID` / `server:` comes from `core.scope_option`. Both
defer at once, since reading or zipping a large file takes a while.
"""

from __future__ import annotations

import io

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.bot import VoiceChatBot
from bot.core.checks import is_admin
from bot.core.context import VoiceContext
from bot.core.scope_option import ONE_SERVER, scoped_command
from bot.core.suggest import admins_only, matching, namespace_asked, suggest
from bot.errors import InvalidInputError
from bot.services.common.text import MB, human_size
from bot.services.tenancy.namespaces import Scope
from bot.services.tenancy.tenants import Tenants

OWNER_VIEW = " Bot owners: `--server ID` reaches another server's folder."
ONE_FOLDER = "This works on one server's folder: name it (`--server ID`, or `server:` with `/`)."


class Files(commands.Cog):
    """Each server sees only its own folder (datasets, models, archives); the database, the
    logs and other servers' folders are never reachable from here."""

    def __init__(self, bot: VoiceChatBot, tenants: Tenants, max_upload_bytes: int) -> None:
        self.bot = bot
        self.tenants = tenants
        self.max_upload_bytes = max_upload_bytes

    @scoped_command(
        brief="Send a file from this server's data folder (admins).",
        help="Sends a file from this server's part of the data folder. PATH is relative to it, "
        "e.g. datasets/mydata.csv or models/smalltalk/manifest.json. Files larger than the "
        "upload limit are refused." + OWNER_VIEW,
        extras={"example": "getfile models/smalltalk/manifest.json"},
    )
    @app_commands.describe(path="A path inside the data folder, like datasets/mydata.csv")
    @app_commands.default_permissions(manage_guild=True)
    @is_admin()
    async def getfile(self, ctx: VoiceContext, *, path: str, scope: Scope = ONE_SERVER) -> None:
        await ctx.defer()
        if scope.everywhere:
            raise InvalidInputError(ONE_FOLDER)
        name, data = await self.tenants.get(scope.namespace).files.read_for_upload(path)
        await ctx.answer(
            f"`{name}` ({human_size(len(data))})",
            file=discord.File(io.BytesIO(data), filename=name),
        )

    @scoped_command(
        brief="Zip a dataset or a folder of this server's data (admins).",
        help="Zips a dataset (by name) or a folder of this server's part of the data folder "
        "into archives/NAME-TIME.zip and attaches it when it is small enough." + OWNER_VIEW,
        extras={"example": "archive smalltalk"},
    )
    @app_commands.describe(name="A dataset's name, or a folder like models/smalltalk")
    @app_commands.default_permissions(manage_guild=True)
    @is_admin()
    async def archive(self, ctx: VoiceContext, *, name: str, scope: Scope = ONE_SERVER) -> None:
        await ctx.defer()
        if scope.everywhere:
            raise InvalidInputError(ONE_FOLDER)
        async with ctx.typing():
            archive = await self.tenants.get(scope.namespace).files.archive(name)
        size = human_size(archive.size)
        summary = f"Archived {archive.files} file(s) to `{archive.path_relative}` ({size})."
        if archive.uploadable and archive.data is not None:
            filename = archive.path_relative.rsplit("/", 1)[-1]
            await ctx.answer(
                summary, file=discord.File(io.BytesIO(archive.data), filename=filename)
            )
        else:
            limit = human_size(self.max_upload_bytes)
            await ctx.answer(
                f"{summary} It is too large to attach (the limit is {limit}); "
                "it stays in the bot's data folder."
            )

    # ----- suggestions -------------------------------------------------------------------

    @getfile.autocomplete("path")
    @suggest
    @admins_only
    async def _paths(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[str]:
        tenant = self.tenants.get(await namespace_asked(interaction))
        return await tenant.files.suggest_paths(current)

    @archive.autocomplete("name")
    @suggest
    @admins_only
    async def _archivable(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[str]:
        tenant = self.tenants.get(await namespace_asked(interaction))
        names = matching(await tenant.datasets.names_async(), current)
        return names + await tenant.files.suggest_paths(current, folders=True)


async def setup(bot: VoiceChatBot) -> None:
    await bot.add_cog(Files(bot, bot.services.tenants, bot.settings.max_upload_mb * MB))
