"""Interactions through the sandbox: `/hi` against `!hi`, and `/transcribe` of a 10 s clip.

One bot, connected to the sandbox with the real discord.py client, answers both forms in the
same run, in alternating blocks, so background noise falls on both alike. A `/hi` round trip
runs from the user's interaction to the bot's response arriving (INTERACTION_CREATE, the
callback with its 200 body); a `!hi` round trip from the user's message to the bot's reply.
For `/transcribe`, the time to the defer is what Discord's 3-second rule is about, measured
while earlier clips are being recognized; the time to the transcript is the work itself
(whisper on this machine) plus the wait behind earlier clips.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from pathlib import Path

from bench.common import median, percentile, table
from bench.hi import round_trips
from bot.config import load_settings
from bot.sandbox.interactions import DEFERRED
from bot.sandbox.runner import sandboxed_bot
from bot.sandbox.server import Sandbox
from tests.fixtures import speech as samples

ROUNDS = 400
BLOCKS = 8  # alternating blocks of `!hi` and `/hi`, 50 commands each
WARMUP = 10
TRANSCRIPTIONS = 20
CLIP_SECONDS = 10
STAGGER = 0.3
RATIO_TARGET = 1.3
DEFER_P99_TARGET_MS = 200.0


async def slash_round_trips(sandbox: Sandbox, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        record = await sandbox.slash("hi")
        await record.reply(timeout=10)
        times.append(time.perf_counter() - started)
    return times


async def transcriptions(sandbox: Sandbox, clip: bytes) -> tuple[list[float], list[float]]:
    """(seconds to the defer, seconds to the transcript) of each `/transcribe`.

    They start STAGGER seconds apart from two people, so most defers happen while earlier
    clips are being recognized: the busy bot is the case the 3-second rule is about."""

    async def one(index: int) -> tuple[float, float]:
        await asyncio.sleep(index * STAGGER)
        author = ("owner", "moderator")[index % 2]
        started = time.perf_counter()
        record = await sandbox.slash("transcribe", {"file": ("clip.ogg", clip)}, author=author)
        await record.responded(timeout=10)
        deferred = time.perf_counter()
        reply = await record.reply(timeout=300)
        done = time.perf_counter()
        assert record.callback == DEFERRED, record.callback
        assert reply["content"].startswith("**Transcript"), reply["content"]
        return deferred - started, done - started

    results = await asyncio.gather(*(one(i) for i in range(TRANSCRIPTIONS)))
    return [d for d, _ in results], [t for _, t in results]


async def measure() -> dict[str, list[float]]:
    clip_segment, _said = await asyncio.to_thread(samples.sentences_for, CLIP_SECONDS)
    clip = await asyncio.to_thread(samples.voice_message, clip_segment)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            {
                "DATA_DIR": tmp,
                "LOG_LEVEL": "WARNING",
                "INSTRUCTIONS_FILE": str(Path(tmp) / "x"),
                "STT_ENGINES": "whisper",
            },
            env_file=None,
        )
        async with sandboxed_bot(settings) as (sandbox, _bot):
            await slash_round_trips(sandbox, WARMUP)  # also waits for the first sync
            await round_trips(sandbox, WARMUP)
            prefix: list[float] = []
            slash: list[float] = []
            per_block = ROUNDS // BLOCKS
            for block in range(BLOCKS):
                if block % 2:
                    slash += await slash_round_trips(sandbox, per_block)
                else:
                    prefix += await round_trips(sandbox, per_block)
            warm = await sandbox.slash("transcribe", {"file": ("warm.ogg", clip)})
            await warm.reply(timeout=300)  # whisper's model is loaded once, before measuring
            to_defer, to_text = await transcriptions(sandbox, clip)
            late = len(sandbox.interactions.late)
    return {"prefix": prefix, "slash": slash, "defer": to_defer, "text": to_text, "late": [late]}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def run() -> str:
    logging.getLogger("discord").setLevel(logging.WARNING)
    found = asyncio.run(measure())
    prefix, slash, defer, text = found["prefix"], found["slash"], found["defer"], found["text"]
    ratio = median(slash) / median(prefix)
    defer_p99 = percentile(defer, 99) * 1000
    rows = [
        ("`/hi` round trip p50", "—", ms(median(slash)), None),
        ("`/hi` round trip p99", "—", ms(percentile(slash, 99)), None),
        ("`!hi` round trip p50 (same bot, same run)", "—", ms(median(prefix)), None),
        ("`!hi` round trip p99", "—", ms(percentile(prefix, 99)), None),
        ("ratio p50 (`/hi` / `!hi`)", f"≤ {RATIO_TARGET}", f"{ratio:.2f}", ratio <= RATIO_TARGET),
        (
            f"`/transcribe` of a {CLIP_SECONDS} s clip: to the defer, p99 (bot busy)",
            f"≤ {DEFER_P99_TARGET_MS:.0f} ms",
            f"{defer_p99:.1f} ms (p50 {median(defer) * 1000:.1f} ms)",
            defer_p99 <= DEFER_P99_TARGET_MS,
        ),
        (
            "`/transcribe`: to the transcript, p50 / p99 (queued behind earlier clips)",
            "—",
            f"{median(text):.2f} s / {percentile(text, 99):.2f} s",
            None,
        ),
        ("first responses later than 3 s (Discord's 10062)", "0", str(found["late"][0]), None),
    ]
    return (
        f"## Interactions: `/hi` vs `!hi` ({ROUNDS} commands), `/transcribe` "
        f"({TRANSCRIPTIONS} clips from two people, {STAGGER} s apart)\n\n" + table(rows)
    )


if __name__ == "__main__":
    print(run())
