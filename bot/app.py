"""The bot: a `commands.Bot` that owns the services and loads the cogs as extensions."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import discord
import yarl
from discord.ext import commands

from bot.cogs._context import VoiceContext
from bot.cogs.help import HelpCommand
from bot.config import Settings
from bot.wiring import Services

log = logging.getLogger(__name__)

EXTENSIONS = (
    "bot.cogs.errors",
    "bot.cogs.help",
    "bot.cogs.greeting",
    "bot.cogs.transcribe",
    "bot.cogs.voice",
    "bot.cogs.model",
    "bot.cogs.chat",
    "bot.cogs.listen",
    "bot.cogs.files",
    "bot.cogs.feedback",
    "bot.cogs.sync",
)


def use_endpoints(api_base: str | None, gateway_url: str | None) -> None:
    """Point discord.py at another REST base and gateway (a proxy or the local sandbox).

    discord.py keeps both as class attributes, so this is process-wide; None keeps Discord's own.
    """
    if api_base:
        discord.http.Route.BASE = api_base
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def intents() -> discord.Intents:
    """Only what the bot uses: guilds, messages and their content, DMs, voice states."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.message_content = True
    wanted.voice_states = True
    return wanted


class VoiceChatBot(commands.Bot):
    def __init__(self, settings: Settings, services: Services, **options: Any) -> None:
        super().__init__(
            command_prefix=settings.command_prefix,
            intents=intents(),
            help_command=HelpCommand(),
            case_insensitive=True,
            strip_after_prefix=True,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
            **options,
        )
        self.settings = settings
        self.services = services
        self.warming: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        log.info("loaded %d extensions", len(EXTENSIONS))
        if self.settings.warm_up:
            self.warming = asyncio.create_task(self.services.warm_up(), name="warm-up")
        # Everything built so far (modules, services, cogs) lives as long as the bot: keep it
        # out of the garbage collector's full passes, which otherwise stop the loop for tens
        # of milliseconds now and then.
        gc.collect()
        gc.freeze()

    async def get_context(  # type: ignore[override]
        self,
        origin: discord.Message | discord.Interaction[Any],
        /,
        *,
        cls: type[VoiceContext] = VoiceContext,
    ) -> VoiceContext:
        """Every request gets a VoiceContext: the one helper that knows how to answer it."""
        return await super().get_context(origin, cls=cls)

    async def on_ready(self) -> None:
        log.info("connected as %s (id %s) to %d servers", self.user, self.user.id, len(self.guilds))

    async def record_reply(
        self,
        ctx: VoiceContext,
        sent: discord.Message,
        user_text: str,
        reply: str,
        kind: str,
        dataset: str | None = None,
    ) -> None:
        """Log a reply the bot sent to a request (for !correct) and announce it: the voice
        cog speaks it when the author is in a voice channel."""
        await self.services.storage.log_reply(
            sent.id,
            ctx.channel.id,
            ctx.guild and ctx.guild.id,
            ctx.author.id,
            ctx.message.id,
            user_text,
            reply,
            kind,
            dataset,
        )
        self.dispatch("bot_reply", ctx, reply)

    async def close(self) -> None:
        if self.warming is not None:
            self.warming.cancel()
        # Running jobs finish first (briefly), so their results can still be posted.
        if self.services.jobs.pending:
            log.info("waiting for %d job(s) before stopping", self.services.jobs.pending)
        await self.services.jobs.close()
        await super().close()
        await self.services.close()
