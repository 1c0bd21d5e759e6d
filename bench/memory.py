"""Idle memory (RSS) of this bot with its chat model loaded, against a bare discord.py bot.

Each bot runs in a process of its own (`bench.bot_process`), connected to a sandbox that runs
in this process, so neither figure includes the sandbox. This bot's chat model is loaded by
answering one chat message (a fresh install: the sample's shipped model). Measured with
WARM_UP=off (the chat model is the only model loaded) and with the default WARM_UP=on, which
also loads the first speech and voice engines with a model (whisper, piper) at start. The
processes the bot starts for its jobs (a fork server that imported scikit-learn, and its
workers, which stop after 5 idle minutes) are counted separately, by their proportional
share (PSS).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile

from bench.bot_process import BotProcess
from bench.common import table
from bot.sandbox.server import Sandbox

TARGET_MB = 120.0


async def bare() -> float:
    async with Sandbox() as sandbox, BotProcess(sandbox, {}, bare=True) as bot:
        sent = await sandbox.send("!hi")
        await sandbox.wait_for_bot_message(after=sent, timeout=30)
        await asyncio.sleep(1)
        return await bot.rss()


async def ours(warm_up: str) -> tuple[float, int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"DATA_DIR": tmp, "LOG_LEVEL": "WARNING", "WARM_UP": warm_up}
        async with Sandbox() as sandbox, BotProcess(sandbox, env) as bot:
            sent = await sandbox.send(f"<@{sandbox.bot_user.id}> hello")
            await sandbox.wait_for_bot_message(after=sent, timeout=60)
            await asyncio.sleep(5)  # what starts in the background at start-up is done by now
            count, helpers = await bot.helpers()
            return await bot.rss(), count, helpers


def run() -> str:
    logging.getLogger("discord").setLevel(logging.WARNING)
    bare_mb = asyncio.run(bare())
    ours_mb, count, helpers_mb = asyncio.run(ours("off"))
    warm_mb, _, _ = asyncio.run(ours("on"))
    rows = [
        ("bare discord.py bot, idle RSS (baseline)", "—", f"{bare_mb:.0f} MB", None),
        (
            "this bot, chat model loaded, idle RSS (WARM_UP=off)",
            f"≤ {TARGET_MB:.0f} MB",
            f"{ours_mb:.0f} MB ({ours_mb - bare_mb:+.0f} MB)",
            ours_mb <= TARGET_MB,
        ),
        (
            "same with WARM_UP=on (the default: whisper and piper loaded at start)",
            "—",
            f"{warm_mb:.0f} MB",
            None,
        ),
        (
            f"its job processes ({count}: fork server with scikit-learn, workers), PSS",
            "—",
            f"{helpers_mb:.0f} MB",
            None,
        ),
    ]
    return "## Idle memory with the chat model loaded (sandbox in another process)\n\n" + table(
        rows
    )


if __name__ == "__main__":
    print(run())
