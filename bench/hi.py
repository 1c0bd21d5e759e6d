"""Round trip of `!hi` through the sandbox: this bot against a bare discord.py bot.

Both bots are real discord.py clients connected to the same kind of sandbox in the same
run; the figure is the time from the user's message to the bot's reply arriving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from discord.ext import commands

from bench.common import median, percentile, table
from bot.config import load_settings
from bot.core.bot import intents, use_endpoints
from bot.sandbox.runner import sandboxed_bot
from bot.sandbox.server import Sandbox

ROUNDS = 500
BLOCKS = 5  # each bot runs 5 alternating blocks of 100 commands
WARMUP = 10


async def round_trips(sandbox: Sandbox, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        sent = await sandbox.send("!hi")
        await sandbox.wait_for_bot_message(after=sent, timeout=10)
        times.append(time.perf_counter() - started)
    return times


@contextlib.asynccontextmanager
async def bare_bot() -> AsyncIterator[Sandbox]:
    """The baseline: a plain commands.Bot with only a `!hi` command."""
    async with Sandbox() as sandbox:
        use_endpoints(sandbox.api_base, sandbox.gateway_url)
        bot = commands.Bot(
            command_prefix="!",
            intents=intents(),
            connector=aiohttp.TCPConnector(limit=0),
            guild_ready_timeout=0.05,
        )

        @bot.command()
        async def hi(ctx: commands.Context) -> None:  # type: ignore[type-arg]
            await ctx.reply(f"Hi {ctx.author.display_name}!")

        task = asyncio.create_task(bot.start("token"))
        while not bot.is_ready():
            await asyncio.sleep(0.02)
        try:
            yield sandbox
        finally:
            await bot.close()
            await task


async def measure() -> tuple[list[float], list[float]]:
    """Alternate blocks of the two bots, so background noise falls on both alike."""
    bare: list[float] = []
    ours: list[float] = []
    per_block = ROUNDS // BLOCKS
    for _ in range(BLOCKS):
        async with bare_bot() as sandbox:
            await round_trips(sandbox, WARMUP)
            bare += await round_trips(sandbox, per_block)
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(
                {
                    "DATA_DIR": tmp,
                    "LOG_LEVEL": "WARNING",
                    "INSTRUCTIONS_FILE": str(Path(tmp) / "x"),
                },
                env_file=None,
            )
            async with sandboxed_bot(settings) as (sandbox, _bot):
                await round_trips(sandbox, WARMUP)
                ours += await round_trips(sandbox, per_block)
    return bare, ours


def run() -> str:
    logging.getLogger("discord").setLevel(logging.WARNING)
    bare, ours = asyncio.run(measure())
    ratio = median(ours) / median(bare)
    rows = [
        ("`!hi` round trip p50, this bot", "—", f"{median(ours) * 1000:.2f} ms", None),
        ("`!hi` round trip p99, this bot", "—", f"{percentile(ours, 99) * 1000:.2f} ms", None),
        ("`!hi` round trip p50, bare discord.py bot", "—", f"{median(bare) * 1000:.2f} ms", None),
        (
            "`!hi` round trip p99, bare discord.py bot",
            "—",
            f"{percentile(bare, 99) * 1000:.2f} ms",
            None,
        ),
        ("ratio p50 (this / bare)", "≤ 1.2", f"{ratio:.2f}", ratio <= 1.2),
    ]
    return f"## `!hi` round trip ({ROUNDS} commands)\n\n" + table(rows)


if __name__ == "__main__":
    print(run())
