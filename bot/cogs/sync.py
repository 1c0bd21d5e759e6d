"""Registering the `/` commands and context menus with Discord ("sync").

At start, the commands are synced only when their definitions changed: the payload
discord.py would send, with where it goes, is hashed, and the hash of the last successful
sync is kept in DATA_DIR/app_commands.sha256. With SYNC_GUILD_ID they go to that one server,
where they show at once (for development); otherwise to every server. The owners' `!sync`
syncs whatever the hash says. A failed sync is logged with Discord's answer; the bot keeps
running with the commands Discord already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.bot import VoiceChatBot
from bot.core.checks import is_owner
from bot.core.context import VoiceContext

log = logging.getLogger(__name__)

HASH_FILE = "app_commands.sha256"
UNLOAD_WAIT_SECONDS = 5.0


def command_payload(
    tree: app_commands.CommandTree[Any], guild: discord.abc.Snowflake | None = None
) -> list[dict[str, Any]]:
    """What `tree.sync(guild=guild)` sends: every command and context menu, as Discord gets it."""
    return [command.to_dict(tree) for command in tree.get_commands(guild=guild)]


class CommandSync:
    """Syncs the bot's tree when its definitions changed since the last successful sync."""

    def __init__(self, bot: VoiceChatBot, data_dir: Path, guild_id: int | None) -> None:
        self.bot = bot
        self.hash_file = Path(data_dir) / HASH_FILE
        self.target = discord.Object(guild_id) if guild_id else None

    @property
    def where(self) -> str:
        return f"server {self.target.id}" if self.target else "every server"

    def payload(self) -> list[dict[str, Any]]:
        if self.target is not None:
            self.bot.tree.copy_global_to(guild=self.target)
        return command_payload(self.bot.tree, self.target)

    def digest(self, payload: list[dict[str, Any]]) -> str:
        where = {
            "application": self.bot.application_id,
            "guild": self.target.id if self.target else None,
        }
        text = json.dumps({"to": where, "commands": payload}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    async def sync(self, *, force: bool = False) -> int | None:
        """Sync if the definitions changed (or `force`): how many were synced, or None when
        nothing changed. Raises discord.HTTPException when Discord refuses."""
        digest = self.digest(self.payload())
        if not force and await asyncio.to_thread(self._read) == digest:
            log.info("/ commands unchanged since the last sync; not syncing")
            return None
        synced = await self.bot.tree.sync(guild=self.target)
        await asyncio.to_thread(self._write, digest)
        log.info("synced %d / commands and menus to %s", len(synced), self.where)
        return len(synced)

    def _read(self) -> str | None:
        try:
            return self.hash_file.read_text(encoding="ascii").strip()
        except OSError:
            return None

    def _write(self, digest: str) -> None:
        self.hash_file.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".app_commands-", dir=self.hash_file.parent)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(digest + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.hash_file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise


def describe_failure(exc: discord.HTTPException) -> str:
    """Discord's answer as discord.py words it (status, code and the refused fields)."""
    return str(exc)[:1800]


class Sync(commands.Cog):
    def __init__(self, bot: VoiceChatBot, syncer: CommandSync) -> None:
        self.bot = bot
        self.syncer = syncer
        self._task: asyncio.Task[None] | None = None
        self._syncing = False

    async def cog_load(self) -> None:
        self._task = asyncio.create_task(self._sync_at_start(), name="sync-commands")

    async def cog_unload(self) -> None:
        if self._task is not None and not self._task.done():
            if self._syncing:  # finish (briefly): a hash not written means a sync next start
                await asyncio.wait([self._task], timeout=UNLOAD_WAIT_SECONDS)
            self._task.cancel()

    async def _sync_at_start(self) -> None:
        try:
            await self.bot.wait_until_ready()  # every extension is loaded by then
            if not self.bot.runs_first_shard:  # one process per bot syncs: shard 0's
                return
            self._syncing = True
            await self.syncer.sync()
        except discord.HTTPException as exc:
            log.error("Discord refused the / commands (%s); keeping the ones it has", exc)
        except Exception:  # noqa: BLE001 - a sync must never stop the bot
            log.exception("syncing the / commands failed; keeping the ones Discord has")

    @commands.command(
        brief="Register the / commands with Discord now (bot owners).",
        help="Syncs the / commands and context menus to every server, or to SYNC_GUILD_ID, "
        "whether or not they changed since the last sync.",
        extras={"example": "sync"},
    )
    @is_owner()
    async def sync(self, ctx: VoiceContext) -> None:
        try:
            count = await self.syncer.sync(force=True)
        except discord.HTTPException as exc:
            log.error("Discord refused the / commands (%s)", exc)
            await ctx.answer(f"Discord refused the commands: {describe_failure(exc)}")
            return
        await ctx.answer(f"Synced {count} commands and menus to {self.syncer.where}.")


async def setup(bot: VoiceChatBot) -> None:
    syncer = CommandSync(bot, bot.settings.data_dir, bot.settings.sync_guild_id)
    await bot.add_cog(Sync(bot, syncer))
