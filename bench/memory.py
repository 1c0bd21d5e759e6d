"""Idle memory (RSS) of this bot with its chat model loaded, against a bare discord.py bot.

Each bot runs in a fresh child process, connected to the sandbox (which lives in the same
process in both cases, so it adds the same to both). The model is trained in a worker
process, then loaded into the bot by answering one chat message.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
import tempfile

from bench.common import table
from bench.hi import bare_bot


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def bare() -> float:
    async with bare_bot() as sandbox:
        await sandbox.send("!hi")
        await asyncio.sleep(1)
        gc.collect()
        return rss_mb()


async def ours() -> float:
    from bot.config import load_settings
    from bot.sandbox.runner import sandboxed_bot

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"DATA_DIR": tmp, "LOG_LEVEL": "WARNING"}, env_file=None)
        async with sandboxed_bot(settings) as (sandbox, bot):
            tenant = bot.services.tenants.get(str(sandbox.GUILD_ID))
            job = await tenant.models.start_training("smalltalk")
            await bot.services.jobs.wait(job.id)
            sent = await sandbox.send(f"<@{sandbox.bot_user.id}> hello")
            await sandbox.wait_for_bot_message(after=sent, timeout=60)
            await asyncio.sleep(1)
            gc.collect()
            return rss_mb()


def child(kind: str) -> None:
    logging.basicConfig(level=logging.ERROR)
    print(asyncio.run(bare() if kind == "bare" else ours()))


def measure(kind: str) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--child", kind],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return float(out.stdout.strip().splitlines()[-1])


def run() -> str:
    bare_mb, ours_mb = measure("bare"), measure("bot")
    rows = [
        ("bare discord.py bot + sandbox, idle RSS", "—", f"{bare_mb:.0f} MB", None),
        ("this bot + sandbox, model loaded, idle RSS", "—", f"{ours_mb:.0f} MB", None),
        ("difference", "—", f"{ours_mb - bare_mb:+.0f} MB", None),
    ]
    return "## Idle memory with the chat model loaded\n\n" + table(rows)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        print(run())
