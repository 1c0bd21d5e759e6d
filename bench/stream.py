"""Speech answers people feel (issue 13): `python -m bench.stream`.

(d) A 10 s voice message -> transcript reply, through the sandbox and the real bot:
    - the first message right after READY, with the engines warming up at start (WARM_UP=on),
      beside the same with WARM_UP=off (the cold load is paid by the message): fresh bots;
    - warm: later messages to a running bot.
(e) A 10-minute recording: time from sending it to the first transcript text shown in the
    growing reply, and the real-time factor to the final transcript, beside the service
    transcribing the same file without streaming (same run).

whisper tiny.en int8; the sandbox runs in the bot's process, as in the e2e tests.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time

from bench.common import median, percentile, table
from bot.config import load_settings
from bot.sandbox.runner import sandboxed_bot
from tests.fixtures import speech as samples

log = logging.getLogger(__name__)

REPLY_TARGET_S = 1.0
FIRST_TEXT_TARGET_S = 10.0
STARTS = 5
WARM_MESSAGES = 10
Row = tuple[str, str, str, bool | None]


def settings(folder: str, warm_up: bool):  # type: ignore[no-untyped-def]
    return load_settings(
        {
            "DATA_DIR": folder,
            "STT_ENGINES": "whisper",
            "TTS_ENGINES": "espeak",
            "LOG_LEVEL": "WARNING",
            "WARM_UP": "on" if warm_up else "off",
        },
        env_file=None,
    )


async def reply_time(sandbox, voice: bytes) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    sent = await sandbox.send(files=[("voice.ogg", voice)], voice_message=True)
    reply = await sandbox.wait_for_bot_message(after=sent, timeout=120)
    assert reply["content"].startswith("**Transcript:**"), reply["content"]
    return time.perf_counter() - start


async def first_after_start(voice: bytes, warm_up: bool) -> float:
    with tempfile.TemporaryDirectory() as folder:
        async with sandboxed_bot(settings(folder, warm_up)) as (sandbox, _bot):
            return await reply_time(sandbox, voice)


async def bench_replies() -> list[Row]:
    clip, _ = samples.sentences_for(10)
    voice = samples.voice_message(clip)
    warm_first = [await first_after_start(voice, True) for _ in range(STARTS)]
    cold_first = [await first_after_start(voice, False) for _ in range(STARTS)]
    with tempfile.TemporaryDirectory() as folder:
        async with sandboxed_bot(settings(folder, True)) as (sandbox, bot):
            assert bot.warming is not None
            await bot.warming
            warm = [await reply_time(sandbox, voice) for _ in range(WARM_MESSAGES)]
    seconds = len(clip) / 1000
    return [
        (
            f"(d) {seconds:.0f} s voice message → transcript, first after start (warm-up), p50",
            f"≤ {REPLY_TARGET_S:.1f} s",
            f"{median(warm_first):.2f} s (max {max(warm_first):.2f} s, {STARTS} starts)",
            median(warm_first) <= REPLY_TARGET_S,
        ),
        (
            "(d) same, first after start with WARM_UP=off (baseline: the message loads whisper)",
            "—",
            f"{median(cold_first):.2f} s",
            None,
        ),
        (
            "(d) same, bot running, p50",
            f"≤ {REPLY_TARGET_S:.1f} s",
            f"{median(warm):.2f} s (p90 {percentile(warm, 90):.2f} s, {WARM_MESSAGES} messages)",
            median(warm) <= REPLY_TARGET_S,
        ),
    ]


async def bench_long() -> list[Row]:
    clip, _ = samples.sentences_for(600)
    data = samples.voice_message(clip)
    seconds = len(clip) / 1000
    with tempfile.TemporaryDirectory() as folder:
        async with sandboxed_bot(settings(folder, True)) as (sandbox, bot):
            await bot.warming  # type: ignore[misc]
            first_text: list[float] = []

            def on_event(event: str, message: dict) -> None:
                if event == "MESSAGE_UPDATE" and "still transcribing…): " in message["content"]:
                    first_text.append(time.perf_counter())

            sandbox.listeners.append(on_event)
            start = time.perf_counter()
            sent = await sandbox.send(files=[("ten-minutes.ogg", data)])
            live = await sandbox.wait_for_bot_message(after=sent, timeout=120)
            shown_at = time.perf_counter()
            final = sandbox.messages[int(live["id"])]
            while not final["attachments"]:
                await asyncio.sleep(0.05)
            total = time.perf_counter() - start
            base_start = time.perf_counter()
            await bot.services.speech.transcribe(data, "ten-minutes.ogg", "en-US")
            baseline = time.perf_counter() - base_start
    first = (first_text[0] - start) if first_text else float("nan")
    return [
        (
            f"(e) {seconds / 60:.0f} min recording: the growing reply appears",
            "—",
            f"{shown_at - start:.1f} s",
            None,
        ),
        (
            "(e) time to the first transcript text",
            f"≤ {FIRST_TEXT_TARGET_S:.0f} s",
            f"{first:.1f} s",
            first <= FIRST_TEXT_TARGET_S,
        ),
        (
            "(e) RTF to the final transcript, streamed through the sandbox",
            "≤ 0.09",
            f"{total / seconds:.3f} ({total:.0f} s)",
            total / seconds <= 0.09,
        ),
        (
            "(e) RTF of the service alone, not streamed (baseline)",
            "—",
            f"{baseline / seconds:.3f} ({baseline:.0f} s)",
            None,
        ),
    ]


async def _run() -> str:
    rows = await bench_replies()
    rows += await bench_long()
    return "\n".join(
        [
            "## Speech answers (issue 13)",
            "",
            "Through the sandbox and the real bot, whisper tiny.en int8. Audio: the fixture "
            "sentences as a voice message (Opus in Ogg). Baselines measured in the same run.",
            "",
            table(rows),
        ]
    )


def run() -> str:
    return asyncio.run(_run())


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(run())
