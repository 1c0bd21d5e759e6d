"""The bot: a `commands.AutoShardedBot` that owns the services and loads the cogs as extensions.

It runs the shards SHARD_IDS of SHARD_COUNT (default: every shard of the count Discord
recommends); several processes with disjoint slices together serve every server once, and
take turns logging in through Redis when REDIS_URL is set (`core/gateway.py`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import discord
import yarl
from discord.ext import commands

from bot.config import Settings
from bot.core.context import VoiceContext
from bot.core.gateway import LoginTurns
from bot.core.help import HelpCommand
from bot.core.speaker import Speaker
from bot.wiring import Services, build_login_turns

log = logging.getLogger(__name__)

EXTENSIONS = (
    "bot.cogs.errors",
    "bot.cogs.help",
    "bot.cogs.greeting",
    "bot.cogs.transcribe",
    "bot.cogs.voice",
    "bot.cogs.reading",
    "bot.cogs.model",
    "bot.cogs.chat",
    "bot.cogs.listen",
    "bot.cogs.files",
    "bot.cogs.feedback",
    "bot.cogs.sync",
    "bot.cogs.observe",
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


class VoiceChatBot(commands.AutoShardedBot):
    def __init__(self, settings: Settings, services: Services, **options: Any) -> None:
        super().__init__(
            shard_count=settings.shard_count,
            shard_ids=list(settings.shard_ids) if settings.shard_ids is not None else None,
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
        # The bot's voice in every server, shared by voice, reading aloud and listening.
        self.speaker = Speaker(
            self, settings, services.synthesis, services.server_settings, services.languages
        )
        self.warming: asyncio.Task[None] | None = None
        self.login_turns: LoginTurns | None = build_login_turns(settings)
        self.max_concurrency = 1  # logins per 5 s, from GET /gateway/bot when it matters

    @property
    def runs_first_shard(self) -> bool:
        """Shard 0 gets the DMs; its process does the once-per-bot work (command sync)."""
        return self.shard_ids is None or 0 in self.shard_ids

    async def launch_shards(self) -> None:
        """Ask `GET /gateway/bot` once for the recommended count (when SHARD_COUNT is unset)
        and `max_concurrency` (for REDIS_URL's login turns), then connect the shards.

        With the count known, discord.py connects to its DEFAULT_GATEWAY, so a configured
        DISCORD_GATEWAY_URL is kept rather than the URL the endpoint returns."""
        if self.shard_count is None or self.login_turns is not None:
            count, _url, limits = await self.http.get_bot_gateway()
            self.shard_count = self.shard_count or count
            self.max_concurrency = max(int(limits.get("max_concurrency", 1)), 1)
        slice_ = self.shard_ids if self.shard_ids is not None else range(self.shard_count)
        log.info("running shard(s) %s of %d", _shown_ids(slice_), self.shard_count)
        await super().launch_shards()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Wait for this shard's login turn: through Redis across processes when REDIS_URL
        is set, else discord.py's own pacing within this process."""
        if self.login_turns is None:
            await super().before_identify_hook(shard_id, initial=initial)
            return
        assert self.user is not None  # logged in over REST before any shard connects
        await self.login_turns.wait_turn(self.user.id, shard_id or 0, self.max_concurrency)

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        log.info("loaded %d extensions", len(EXTENSIONS))
        if self.services.observer is not None:  # stopped with the services, in close()
            await self.services.observer.start()
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
        shards = _shown_ids(sorted(self.shards))
        log.info(
            "connected as %s (id %s) to %d servers on shard(s) %s of %s",
            self.user,
            self.user.id,
            len(self.guilds),
            shards,
            self.shard_count,
        )

    async def on_shard_ready(self, shard_id: int) -> None:
        log.info("shard %d of %s is ready", shard_id, self.shard_count)

    async def on_command_completion(self, ctx: VoiceContext) -> None:
        # Which process served which server: for operators of several (and the cluster tests).
        name = ctx.command.qualified_name if ctx.command else "?"
        where = f"server {ctx.guild.id} (shard {ctx.guild.shard_id})" if ctx.guild else "a DM"
        log.debug("ran %s in %s", name, where)

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
            namespace=ctx.namespace,
        )
        self.dispatch("bot_reply", ctx, reply)

    async def close(self) -> None:
        if self.warming is not None:
            self.warming.cancel()
        # Running jobs finish first (briefly), so their results can still be posted.
        if self.services.jobs.pending:
            log.info("waiting for %d job(s) before stopping", self.services.jobs.pending)
        await self.services.jobs.close()
        if not isinstance(self.loop, asyncio.AbstractEventLoop):
            # Never logged in (tests that only load the extensions): AutoShardedClient.close
            # needs the event queue that login's set-up creates.
            await self._async_setup_hook()
        await super().close()
        await self.speaker.close()  # before synthesis: queued clips are deleted
        await self.services.close()
        if self.login_turns is not None:
            await self.login_turns.close()


def _shown_ids(ids: Any) -> str:
    """`0-3` for a run of ids, `0, 2` otherwise."""
    ids = list(ids)
    if len(ids) > 2 and ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}-{ids[-1]}"
    return ", ".join(map(str, ids))
