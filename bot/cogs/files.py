"""`!getfile` and `!archive`: admin-only access to the server's own part of the data folder.

Each has a `/` twin (`/getfile path: server:`, `/archive name: server:`) with the same checks;
both defer at once, since reading or zipping a large file takes a while.
"""

from __future__ import annotations

import io

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import VoiceChatBot
from bot.cogs._checks import is_admin, require_admin, scope_for, scope_from_option
from bot.cogs._context import VoiceContext, context_of
from bot.cogs._suggest import admins_only, matching, namespace_asked, owners_only, suggest
from bot.errors import InvalidInputError
from bot.services.tenancy.namespaces import Scope
from bot.services.tenancy.tenants import Tenants
from bot.services.text import MB, human_size

OWNER_VIEW = " Bot owners: `--server ID` reaches another server's folder."
GETFILE_BRIEF = "Send a file from this server's data folder (admins)."
ARCHIVE_BRIEF = "Zip a dataset or a folder of this server's data (admins)."
ONE_SERVER = "This works on one server's folder: name it (`--server ID`, or `server:` with `/`)."
SERVER_OPTION = "Bot owners: a server id (dm-USERID, legacy) whose folder to use"


class Files(commands.Cog):
    """Each server sees only its own folder (datasets, models, archives); the database, the
    logs and other servers' folders are never reachable from here."""

    def __init__(self, bot: VoiceChatBot, tenants: Tenants, max_upload_bytes: int) -> None:
        self.bot = bot
        self.tenants = tenants
        self.max_upload_bytes = max_upload_bytes

    @commands.command(
        brief=GETFILE_BRIEF,
        help="Sends a file from this server's part of the data folder. PATH is relative to it, "
        "e.g. datasets/mydata.csv or models/smalltalk/manifest.json. Files larger than the "
        "upload limit are refused." + OWNER_VIEW,
        extras={"example": "getfile models/smalltalk/manifest.json"},
    )
    @is_admin()
    async def getfile(self, ctx: VoiceContext, *, path: str) -> None:
        scope, path = await scope_for(ctx, path)
        await self.send_file(ctx, scope, path)

    @app_commands.command(name="getfile", description=GETFILE_BRIEF)
    @app_commands.describe(
        path="A path inside the data folder, like datasets/mydata.csv", server=SERVER_OPTION
    )
    @app_commands.default_permissions(manage_guild=True)
    async def getfile_slash(
        self,
        interaction: discord.Interaction[VoiceChatBot],
        path: str,
        server: str | None = None,
    ) -> None:
        ctx = await context_of(self.bot, interaction)
        await require_admin(ctx)
        await self.send_file(ctx, await scope_from_option(ctx, server), path)

    async def send_file(self, ctx: VoiceContext, scope: Scope, path: str) -> None:
        await ctx.defer()
        if scope.everywhere:
            raise InvalidInputError(ONE_SERVER)
        name, data = await self.tenants.get(scope.namespace).files.read_for_upload(path)
        await ctx.answer(
            f"`{name}` ({human_size(len(data))})",
            file=discord.File(io.BytesIO(data), filename=name),
        )

    @commands.command(
        brief=ARCHIVE_BRIEF,
        help="Zips a dataset (by name) or a folder of this server's part of the data folder "
        "into archives/NAME-TIME.zip and attaches it when it is small enough." + OWNER_VIEW,
        extras={"example": "archive smalltalk"},
    )
    @is_admin()
    async def archive(self, ctx: VoiceContext, *, name: str) -> None:
        scope, name = await scope_for(ctx, name)
        await self.make_archive(ctx, scope, name)

    @app_commands.command(name="archive", description=ARCHIVE_BRIEF)
    @app_commands.describe(
        name="A dataset's name, or a folder like models/smalltalk", server=SERVER_OPTION
    )
    @app_commands.default_permissions(manage_guild=True)
    async def archive_slash(
        self,
        interaction: discord.Interaction[VoiceChatBot],
        name: str,
        server: str | None = None,
    ) -> None:
        ctx = await context_of(self.bot, interaction)
        await require_admin(ctx)
        await self.make_archive(ctx, await scope_from_option(ctx, server), name)

    async def make_archive(self, ctx: VoiceContext, scope: Scope, name: str) -> None:
        await ctx.defer()
        if scope.everywhere:
            raise InvalidInputError(ONE_SERVER)
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

    @getfile_slash.autocomplete("path")
    @suggest
    @admins_only
    async def _paths(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[str]:
        tenant = self.tenants.get(await namespace_asked(interaction))
        return await tenant.files.suggest_paths(current)

    @archive_slash.autocomplete("name")
    @suggest
    @admins_only
    async def _archivable(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[str]:
        tenant = self.tenants.get(await namespace_asked(interaction))
        names = matching(await tenant.datasets.names_async(), current)
        return names + await tenant.files.suggest_paths(current, folders=True)

    @getfile_slash.autocomplete("server")
    @archive_slash.autocomplete("server")
    @suggest
    @owners_only
    async def _servers(
        self, interaction: discord.Interaction[VoiceChatBot], current: str
    ) -> list[str]:
        return matching(self.tenants.namespaces(), current)


async def setup(bot: VoiceChatBot) -> None:
    await bot.add_cog(Files(bot, bot.services.tenants, bot.settings.max_upload_mb * MB))
