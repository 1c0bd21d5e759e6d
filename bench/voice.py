"""Spoken replies end to end: the real bot, the sandbox's voice server and real RTP packets.

- time from a `!say` command's arrival to the first voice packet, with piper and espeak;
- for a 5-sentence text, time to the first packet against the time to synthesise it all;
- event-loop lag (a 10 ms ticker's lateness) while the bot speaks.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time

from bench.common import LagTicker, median, percentile, table
from bot.app import VoiceChatBot
from bot.config import load_settings
from bot.sandbox.runner import sandboxed_bot
from bot.sandbox.server import Sandbox

RUNS = 8
SHORT = "Hello there, nice to meet you."
FIVE_SENTENCES = (
    "The weather today is calm and bright. A light breeze moves through the trees. "
    "People walk slowly along the river. Somewhere a dog is barking at a bird. "
    "In the evening the sky turns a soft orange."
)


async def first_packet_latencies(engine: str, runs: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            {
                "DATA_DIR": tmp,
                "TTS_ENGINES": engine,
                "LOG_LEVEL": "WARNING",
            },
            env_file=None,
        )
        async with sandboxed_bot(settings) as (sandbox, bot):
            await sandbox.join_voice("owner")
            await say_and_wait(sandbox, bot, SHORT)  # warm-up: joins voice, loads the voice
            return [await say_and_wait(sandbox, bot, SHORT) for _ in range(runs)]


async def say_and_wait(sandbox: Sandbox, bot: VoiceChatBot, text: str) -> float:
    """Seconds from sending `!say text` to the first packet of what the bot said."""
    started = time.monotonic()
    await sandbox.send(f"!say {text}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not (
        heard := [u for u in sandbox.voice.utterances(sandbox.GUILD_ID) if u.started_at >= started]
    ):
        if loop.time() > deadline:
            raise TimeoutError("the bot said nothing")
        await asyncio.sleep(0.01)
    await bot.get_cog("Voice").queue.wait_idle(sandbox.GUILD_ID)
    await asyncio.sleep(0.6)  # let the sandbox close the last utterance
    return heard[0].started_at - started


async def long_text() -> tuple[float, float, LagTicker]:
    """(time to first packet, time to synthesise the whole text, lag while speaking)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            {
                "DATA_DIR": tmp,
                "TTS_ENGINES": "piper",
                "LOG_LEVEL": "WARNING",
                "MAX_SPOKEN_CHARS": "1000",
            },
            env_file=None,
        )
        async with sandboxed_bot(settings) as (sandbox, bot):
            await sandbox.join_voice("owner")
            await say_and_wait(sandbox, bot, SHORT)
            whole_started = time.monotonic()
            clip = await bot.services.synthesis.synthesize(FIVE_SENTENCES, "en-US")
            whole = time.monotonic() - whole_started
            clip.path.unlink()
            with LagTicker() as ticker:
                first = await say_and_wait(sandbox, bot, FIVE_SENTENCES)
            return first, whole, ticker


def run() -> str:
    logging.getLogger("discord").setLevel(logging.WARNING)
    piper = asyncio.run(first_packet_latencies("piper", RUNS))
    espeak = asyncio.run(first_packet_latencies("espeak", RUNS))
    first, whole, ticker = asyncio.run(long_text())
    ratio = first / whole
    rows = [
        (
            "`!say` → first voice packet, piper, p50",
            "≤ 0.5 s",
            f"{median(piper):.3f} s",
            median(piper) <= 0.5,
        ),
        ("`!say` → first voice packet, piper, p90", "—", f"{percentile(piper, 90):.3f} s", None),
        (
            "`!say` → first voice packet, espeak, p50",
            "≤ 0.2 s",
            f"{median(espeak):.3f} s",
            median(espeak) <= 0.2,
        ),
        ("`!say` → first voice packet, espeak, p90", "—", f"{percentile(espeak, 90):.3f} s", None),
        ("5 sentences: synthesise the whole text (piper)", "—", f"{whole:.2f} s", None),
        ("5 sentences: command → first packet (piper)", "—", f"{first:.2f} s", None),
        ("first packet ÷ whole synthesis", "≤ 0.4", f"{ratio:.2f}", ratio <= 0.4),
        (
            "event-loop lag p99 while speaking",
            "≤ 50 ms",
            f"{ticker.p99_ms:.1f} ms",
            ticker.p99_ms <= 50,
        ),
        ("event-loop lag max while speaking", "—", f"{ticker.max_ms:.1f} ms", None),
    ]
    return f"## Spoken replies ({RUNS} runs per engine, short reply: “{SHORT}”)\n\n" + table(rows)


if __name__ == "__main__":
    print(run())
