"""Shared benchmark helpers: percentiles, an event-loop lag ticker, markdown tables."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


class LagTicker:
    """Measures how late a 10 ms ticker wakes up: the event loop's lag."""

    def __init__(self, interval: float = 0.010) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, time.perf_counter() - start - self.interval))

    def __enter__(self) -> LagTicker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    @property
    def p99_ms(self) -> float:
        return percentile(self.lags, 99) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.lags, default=0.0) * 1000


def table(rows: list[tuple[str, str, str, bool | None]]) -> str:
    """Rows of (figure, target, measured, passed) as a markdown table."""
    lines = ["| figure | target | measured | result |", "|---|---|---|---|"]
    for figure, target, measured, passed in rows:
        verdict = "—" if passed is None else ("pass" if passed else "**miss**")
        lines.append(f"| {figure} | {target} | {measured} | {verdict} |")
    return "\n".join(lines)


async def first_packet(sandbox: Any, bot: Any, content: str) -> float:
    """Seconds from sending `content` (a message or a command) to the first voice packet of
    what the bot said in the Sandbox server; returns once it has finished speaking."""
    started = time.monotonic()
    await sandbox.send(content)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not (
        heard := [u for u in sandbox.voice.utterances(sandbox.GUILD_ID) if u.started_at >= started]
    ):
        if loop.time() > deadline:
            raise TimeoutError("the bot said nothing")
        await asyncio.sleep(0.005)
    await bot.speaker.queue.wait_idle(sandbox.GUILD_ID)
    await asyncio.sleep(0.6)  # let the sandbox close the last utterance
    return float(heard[0].started_at - started)
