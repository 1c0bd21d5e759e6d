"""What the gateway and the commands tell the metrics, and the shards' part of `/readyz`.

- `discord_connected{shard}` follows the shard events (connect, ready and resumed: 1;
  disconnect: 0), and readiness wants every shard of this process at 1.
- `discord_latency{shard}`, the server count and the shard count are read every 5 s.
- Each `!` or hybrid invocation counts in `discord_event_on_command`, each interaction in
  `discord_event_on_interaction`; commands that end well count as ok here, failed ones in
  the error handler (cogs/_metrics.py).

Serving them is services/ops/observe.py's; without METRICS_PORT nothing runs but the counting.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.core.bot import VoiceChatBot
from bot.core.command_metrics import count_command, count_interaction
from bot.core.context import VoiceContext
from bot.metrics import CONNECTED, GUILDS, LATENCY, ON_COMMAND, ON_INTERACTION, SHARDS
from bot.services.ops.observe import NotReady, Observer

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0


class Observe(commands.Cog):
    def __init__(self, bot: VoiceChatBot, observer: Observer | None) -> None:
        self.bot = bot
        self.observer = observer
        self.connected: dict[int, bool] = {}

    async def cog_load(self) -> None:
        if self.observer is not None:
            self.observer.add_check("gateway", self.shards_connected)
            self.refresh.start()

    async def cog_unload(self) -> None:
        self.refresh.cancel()

    # ----- the gateway ----------------------------------------------------------------

    def own_shards(self) -> list[int]:
        """The shards this process runs; empty until it knows the shard count."""
        if self.bot.shard_ids is not None:
            return list(self.bot.shard_ids)
        return list(range(self.bot.shard_count or 0))

    async def shards_connected(self) -> None:
        """Readiness: every shard of this process is connected to the gateway."""
        shards = self.own_shards()
        if not shards:
            raise NotReady("not connected yet")
        down = [str(shard) for shard in shards if not self.connected.get(shard)]
        if down:
            raise NotReady(f"shard {', '.join(down)} disconnected")

    def _mark(self, shard_id: int, connected: bool) -> None:
        if self.connected.get(shard_id) != connected:
            log.debug("shard %d %s", shard_id, "connected" if connected else "disconnected")
        self.connected[shard_id] = connected
        CONNECTED.labels(str(shard_id)).set(1 if connected else 0)

    @commands.Cog.listener()
    async def on_shard_connect(self, shard_id: int) -> None:
        self._mark(shard_id, True)

    @commands.Cog.listener()
    async def on_shard_ready(self, shard_id: int) -> None:
        self._mark(shard_id, True)
        self.refresh_gauges()

    @commands.Cog.listener()
    async def on_shard_resumed(self, shard_id: int) -> None:
        self._mark(shard_id, True)

    @commands.Cog.listener()
    async def on_shard_disconnect(self, shard_id: int) -> None:
        self._mark(shard_id, False)

    def refresh_gauges(self) -> None:
        SHARDS.set(len(self.own_shards()))
        GUILDS.set(len(self.bot.guilds))
        for shard_id, latency in self.bot.latencies:
            if math.isfinite(latency):  # no heartbeat answered yet: infinite
                LATENCY.labels(str(shard_id)).set(latency)

    @tasks.loop(seconds=REFRESH_SECONDS)
    async def refresh(self) -> None:
        self.refresh_gauges()

    # ----- commands and interactions --------------------------------------------------

    @commands.Cog.listener()
    async def on_command(self, ctx: VoiceContext) -> None:
        if ctx.command is not None:
            ON_COMMAND.labels(ctx.command.qualified_name).inc()

    @commands.Cog.listener()
    async def on_command_completion(self, ctx: VoiceContext) -> None:
        count_command(ctx)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        command = interaction.command
        name = command.qualified_name if command is not None else ""
        ON_INTERACTION.labels(str(self.shard_of(interaction)), interaction.type.name, name).inc()

    @commands.Cog.listener()
    async def on_app_command_completion(
        self, interaction: discord.Interaction[Any], command: Any
    ) -> None:
        if isinstance(command, app_commands.Command | app_commands.ContextMenu) and not (
            isinstance(command, commands.hybrid.HybridAppCommand)  # counted as a command
        ):
            count_interaction(interaction)

    def shard_of(self, interaction: discord.Interaction[Any]) -> int:
        """The shard of the interaction's server (DMs: shard 0, as Discord routes them)."""
        if interaction.guild_id is None:
            return 0
        return (interaction.guild_id >> 22) % (self.bot.shard_count or 1)


async def setup(bot: VoiceChatBot) -> None:
    await bot.add_cog(Observe(bot, bot.services.observer))
