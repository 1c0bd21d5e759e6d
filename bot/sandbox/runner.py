"""Run the real bot against the sandbox: shared by the console, the tests and the benchmarks.

`sandboxed_bot` and `bot_on` run the sandbox in this process; `run_on_sandbox` connects to one
running as its own process (`python -m bot.sandbox`, SANDBOX_URL), as in scripts/cluster.sh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from bot.config import Settings
from bot.core.bot import VoiceChatBot, use_endpoints
from bot.sandbox.server import API_PREFIX, CA_PATH, Sandbox
from bot.wiring import Services, build_services

log = logging.getLogger(__name__)

SANDBOX_TOKEN = "sandbox-token"  # the sandbox accepts any token


@contextlib.asynccontextmanager
async def sandboxed_bot(
    settings: Settings,
    *,
    voice_out_dir: Path | None = None,
    ready_timeout: float = 20.0,
    **sandbox_options: Any,
) -> AsyncIterator[tuple[Sandbox, VoiceChatBot]]:
    """Start the sandbox (with `sandbox_options`, e.g. `shard_count`) and the bot connected
    to it; stop both on exit."""
    sandbox = Sandbox(admin_role=settings.admin_role, out_dir=voice_out_dir, **sandbox_options)
    await sandbox.start()
    try:
        async with bot_on(sandbox, settings, ready_timeout=ready_timeout) as bot:
            yield sandbox, bot
    finally:
        await sandbox.stop()


@contextlib.asynccontextmanager
async def bot_on(
    sandbox: Sandbox,
    settings: Settings,
    *,
    ready_timeout: float = 20.0,
    services: Services | None = None,
) -> AsyncIterator[VoiceChatBot]:
    """The real bot connected to a running sandbox (several may share one, each with its
    own shards and DATA_DIR); closed on exit. `services` built beforehand let several bots
    connect at once (database migrations in one process run one at a time)."""
    bot: VoiceChatBot | None = None
    task: asyncio.Task[None] | None = None
    try:
        use_endpoints(sandbox.api_base, sandbox.gateway_url)
        services = services or await build_services(settings)
        bot = sandbox_client(settings, services, sandbox.voice.client_ssl_context)
        task = asyncio.create_task(bot.start(SANDBOX_TOKEN), name="sandbox-bot")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ready_timeout
        while not bot.is_ready():
            if task.done():
                task.result()  # surfaces a login or connection failure
                raise RuntimeError("the bot stopped before it was ready")
            if loop.time() > deadline:
                raise TimeoutError("the bot did not connect to the sandbox in time")
            await asyncio.sleep(0.02)
        yield bot
    finally:
        if bot is not None:
            await bot.close()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)


def sandbox_client(
    settings: Settings, services: Services, voice_ssl: ssl.SSLContext
) -> VoiceChatBot:
    """The bot as a client of the sandbox. The sandbox's voice endpoint uses TLS with its own
    certificate authority; only this client trusts it (`voice_ssl`). Production keeps
    discord.py's default connector."""
    connector = aiohttp.TCPConnector(limit=0, ssl=voice_ssl)
    return VoiceChatBot(settings, services, connector=connector, guild_ready_timeout=0.05)


async def voice_ssl_of(sandbox_url: str) -> ssl.SSLContext:
    """An SSL context trusting the voice CA that the sandbox at `sandbox_url` serves."""
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(sandbox_url + CA_PATH, timeout=aiohttp.ClientTimeout(total=10)) as response,
        ):
            response.raise_for_status()
            pem = await response.text()
        return ssl.create_default_context(cadata=pem)
    except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as exc:
        raise RuntimeError(
            f"no sandbox answers at SANDBOX_URL={sandbox_url} ({exc or type(exc).__name__}); "
            "start one with `python -m bot.sandbox`"
        ) from exc


def gateway_url_of(sandbox_url: str) -> str:
    scheme, rest = sandbox_url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/gateway"


async def run_on_sandbox(settings: Settings) -> None:
    """The bot connected to the sandbox at SANDBOX_URL (another process), until stopped."""
    url = settings.sandbox_url
    assert url is not None
    voice_ssl = await voice_ssl_of(url)
    use_endpoints(url + API_PREFIX, gateway_url_of(url))
    services = await build_services(settings)
    log.info("connecting to the sandbox at %s", url)
    async with sandbox_client(settings, services, voice_ssl) as bot:
        await bot.start(SANDBOX_TOKEN)
