"""What serving metrics costs the bot: `python -m bench.metrics`.

The bot runs in a process of its own (`bench.bot_process`, a 10 ms lag ticker in its event
loop) against a sandbox in the benchmark's process, in alternating blocks: metrics off
(METRICS_PORT unset), then on (METRICS_PORT set, and a scraper here fetching `/metrics` every
second, as Prometheus would), each block a fresh bot process answering `!hi` for
BLOCK_SECONDS. Figures: `!hi` round trip p50 on / off (target ≤ 1.1), and the event-loop lag
p99 on vs off (target: within the noise, the spread between the off blocks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.bot_process import BotProcess
from bench.common import median, percentile, table
from bot.sandbox.server import Sandbox
from tests.processes import free_port

log = logging.getLogger(__name__)

BLOCKS = 6  # off, on, off, on...: machine noise falls on both alike
BLOCK_SECONDS = 12.0  # about a dozen scrapes per "on" block
WARMUP = 10
SCRAPE_EVERY = 1.0
SERVING_WAIT = 10.0  # s after READY for /metrics to answer before calling serving missing
RATIO_TARGET = 1.1
MIN_NOISE_MS = 1.0


class ServingMissing(Exception):
    """METRICS_PORT is set but the bot process serves no /metrics."""


@dataclass
class Mode:
    trips: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)  # every tick's lag, seconds
    block_p99s: list[float] = field(default_factory=list)
    scrapes: list[float] = field(default_factory=list)  # seconds each scrape took
    scrape_failures: int = 0
    size: int = 0  # bytes of the last /metrics


async def scrape(http: aiohttp.ClientSession, url: str, mode: Mode) -> None:
    """Fetch `url` every SCRAPE_EVERY seconds until cancelled."""
    while True:
        started = time.perf_counter()
        try:
            async with http.get(url) as answer:
                body = await answer.read()
                if answer.status == 200:
                    mode.scrapes.append(time.perf_counter() - started)
                    mode.size = len(body)
                else:
                    mode.scrape_failures += 1
        except aiohttp.ClientError:
            mode.scrape_failures += 1
        await asyncio.sleep(max(0.0, SCRAPE_EVERY - (time.perf_counter() - started)))


async def wait_serving(http: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + SERVING_WAIT
    while True:
        try:
            async with http.get(url) as answer:
                if answer.status == 200 and b"voicechat_" in await answer.read():
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise ServingMissing(url)
        await asyncio.sleep(0.2)


async def round_trips(sandbox: Sandbox, seconds: float | None, rounds: int = 0) -> list[float]:
    """`!hi` round trips, for `seconds` (or `rounds` of them)."""
    times: list[float] = []
    ends = time.perf_counter() + (seconds or 0)
    while (len(times) < rounds) if seconds is None else (time.perf_counter() < ends):
        started = time.perf_counter()
        sent = await sandbox.send("!hi")
        await sandbox.wait_for_bot_message(after=sent, timeout=10)
        times.append(time.perf_counter() - started)
    return times


@contextlib.asynccontextmanager
async def bot(sandbox: Sandbox, env: dict[str, str]) -> AsyncIterator[BotProcess]:
    with tempfile.TemporaryDirectory() as tmp:
        base = {
            "DATA_DIR": tmp,
            "LOG_LEVEL": "WARNING",
            "WARM_UP": "off",
            "INSTRUCTIONS_FILE": str(Path(tmp) / "none"),
        }
        async with BotProcess(sandbox, base | env) as process:
            yield process


async def block(http: aiohttp.ClientSession, mode: Mode, metrics_on: bool) -> None:
    port = free_port()
    env = {"METRICS_HOST": "127.0.0.1", "METRICS_PORT": str(port)} if metrics_on else {}
    # Off means unset: an inherited METRICS_PORT would turn it on.
    drop = {} if metrics_on else {"METRICS_PORT": ""}
    url = f"http://127.0.0.1:{port}/metrics"
    async with Sandbox() as sandbox, bot(sandbox, drop | env) as process:
        scraper = None
        if metrics_on:
            await wait_serving(http, url)
            scraper = asyncio.create_task(scrape(http, url, mode))
        await round_trips(sandbox, None, WARMUP)
        started = time.monotonic()
        mode.trips += await round_trips(sandbox, BLOCK_SECONDS)
        ended = time.monotonic()
        if scraper is not None:
            scraper.cancel()
            await asyncio.gather(scraper, return_exceptions=True)
        lags = [t[1] for t in await process.lags() if started <= t[0] <= ended]
    mode.lags += lags
    mode.block_p99s.append(percentile(lags, 99))


async def measure() -> tuple[Mode, Mode]:
    off, on = Mode(), Mode()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        for n in range(BLOCKS):
            metrics_on = n % 2 == 1
            await block(http, on if metrics_on else off, metrics_on)
            log.info("block %d (%s) done", n + 1, "on" if metrics_on else "off")
    return off, on


def report(off: Mode, on: Mode) -> str:
    ratio = median(on.trips) / median(off.trips)
    off_p99, on_p99 = percentile(off.lags, 99) * 1000, percentile(on.lags, 99) * 1000
    noise = max(MIN_NOISE_MS, (max(off.block_p99s) - min(off.block_p99s)) * 1000)
    rows = [
        ("`!hi` round trip p50, metrics off", "—", f"{median(off.trips) * 1000:.2f} ms", None),
        ("`!hi` round trip p50, metrics on + scraped", "—", f"{median(on.trips) * 1000:.2f} ms",
         None),
        ("ratio p50 (on / off)", f"≤ {RATIO_TARGET}", f"{ratio:.2f}", ratio <= RATIO_TARGET),
        ("event-loop lag p99, off (per block)", "—",
         f"{off_p99:.2f} ms ({' / '.join(f'{p * 1000:.2f}' for p in off.block_p99s)})", None),
        ("event-loop lag p99, on (per block)", f"≤ off + noise ({noise:.2f} ms)",
         f"{on_p99:.2f} ms ({' / '.join(f'{p * 1000:.2f}' for p in on.block_p99s)})",
         on_p99 - off_p99 <= noise),
        ("scrapes of /metrics (failed)", "0 failed",
         f"{len(on.scrapes)} ({on.scrape_failures} failed), p50 "
         f"{median(on.scrapes) * 1000:.1f} ms, {on.size / 1024:.1f} KB",
         on.scrape_failures == 0 and bool(on.scrapes)),
    ]  # fmt: skip
    notes = (
        f"{BLOCKS} alternating blocks of {BLOCK_SECONDS:.0f} s of `!hi` (off first), each a "
        f"fresh bot process (`bench/bot_process.py`) with a 10 ms ticker; with metrics on, "
        f"this process fetches `/metrics` every {SCRAPE_EVERY:.0f} s. Noise: the spread of the "
        f"off blocks' lag p99 (at least {MIN_NOISE_MS:.0f} ms). Load average (1 min) at the "
        f"end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."
    )
    commands = len(off.trips) + len(on.trips)
    return f"## Metrics on vs off ({commands} commands)\n\n" + table(rows) + "\n\n" + notes


def run() -> str:
    logging.getLogger("discord").setLevel(logging.WARNING)
    try:
        off, on = asyncio.run(measure())
    except ServingMissing as missing:
        return (
            "## Metrics on vs off\n\n"
            f"Not measured: metrics serving is missing. With METRICS_PORT set, nothing served "
            f"{missing} within {SERVING_WAIT:.0f} s of the bot being ready."
        )
    return report(off, on)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    print(run())
