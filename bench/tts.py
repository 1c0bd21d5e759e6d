"""Text to speech at the service level: first audio of a stream, short replies, loop lag.

Figures (all measured in this run, engines loaded and warmed up first):
1. piper, a 5-sentence text: time to the first clip of `synthesize_stream` divided by the
   time `synthesize` takes for the whole text (the baseline). Target <= 0.4.
2. A short reply with piper and with espeak: synthesis time, the share of the end-to-end
   first-packet budget (0.5 s piper, 0.2 s espeak) that synthesis alone may use.
3. Event-loop lag (10 ms ticker, p99) while a 5-sentence stream is synthesised. Target <= 50 ms.

The end-to-end time from command to first voice packet is measured by bench.voice.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from pathlib import Path

from bench.common import LagTicker, median, table
from bot.errors import EngineUnavailableError
from bot.services.voice.synthesis import SynthesisService

FIVE_SENTENCES = (
    "Thanks for asking, I have been running without trouble all day. "
    "The weather report says it will rain this evening, so take an umbrella. "
    "Your last upload was transcribed in a few seconds and posted in the channel. "
    "If you want me to leave the voice channel, just type the leave command. "
    "Otherwise I will stay here and read the replies aloud as they come in."
)
SHORT_REPLY = "Sure, I can help you with that."
REPEATS = 5
STREAM_REPEATS = 5
STREAM_RATIO_TARGET = 0.4
SHORT_TARGETS = {"piper": 0.5, "espeak": 0.2}
LAG_TARGET_MS = 50.0


async def _timed(coro_factory, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        await coro_factory()
        times.append(time.perf_counter() - started)
    return times


async def _first_clip(service: SynthesisService, text: str) -> float:
    """Seconds until the stream's first clip.

    The rest is drained untimed, so no synthesis is left running in a thread to slow down
    the next measurement.
    """
    started = time.perf_counter()
    first = 0.0
    async for clip in service.synthesize_stream(text, "en-US"):
        first = first or time.perf_counter() - started
        clip.path.unlink(missing_ok=True)
    return first


async def _whole(service: SynthesisService, text: str) -> None:
    clip = await service.synthesize(text, "en-US")
    clip.path.unlink(missing_ok=True)


async def _all_clips(service: SynthesisService, text: str) -> None:
    async for clip in service.synthesize_stream(text, "en-US"):
        clip.path.unlink(missing_ok=True)


async def _measure(tmp: Path) -> list[tuple[str, str, str, bool | None]]:
    rows: list[tuple[str, str, str, bool | None]] = []
    piper = SynthesisService(["piper"], tmp_dir=tmp / "piper")
    espeak = SynthesisService(["espeak"], tmp_dir=tmp / "espeak")
    try:
        try:
            await _whole(piper, SHORT_REPLY)  # load the voice
        except EngineUnavailableError as exc:
            rows.append(("piper", "installed", f"unavailable ({exc})", False))
        else:
            wholes, firsts = [], []
            for _ in range(STREAM_REPEATS):  # alternate, so both see the same machine load
                wholes += await _timed(lambda: _whole(piper, FIVE_SENTENCES), 1)
                firsts.append(await _first_clip(piper, FIVE_SENTENCES))
            whole, first = median(wholes), median(firsts)
            ratio = median([f / w for f, w in zip(firsts, wholes, strict=True)])
            rows.append(("piper, 5 sentences: whole text (baseline)", "—", f"{whole:.2f} s", None))
            rows.append(
                ("piper, 5 sentences: first clip of the stream", "—", f"{first:.2f} s", None)
            )
            rows.append(
                (
                    "first clip / whole text (median of paired runs)",
                    f"≤ {STREAM_RATIO_TARGET}",
                    f"{ratio:.2f}",
                    ratio <= STREAM_RATIO_TARGET,
                )
            )
            with LagTicker() as ticker:
                await _all_clips(piper, FIVE_SENTENCES)
            rows.append(
                (
                    "event-loop lag while streaming (p99)",
                    f"≤ {LAG_TARGET_MS:.0f} ms",
                    f"{ticker.p99_ms:.1f} ms (max {ticker.max_ms:.1f})",
                    ticker.p99_ms <= LAG_TARGET_MS,
                )
            )
        for name, service in (("piper", piper), ("espeak", espeak)):
            rows.append(await _short_reply_row(name, service))
    finally:
        await piper.close()
        await espeak.close()
    return rows


async def _short_reply_row(name: str, service: SynthesisService) -> tuple[str, str, str, bool]:
    figure = f"{name}: short reply ({len(SHORT_REPLY)} chars)"
    target = SHORT_TARGETS[name]
    try:
        await _whole(service, SHORT_REPLY)  # warm up
    except EngineUnavailableError as exc:
        return figure, f"≤ {target} s", f"unavailable ({exc})", False
    seconds = median(await _timed(lambda: _whole(service, SHORT_REPLY), REPEATS))
    return figure, f"≤ {target} s", f"{seconds * 1000:.0f} ms", seconds <= target


def run() -> str:
    with tempfile.TemporaryDirectory(prefix="bench-tts-") as folder:
        rows = asyncio.run(_measure(Path(folder)))
    return (
        "## Text to speech (service level)\n\n"
        "Synthesis alone, engines warm; medians of 5 runs. "
        "Short-reply targets are the end-to-end first-packet budgets, which synthesis "
        "must fit inside.\n\n" + table(rows)
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    print(run())
