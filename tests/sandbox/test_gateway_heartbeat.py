"""Gateway heartbeats: the sandbox acknowledges them the way a network would.

discord.py's keep-alive thread sends a heartbeat through the event loop and records the
send time only once it is scheduled again after the send. The ACK must not arrive before
that, or discord.py measures it against the previous heartbeat, an interval ago, and logs
"Can't keep up, shard ID None websocket is 41.3s behind" (above 10 s). These tests run a real
discord.py client against a sandbox with a short interval and a keep-alive thread made
slow to be scheduled, and look at the latency discord.py measured for every ACK.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

import discord
import pytest
from discord import gateway

from bot.core.bot import use_endpoints
from bot.sandbox.server import HEARTBEAT_ACK_DELAY, HEARTBEAT_MS, Sandbox

INTERVAL_MS = 400
THREAD_LAG = 0.03  # how late the keep-alive thread runs again after its send: a busy machine


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The latency discord.py measured at each gateway heartbeat ACK."""
    latencies: list[float] = []
    ack = gateway.KeepAliveHandler.ack

    def recording_ack(self: gateway.KeepAliveHandler) -> None:
        ack(self)
        latencies.append(self.latency)

    monkeypatch.setattr(gateway.KeepAliveHandler, "ack", recording_ack)
    return latencies


def slow_keep_alive_thread(monkeypatch: pytest.MonkeyPatch, lag: float) -> None:
    """The keep-alive thread gets its send's result `lag` seconds late, as on a loaded machine."""
    submit = asyncio.run_coroutine_threadsafe

    def late(coro: Any, loop: asyncio.AbstractEventLoop) -> Future[Any]:
        future = submit(coro, loop)
        if not threading.current_thread().name.startswith("keep-alive-handler"):
            return future
        result = future.result

        def late_result(timeout: float | None = None) -> Any:
            value = result(timeout)
            time.sleep(lag)
            return value

        future.result = late_result  # type: ignore[method-assign]
        return future

    monkeypatch.setattr(asyncio, "run_coroutine_threadsafe", late)


async def run_client(sandbox: Sandbox, heartbeats: int, measured: list[float]) -> None:
    """A plain discord.py client, online until `heartbeats` of its keep-alive thread are ACKed."""
    use_endpoints(sandbox.api_base, sandbox.gateway_url)
    client = discord.Client(intents=discord.Intents.none())
    task = asyncio.create_task(client.start("sandbox-token"))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20 + heartbeats * INTERVAL_MS / 1000
        # The first heartbeat goes out on HELLO, before the keep-alive thread starts.
        while len(measured) < heartbeats + 1:
            assert not task.done(), task.result()
            assert loop.time() < deadline, f"only {len(measured)} heartbeat ACKs"
            await asyncio.sleep(0.02)
    finally:
        await client.close()
        await asyncio.wait_for(task, 10)


async def test_acks_arrive_after_the_client_recorded_its_heartbeat(
    measured: list[float], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    slow_keep_alive_thread(monkeypatch, THREAD_LAG)
    with caplog.at_level(logging.WARNING, logger="discord.gateway"):
        async with Sandbox(heartbeat_interval=INTERVAL_MS) as sandbox:
            await run_client(sandbox, 4, measured)
    # Each latency is about the sandbox's round trip (less the thread's lag), never an interval.
    assert all(0 < latency < INTERVAL_MS / 1000 / 2 for latency in measured), measured
    assert not [r for r in caplog.records if "keep up" in r.getMessage()]


async def test_an_instant_ack_is_what_made_the_client_fall_behind(
    measured: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above catches the old behaviour: an ACK sent back at once."""
    slow_keep_alive_thread(monkeypatch, 0.2)
    async with Sandbox(heartbeat_interval=INTERVAL_MS, heartbeat_ack_delay=0) as sandbox:
        await run_client(sandbox, 2, measured)
    behind = [latency for latency in measured[1:] if latency > INTERVAL_MS / 1000 / 2]
    assert behind, measured  # at 41,250 ms each would be about 41 s: "Can't keep up"


def test_the_default_interval_is_discords() -> None:
    sandbox = Sandbox()
    assert sandbox.heartbeat_interval == HEARTBEAT_MS == 41_250
    assert THREAD_LAG < sandbox.heartbeat_ack_delay == HEARTBEAT_ACK_DELAY <= 0.5
