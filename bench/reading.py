"""Reading aloud end to end: the real bot, the sandbox's voice server and real RTP packets.

- time from a typed message's arrival to the first voice packet, with piper and espeak, against
  `!say` of the same text in the same run (names off, so both speak the same words);
- event-loop lag (a 10 ms ticker's lateness) while five people in voice type for a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import tempfile
import time

from bench.common import LagTicker, first_packet, median, percentile, table
from bot.config import load_settings
from bot.sandbox.runner import bot_on, sandboxed_bot
from bot.sandbox.server import Sandbox
from bot.sandbox.world import SandboxUser

RUNS = 8
TEXT = "Hello there, nice to meet you."
TYPING_SECONDS = 60.0
TYPISTS = 5
LINES = (
    "did you see that?",
    "I'm going to grab a coffee, back in five minutes",
    "nice one!",
    "can someone share the link to the notes from yesterday",
    "lol",
    "ok so the plan is: we meet at eight, then head over together",
)


async def latencies(engine: str) -> tuple[list[float], list[float]]:
    """(typed → first packet, `!say` → first packet), RUNS each, interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            {"DATA_DIR": tmp, "TTS_ENGINES": engine, "LOG_LEVEL": "WARNING"}, env_file=None
        )
        async with sandboxed_bot(settings) as (sandbox, bot):
            await sandbox.join_voice("owner")
            await sandbox.send("!join")
            await sandbox.send("!voice read on")
            await sandbox.send("!voice read names off")
            await first_packet(sandbox, bot, f"!say {TEXT}")  # warm-up: loads the voice
            typed, said = [], []
            for _ in range(RUNS):
                typed.append(await first_packet(sandbox, bot, TEXT))
                said.append(await first_packet(sandbox, bot, f"!say {TEXT}"))
            return typed, said


def with_typists(sandbox: Sandbox, count: int) -> list[str]:
    """Add people to the Sandbox server until `count` can type (before the bot connects)."""
    world = sandbox.world
    guild = world.guilds["sandbox"]
    names = list(guild.members)
    for n in range(len(names), count):
        name = f"typist{n}"
        world.users[name] = SandboxUser(guild.id + 300 + n, name)
        names.append(name)
    world.guilds["sandbox"] = dataclasses.replace(guild, members=tuple(names))
    return names[:count]


async def typing_lag() -> tuple[LagTicker, int, int]:
    """Five people type for a minute; (lag ticker, messages typed, utterances heard)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            {"DATA_DIR": tmp, "TTS_ENGINES": "piper", "LOG_LEVEL": "WARNING"}, env_file=None
        )
        sandbox = Sandbox(admin_role=settings.admin_role)
        people = with_typists(sandbox, TYPISTS)
        await sandbox.start()
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(sandbox.stop)
            bot = await stack.enter_async_context(bot_on(sandbox, settings))
            for person in people:
                await sandbox.join_voice(person)
            await sandbox.send("!join")
            await sandbox.send("!voice read on")
            await first_packet(sandbox, bot, f"!say {TEXT}")
            heard_before = len(sandbox.voice.utterances(sandbox.GUILD_ID))
            sent = 0
            rng = random.Random(7)

            async def type_as(person: str) -> None:
                nonlocal sent
                end = time.monotonic() + TYPING_SECONDS
                while time.monotonic() < end:
                    await asyncio.sleep(rng.uniform(2.0, 8.0))
                    await sandbox.send(rng.choice(LINES), author=person)
                    sent += 1

            with LagTicker() as ticker:
                await asyncio.gather(*(type_as(p) for p in people))
            heard = len(sandbox.voice.utterances(sandbox.GUILD_ID)) - heard_before
            await sandbox.send("!stop")
            return ticker, sent, heard


def run() -> str:
    logging.getLogger("discord").setLevel(logging.WARNING)
    rows = []
    for engine in ("piper", "espeak"):
        typed, said = asyncio.run(latencies(engine))
        gap = median(typed) - median(said)
        for name, values in ((f"typed message ({engine})", typed), (f"`!say` ({engine})", said)):
            for label, figure in (("p50", median(values)), ("p90", percentile(values, 90))):
                rows.append((f"{name} → first voice packet, {label}", "—", _s(figure), None))
        rows.append((f"typed p50 − `!say` p50 ({engine})", "≤ 0.1 s", f"{gap:+.3f} s", gap <= 0.1))
    ticker, sent, heard = asyncio.run(typing_lag())
    typing = f"{TYPISTS} people typing for {TYPING_SECONDS:.0f} s"
    rows += [
        (f"{typing}: messages typed", "—", str(sent), None),
        (f"{typing}: utterances spoken meanwhile", "—", str(heard), None),
        (f"{typing}: event-loop lag p99", "≤ 50 ms", f"{ticker.p99_ms:.1f} ms", ticker.p99_ms < 50),
        (f"{typing}: event-loop lag max", "—", f"{ticker.max_ms:.1f} ms", None),
    ]
    return f"## Reading aloud ({RUNS} runs per engine, text: “{TEXT}”)\n\n" + table(rows)


def _s(seconds: float) -> str:
    return f"{seconds:.3f} s"


if __name__ == "__main__":
    print(run())
