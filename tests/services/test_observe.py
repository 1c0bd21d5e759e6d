"""The metrics and health server (bot/services/ops/observe.py): what /metrics, /healthz and
/readyz answer, served from a thread so that a stuck event loop shows."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import load_settings
from bot.metrics import REGISTRY
from bot.services.ops.observe import NotReady, Observer, PortInUseError, probe
from bot.services.storage import Storage
from bot.wiring import watch_dependencies
from tests.processes import free_port

LAG_COUNT = "voicechat_event_loop_lag_seconds_count"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return 0.0


def get(port: int, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET; blocking, so tests call it in a thread."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            body = response.read().decode()
            return response.status, response.headers["Content-Type"], body
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def aget(port: int, path: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(get, port, path)


@pytest.fixture
async def observer() -> AsyncIterator[Observer]:
    served = Observer("127.0.0.1", 0, check_seconds=0.5)
    await served.start()
    try:
        yield served
    finally:
        await served.stop()


async def test_metrics_are_prometheus_text_with_every_declared_metric(observer: Observer) -> None:
    status, content_type, body = await aget(observer.port, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=")
    names = [family.name for family in REGISTRY.collect()]
    assert "discord_connected" in names and "voicechat_commands" in names
    for name in names:
        assert f"# TYPE {name}" in body, name
    # The ticker on the loop feeds the lag histogram, 10 times a second.
    await asyncio.sleep(0.35)
    later = (await aget(observer.port, "/metrics"))[2]
    assert sample(later, LAG_COUNT) - sample(body, LAG_COUNT) >= 2


async def test_healthz_says_503_while_the_event_loop_is_stuck(observer: Observer) -> None:
    assert await aget(observer.port, "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
    answers: list[tuple[int, str, str]] = []

    def ask_while_stuck() -> None:
        time.sleep(1.4)
        answers.append(get(observer.port, "/healthz"))
        answers.append(get(observer.port, "/readyz"))

    asker = threading.Thread(target=ask_while_stuck)
    asker.start()
    time.sleep(2.0)  # the loop is stuck: a blocking call in a coroutine
    await asyncio.to_thread(asker.join)
    [(health, _, why), (ready, _, ready_why)] = answers
    assert health == 503 and re.fullmatch(r"event loop: stuck for \d+\.\d s\n", why), why
    assert ready == 503 and ready_why.startswith("event loop: stuck"), ready_why
    await asyncio.sleep(0.3)  # the loop answers again
    assert (await aget(observer.port, "/healthz"))[0] == 200


async def test_readyz_lists_the_reasons_of_every_failing_check(observer: Observer) -> None:
    assert await aget(observer.port, "/readyz") == (200, "text/plain; charset=utf-8", "ready\n")
    shard_down = True

    async def gateway() -> None:
        if shard_down:
            raise NotReady("shard 0 disconnected")

    async def hanging() -> None:
        await asyncio.sleep(30)

    async def fine() -> None:
        return None

    observer.add_check("gateway", gateway)
    observer.add_check("database", hanging)
    observer.add_check("other", fine)
    status, _, body = await aget(observer.port, "/readyz")
    assert status == 503
    assert body.splitlines() == ["gateway: shard 0 disconnected", "database: no answer in 0.5 s"]
    shard_down = False
    del observer.checks["database"]
    assert (await aget(observer.port, "/readyz"))[:1] == (200,)


async def test_readiness_asks_the_database_and_the_task_broker(tmp_path: Path) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    settings = load_settings({"DATA_DIR": str(tmp_path), "TASK_BROKER_URL": dead_redis}, None)
    storage = Storage(tmp_path / "bot.db")
    await storage.open()
    served = Observer("127.0.0.1", 0)
    watch_dependencies(served, settings, storage)
    await served.start()
    try:
        status, _, body = await aget(served.port, "/readyz")
        assert status == 503
        [line] = body.splitlines()
        assert line.startswith(f"task broker: Error 111 connecting to {dead_redis[8:-2]}"), line
        del served.checks["task broker"]
        assert (await aget(served.port, "/readyz"))[0] == 200
        await storage.close()  # the database is gone
        status, _, body = await aget(served.port, "/readyz")
        assert status == 503 and body.startswith("database: "), body
    finally:
        await served.stop()
        await storage.close()


async def test_a_port_in_use_is_one_clear_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError) as info:
            Observer("127.0.0.1", port)
    assert str(info.value).startswith(f"METRICS_PORT={port}: can't listen on 127.0.0.1:{port}")


async def test_the_port_is_free_again_after_stop() -> None:
    served = Observer("127.0.0.1", 0)
    port = served.port
    await served.start()
    await served.stop()
    Observer("127.0.0.1", port)._socket.close()  # type: ignore[union-attr]
    unstarted = Observer("127.0.0.1", 0)  # bound, never served: stop() frees it too
    await unstarted.stop()
    Observer("127.0.0.1", unstarted.port)._socket.close()  # type: ignore[union-attr]


async def test_probe_says_why_in_one_line(observer: Observer) -> None:
    assert probe("127.0.0.1", None) == (
        False,
        "METRICS_PORT is not set, so this process serves no health endpoints.",
    )
    healthy, line = await asyncio.to_thread(probe, "0.0.0.0", observer.port)
    assert healthy and line == f"alive and ready (http://127.0.0.1:{observer.port})"

    async def down() -> None:
        raise NotReady("shard 0 disconnected")

    observer.add_check("gateway", down)
    healthy, line = await asyncio.to_thread(probe, "127.0.0.1", observer.port)
    assert (healthy, line) == (False, "not ready (503): gateway: shard 0 disconnected")
    healthy, line = await asyncio.to_thread(probe, "127.0.0.1", free_port())
    assert not healthy and line.startswith("nothing answers at http://127.0.0.1:"), line
