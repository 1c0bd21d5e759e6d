"""The real bot in a process of its own, with a lag ticker in its event loop.

`python -m bench.bot_process API_BASE GATEWAY_URL [bare]` (settings from the environment)
starts the bot (or, with `bare`, a plain discord.py bot with only `!hi`: the baseline)
against a sandbox that runs in another process, so what the ticker measures is the
bot's own loop: the sandbox's work (JSON, websockets, decoding the bot's audio) happens
elsewhere. The parent talks to it over stdin/stdout, one line each way:

- the child prints `READY` once the bot is connected;
- `rss` → `RSS <MB>` (after a garbage collection);
- `heap` → `HEAP <json>`: glibc's heap (`mallinfo2`, MB: in use, free, mmapped), threads,
  RSS and its anonymous and file-backed parts (no garbage collection: cheap to sample);
- `pending` → `PENDING <count>`: utterances heard and not yet captioned, in every server;
- `helpers` → `HELPERS <count> <MB>`: the processes the bot started (the job runner's fork
  server and workers) and their proportional share of memory (PSS: shared pages count once);
- `lags` → `LAGS <json>`: every tick so far (`Ticker`);
- `gc` → `GC <json>`: garbage collections over 2 ms, [monotonic start, seconds, generation];
- `stacks` → `STACKS <json>`: where the loop was during stalls (with BENCH_STALL_STACKS=1);
- `quit` (or end of input) closes the bot; the child prints `BYE` and exits.

`python -m bench.bot_process probe` is only the ticker, in an idle process: how late a
process that does nothing wakes up shows what the machine's other processes cost everyone
at the same moment (on a shared 2-core machine, that is most of what remains).

`time.monotonic()` is the system-wide CLOCK_MONOTONIC on Linux, so the parent can cut the
ticks into windows with its own clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import os
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import discord
import yarl
from discord.ext import commands

from bot.memory import glibc, tune_malloc

if TYPE_CHECKING:
    from bot.sandbox.server import Sandbox

INTERVAL = 0.010
ROOT = Path(__file__).resolve().parents[1]


class BotProcess:
    """The parent's side: start the child against `sandbox`, ask it things, stop it."""

    def __init__(
        self,
        sandbox: Sandbox | None,
        env: dict[str, str],
        ready_timeout: float = 60,
        *,
        bare: bool = False,
    ) -> None:
        self.sandbox = sandbox
        self.env = env
        self.bare = bare
        self.arguments = (
            ["probe"]
            if sandbox is None
            else [sandbox.api_base, sandbox.gateway_url, *(["bare"] if bare else [])]
        )
        self.ready_timeout = ready_timeout
        self.ready_seconds = 0.0
        self._process: asyncio.subprocess.Process | None = None
        self._talking = asyncio.Lock()

    async def __aenter__(self) -> BotProcess:
        started = time.monotonic()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.bot_process",
            *self.arguments,
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 28,
        )
        await asyncio.wait_for(self._expect("READY"), self.ready_timeout)
        self.ready_seconds = time.monotonic() - started
        return self

    async def __aexit__(self, *exc: object) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        try:
            await self._send("quit")
            await asyncio.wait_for(process.wait(), 30)
        except (TimeoutError, ConnectionError):
            process.kill()
            await process.wait()

    async def rss(self) -> float:
        """The bot process's resident memory in MB, after a garbage collection."""
        return float(await self._ask("rss", "RSS"))

    async def pending(self) -> int:
        """Utterances the bot heard and has not captioned yet."""
        return int(await self._ask("pending", "PENDING"))

    async def heap(self) -> dict[str, float]:
        return json.loads(await self._ask("heap", "HEAP"))

    async def helpers(self) -> tuple[int, float]:
        """(number, PSS in MB) of the processes the bot started (fork server, workers)."""
        count, mb = (await self._ask("helpers", "HELPERS")).split()
        return int(count), float(mb)

    async def lags(self) -> list[tuple[float, ...]]:
        """Every tick so far: (monotonic time at wake-up, lag, loop CPU, process CPU)."""
        return [tuple(tick) for tick in json.loads(await self._ask("lags", "LAGS"))]

    async def collections(self) -> list[tuple[float, float, int]]:
        """Garbage collections over 2 ms: (monotonic start, seconds, generation)."""
        return [tuple(c) for c in json.loads(await self._ask("gc", "GC"))]

    async def _ask(self, command: str, word: str) -> str:
        """Send `command`, return the answer after `word` (one question at a time)."""
        async with self._talking:
            await self._send(command)
            return await self._expect(word)

    async def _send(self, line: str) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(line.encode() + b"\n")
        await self._process.stdin.drain()

    async def _expect(self, word: str) -> str:
        assert self._process is not None and self._process.stdout is not None
        while True:
            line = (await self._process.stdout.readline()).decode()
            if not line:
                raise RuntimeError(f"the bot process ended before saying {word}")
            if line.startswith(word):
                return line[len(word) :].strip()


class Collections:
    """Records the garbage collections that take more than 2 ms (they stop every thread)."""

    def __init__(self) -> None:
        self.slow: list[tuple[float, float, int]] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.monotonic()
        elif (took := time.monotonic() - self._started) > 0.002:
            self.slow.append((self._started, took, info["generation"]))


class StallSampler:
    """Diagnosis (BENCH_STALL_STACKS=1): a thread that, while the loop has not ticked for
    15 ms, samples where the loop's thread is every 2 ms; `stacks` prints the samples."""

    def __init__(self, ticker: Ticker) -> None:
        import threading

        self.ticker = ticker
        self.samples: list[tuple[float, str]] = []
        self._loop_thread = threading.get_ident()
        threading.Thread(target=self._run, daemon=True, name="stall-sampler").start()

    def _run(self) -> None:
        import traceback

        while True:
            time.sleep(0.002)
            last = self.ticker.ticks[-1][0] if self.ticker.ticks else time.monotonic()
            if time.monotonic() - last > 0.015:
                frame = sys._current_frames().get(self._loop_thread)
                if frame is not None:
                    stack = traceback.extract_stack(frame)[-6:]
                    where = " < ".join(
                        f"{f.name}@{Path(f.filename).name}:{f.lineno}" for f in reversed(stack)
                    )
                    self.samples.append((time.monotonic(), where))


class Ticker:
    """Wakes every 10 ms and records how late it woke, and where the time went meanwhile:
    [(monotonic time at wake-up, lag, CPU seconds of the loop's thread, CPU seconds of the
    whole process)]. A stall with little CPU in the process was spent waiting for a core."""

    def __init__(self) -> None:
        self.ticks: list[tuple[float, float, float, float]] = []

    async def run(self) -> None:
        while True:
            start, thread, process = time.monotonic(), time.thread_time(), time.process_time()
            await asyncio.sleep(INTERVAL)
            now = time.monotonic()
            lag = max(0.0, now - start - INTERVAL)
            used = (time.thread_time() - thread, time.process_time() - process)
            self.ticks.append((now, lag, *used))


def helper_memory() -> tuple[int, float]:
    """(number, PSS in MB) of this process's descendants."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            ppid = next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")
            )
            parents[int(entry.name)] = ppid
    mine = {os.getpid()}
    changed = True
    while changed:
        found = {pid for pid, ppid in parents.items() if ppid in mine} - mine
        changed = bool(found)
        mine |= found
    total_kb = 0
    for pid in mine - {os.getpid()}:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total_kb += next(
            int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")
        )
    return len(mine) - 1, total_kb / 1024


def bare_bot(connector: aiohttp.TCPConnector, api_base: str, gateway_url: str) -> commands.Bot:
    """The baseline: a plain commands.Bot with only a `!hi` command, and nothing of this
    project imported (the bot's `use_endpoints` and `intents`, written out)."""
    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    intents = discord.Intents.none()
    intents.guilds = intents.guild_messages = intents.dm_messages = True
    intents.message_content = intents.voice_states = True
    bot = commands.Bot(
        command_prefix="!", intents=intents, connector=connector, guild_ready_timeout=0.05
    )

    @bot.command()
    async def hi(ctx: commands.Context) -> None:  # type: ignore[type-arg]
        await ctx.reply(f"Hi {ctx.author.display_name}!")

    return bot


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def heap_mb() -> dict[str, float]:
    """glibc's heap in MB (`mallinfo2`: every arena) and, from /proc, threads and RSS parts."""
    libc = glibc()
    if libc is None:
        raise RuntimeError("heap figures need glibc")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    figures = {
        "heap_in_use": info.uordblks / 2**20,
        "heap_free": info.fordblks / 2**20,
        "mmapped": info.hblkhd / 2**20,
    }
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("Threads", "VmRSS", "RssAnon", "RssFile"):
                figures[key] = int(value.split()[0]) / (1 if key == "Threads" else 1024)
    return figures


async def read_commands() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def serve(ticker: Ticker, extra: dict[str, Callable[[], str]]) -> None:
    """Answer the parent's commands until `quit` or the end of input."""
    commands = await read_commands()
    while line := (await commands.readline()).decode().strip():
        if line == "lags":
            say("LAGS " + json.dumps(ticker.ticks))
        elif line == "quit":
            break
        elif line in extra:
            say(extra[line]())


async def probe() -> None:
    ticker = Ticker()
    task = asyncio.create_task(ticker.run())
    say("READY")
    await serve(ticker, {})
    task.cancel()
    say("BYE")


async def main(api_base: str, gateway_url: str, bare: bool = False) -> None:
    if os.environ.get("BENCH_SLOW_CALLBACKS"):  # diagnosis: log callbacks over 15 ms
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.015
    ticker, collections = Ticker(), Collections()
    sampler = StallSampler(ticker) if os.environ.get("BENCH_STALL_STACKS") else None
    tick_task = asyncio.create_task(ticker.run())
    # The sandbox's voice server has a throwaway certificate; this process only ever talks to
    # the sandbox on loopback, so it does not check it.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connector = aiohttp.TCPConnector(limit=0, ssl=context)
    listening = None
    if bare:
        bot: commands.Bot = bare_bot(connector, api_base, gateway_url)
    else:
        from bot.config import load_settings
        from bot.core.bot import VoiceChatBot, use_endpoints
        from bot.wiring import build_services

        use_endpoints(api_base, gateway_url)
        settings = load_settings(env_file=None)
        services = await build_services(settings)
        bot = VoiceChatBot(settings, services, connector=connector, guild_ready_timeout=0.05)
        listening = services.listening
    bot_task = asyncio.create_task(bot.start("sandbox-token"))
    while not bot.is_ready():
        if bot_task.done():
            bot_task.result()
            raise RuntimeError("the bot stopped before it was ready")
        await asyncio.sleep(0.005)
    say("READY")

    def rss() -> str:
        gc.collect()
        return f"RSS {rss_mb():.1f}"

    def pending() -> int:
        return sum(listening.pending(g.id) for g in bot.guilds) if listening else 0

    def helpers() -> str:
        count, mb = helper_memory()
        return f"HELPERS {count} {mb:.1f}"

    try:
        await serve(
            ticker,
            {
                "rss": rss,
                "helpers": helpers,
                "heap": lambda: "HEAP " + json.dumps(heap_mb()),
                "pending": lambda: f"PENDING {pending()}",
                "stacks": lambda: "STACKS " + json.dumps(sampler.samples if sampler else []),
                "gc": lambda: "GC " + json.dumps(collections.slow),
            },
        )
    finally:
        tick_task.cancel()
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(bot_task, 10)
        say("BYE")


if __name__ == "__main__":
    tune_malloc()  # as `python -m bot` does
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if sys.argv[1:] == ["probe"]:
        asyncio.run(probe())
    else:
        asyncio.run(main(sys.argv[1], sys.argv[2], bare=sys.argv[3:] == ["bare"]))
