"""Idle memory (RSS) of this bot with its chat model loaded, against a bare discord.py bot.

Each bot runs in a process of its own (`bench.bot_process`), connected to a sandbox that runs
in this process, so neither figure includes the sandbox. This bot's chat model is loaded by
answering one chat message (a fresh install: the sample's shipped model). Measured with the
default settings (WARM_UP=on, but the engines named first, google and gtts, are online and
have nothing to load: the chat model is the only model loaded), and with offline engines named
first (STT_ENGINES=whisper, TTS_ENGINES=piper), which WARM_UP loads at start. The
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


async def ours(engines: dict[str, str]) -> tuple[float, int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"DATA_DIR": tmp, "LOG_LEVEL": "WARNING", **engines}
        async with Sandbox() as sandbox, BotProcess(sandbox, env) as bot:
            sent = await sandbox.send(f"<@{sandbox.bot_user.id}> hello")
            await sandbox.wait_for_bot_message(after=sent, timeout=60)
            await asyncio.sleep(5)  # what starts in the background at start-up is done by now
            count, helpers = await bot.helpers()
            return await bot.rss(), count, helpers


def run() -> str:
    logging.getLogger("discord").setLevel(logging.WARNING)
    bare_mb = asyncio.run(bare())
    ours_mb, count, helpers_mb = asyncio.run(ours({}))
    warm_mb, _, _ = asyncio.run(ours({"STT_ENGINES": "whisper", "TTS_ENGINES": "piper"}))
    rows = [
        ("bare discord.py bot, idle RSS (baseline)", "—", f"{bare_mb:.0f} MB", None),
        (
            "this bot, chat model loaded, idle RSS (default settings)",
            f"≤ {TARGET_MB:.0f} MB",
            f"{ours_mb:.0f} MB ({ours_mb - bare_mb:+.0f} MB)",
            ours_mb <= TARGET_MB,
        ),
        (
            "same with whisper and piper named first (WARM_UP loads them at start)",
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
