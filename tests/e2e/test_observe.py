"""Metrics and health end to end: the real bot in the sandbox with METRICS_PORT set, a real
`python -m bot worker`, and `python -m bot health` as a container would run it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.config import Settings
from bot.core.checks import NO_PERMISSION
from bot.sandbox.runner import sandboxed_bot
from tests.e2e.conftest import E2E, REPO
from tests.processes import free_port
from tests.redis_server import RedisServer
from tests.services.test_observe import sample
from tests.worker_process import Worker


async def get(port: int, path: str) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(f"http://127.0.0.1:{port}{path}") as response:
            return response.status, await response.text()


async def until_status(port: int, path: str, status: int, timeout: float) -> str:
    """Poll `path` until it answers `status`; its body then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got, body = await get(port, path)
        if got == status:
            return body
        assert loop.time() < deadline, f"{path} still says {got}: {body}"
        await asyncio.sleep(0.2)


def env_with(**settings: str) -> dict[str, str]:
    """This environment without the URLs of other tests, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_URL")}
    env.update(settings)
    return env


async def health(port: int) -> tuple[int, str]:
    """`python -m bot health` for the process on `port`: exit code and what it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "health", cwd=REPO,
        env=env_with(METRICS_PORT=str(port), METRICS_HOST="127.0.0.1"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


@pytest.fixture
async def served(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[E2E]:
    """The bot in the sandbox, serving its metrics on a free port (`e2e.port`)."""
    settings = make_settings(METRICS_PORT=str(free_port()))
    async with sandboxed_bot(settings, voice_out_dir=tmp_path / "voice") as (sandbox, bot):
        env = E2E(sandbox, bot)
        env.port = settings.metrics_port  # type: ignore[attr-defined]
        yield env


def commands_total(text: str, command: str, kind: str, outcome: str) -> float:
    labels = {"command": command, "kind": kind, "outcome": outcome}
    return sample(text, "voicechat_commands_total", **labels)


async def test_metrics_show_the_gateway_and_every_command_with_its_outcome(served: E2E) -> None:
    port = served.port  # type: ignore[attr-defined]
    status, before = await get(port, "/metrics")
    assert status == 200
    assert 'discord_connected{shard="0"} 1.0' in before
    assert sample(before, "voicechat_shards") == 1

    assert (await served.ask_text("!hi")).startswith("Hi owner!")
    assert await served.ask_text("!chat on", author="member") == NO_PERMISSION
    reply = await (await served.sandbox.slash("hi")).reply()
    assert reply["content"].startswith("Hi owner!")
    after = (await get(port, "/metrics"))[1]

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert (
        commands_total(after, "hi", "prefix", "ok") - commands_total(before, "hi", "prefix", "ok")
        == 1
    )
    assert (
        commands_total(after, "chat", "prefix", "user_error")
        - commands_total(before, "chat", "prefix", "user_error")
        == 1
    )
    assert (
        commands_total(after, "hi", "slash", "ok") - commands_total(before, "hi", "slash", "ok")
        == 1
    )
    assert grew("discord_event_on_command_total", command="hi") == 2  # `!hi` and hybrid `/hi`
    interaction = {"shard": "0", "interaction": "application_command", "command": "hi"}
    assert grew("discord_event_on_interaction_total", **interaction) == 1
    assert grew("voicechat_command_duration_seconds_count", command="hi") == 2
    assert sample(after, "discord_stat_total_guilds") == len(served.bot.guilds) > 0


async def test_a_gateway_outage_makes_the_bot_unready_but_alive_until_it_reconnects(
    served: E2E,
) -> None:
    port = served.port  # type: ignore[attr-defined]
    assert (await get(port, "/readyz")) == (200, "ready\n")
    assert await health(port) == (0, f"alive and ready (http://127.0.0.1:{port})\n")

    await served.sandbox.stop_gateway()
    body = await until_status(port, "/readyz", 503, timeout=10)
    assert body == "gateway: shard 0 disconnected\n"
    assert await get(port, "/healthz") == (200, "ok\n")  # alive: nothing to restart
    assert 'discord_connected{shard="0"} 0.0' in (await get(port, "/metrics"))[1]
    code, line = await health(port)
    assert (code, line) == (1, "not ready (503): gateway: shard 0 disconnected\n")

    served.sandbox.restore_gateway()
    await until_status(port, "/readyz", 200, timeout=90)
    assert await get(port, "/healthz") == (200, "ok\n")
    assert 'discord_connected{shard="0"} 1.0' in (await get(port, "/metrics"))[1]
    assert (await served.ask_text("!hi")).startswith("Hi owner!")


def test_a_metrics_port_in_use_stops_the_bot_with_one_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "bot"], cwd=REPO, stdin=subprocess.DEVNULL,
            env=env_with(METRICS_PORT=str(port), DATA_DIR=str(tmp_path / "data"),
                         LOG_LEVEL="WARNING", WARM_UP="off"),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"The bot cannot start: METRICS_PORT={port}: can't listen on 127.0.0.1:{port} "
        "(Address already in use); give each process its own port"
    ]


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may stop."""
    server = RedisServer.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_worker_serves_metrics_and_is_ready_while_its_broker_answers(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    port = free_port()
    env = env_with(
        TASK_BROKER_URL=own_redis.url(),
        DATABASE_URL=f"sqlite:///{tmp_path / 'shared.db'}",
        DATA_DIR=str(tmp_path / "worker-data"),
        STT_ENGINES="whisper",
        LOG_LEVEL="INFO",
        WARM_UP="off",
        METRICS_PORT=str(port),
    )
    worker = await asyncio.to_thread(Worker, env)
    try:
        status, text = await get(port, "/metrics")
        assert status == 200 and "voicechat_event_loop_lag_seconds_count" in text
        assert "discord_connected" in text  # declared, with no shard in a worker
        assert await get(port, "/readyz") == (200, "ready\n")
        assert (await health(port))[0] == 0

        await asyncio.to_thread(own_redis.stop)
        body = await until_status(port, "/readyz", 503, timeout=15)
        assert body.startswith("task broker: "), body
        assert await get(port, "/healthz") == (200, "ok\n")
        code, line = await health(port)
        assert code == 1 and line.startswith("not ready (503): task broker: "), line
    finally:
        await asyncio.to_thread(worker.stop)
