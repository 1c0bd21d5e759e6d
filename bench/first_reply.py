"""The first chat reply on a fresh install, and the bot's start → READY time.

Each run starts the bot in a fresh process (`bench.bot_process`) on an empty data folder,
against a sandbox in this process; as soon as it is READY a user mentions it with "hello".
The figure is the time from that message to the bot's answer (target 1 s). Baseline in the
same run: the answer to the next message, when the model is already loaded.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
import time

from bench.bot_process import BotProcess
from bench.common import table
from bot.sandbox.server import Sandbox

RUNS = 3
TARGET_S = 1.0
GREETING = "Hello! Nice to see you."


async def ask(sandbox: Sandbox, text: str) -> float:
    started = time.monotonic()
    sent = await sandbox.send(f"<@{sandbox.bot_user.id}> {text}")
    reply = await sandbox.wait_for_bot_message(after=sent, timeout=120)
    if not reply["content"].startswith(GREETING):
        raise RuntimeError(f"unexpected answer: {reply['content']}")
    return time.monotonic() - started


async def fresh_install() -> tuple[float, float, float]:
    """(start → READY, first reply, second reply) in seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"DATA_DIR": tmp, "LOG_LEVEL": "WARNING"}
        async with Sandbox() as sandbox, BotProcess(sandbox, env) as bot:
            first = await ask(sandbox, "hello")
            second = await ask(sandbox, "hello there")
            return bot.ready_seconds, first, second


def run() -> str:
    logging.getLogger("discord").setLevel(logging.WARNING)
    runs = [asyncio.run(fresh_install()) for _ in range(RUNS)]
    ready, first, second = (statistics.median(column) for column in zip(*runs, strict=True))
    worst = max(run[1] for run in runs)
    rows = [
        (
            f"first chat reply on a fresh install, median of {RUNS} (worst)",
            f"≤ {TARGET_S:.1f} s",
            f"{first * 1000:.0f} ms ({worst * 1000:.0f} ms)",
            worst <= TARGET_S,
        ),
        ("the next reply, model loaded (baseline)", "—", f"{second * 1000:.1f} ms", None),
        (
            "bot start → READY (new process: imports, services, connecting)",
            "—",
            f"{ready:.2f} s",
            None,
        ),
    ]
    notes = (
        "The sample dataset's model ships trained (`bot/samples/models`); the server's first "
        "message copies it into the server's own model folder, checked against its recorded "
        "sha256, and loads it. Before, that message started a training and the answer came "
        "when it ended (a worker to start and scikit-learn to import: 2-3 s)."
    )
    return "## First chat reply on a fresh install\n\n" + table(rows) + "\n\n" + notes


if __name__ == "__main__":
    print(run())
