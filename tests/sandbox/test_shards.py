"""The sandbox's gateway shards as Discord does: /gateway/bot, IDENTIFY's `shard`, each session
getting only its servers' events, DMs on shard 0, and logins metered per 5 s bucket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bot.sandbox.server import Sandbox
from bot.sandbox.sharding import CLOSE_INVALID_SHARD, CLOSE_SHARDING_REQUIRED, IDENTIFY_WINDOW
from bot.sandbox.world import FOURTH, SANDBOX, SECOND, THIRD, shard_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Session:
    """A bare gateway connection, reading what the sandbox sends it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def receive(self) -> dict[str, Any] | None:
        """The next payload; None when the sandbox closed the connection."""
        message = await self.ws.receive(timeout=5)
        if message.type != aiohttp.WSMsgType.TEXT:
            return None
        return json.loads(message.data)

    async def identify(self, shard: list[int] | None) -> dict[str, Any] | None:
        """IDENTIFY; READY's payload, or the first other answer (op 9, a close: None)."""
        data: dict[str, Any] = {"token": "t", "intents": 0, "properties": {}}
        if shard is not None:
            data["shard"] = shard
        await self.ws.send_str(json.dumps({"op": 2, "d": data}))
        return await self.receive()

    async def events(self, count: int) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for _ in range(count):
            payload = await self.receive()
            assert payload is not None
            found.append((payload["t"], payload["d"]))
        return found


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def connect(http: aiohttp.ClientSession) -> Callable[[Sandbox], Any]:
    async def open_session(sandbox: Sandbox) -> Session:
        ws = await http.ws_connect(sandbox.gateway_url)
        session = Session(ws)
        hello = await session.receive()
        assert hello is not None and hello["op"] == 10
        return session

    return open_session


async def test_gateway_bot_recommends_the_shard_count_and_max_concurrency(
    http: aiohttp.ClientSession,
) -> None:
    async with Sandbox(shard_count=4, max_concurrency=2) as sandbox:
        async with http.get(sandbox.api_base + "/gateway/bot") as response:
            body = await response.json(content_type=None)
            assert response.headers["Content-Type"] == "application/json"
    assert body["shards"] == 4 and body["url"] == sandbox.gateway_url
    assert body["session_start_limit"]["max_concurrency"] == 2
    assert body["session_start_limit"]["remaining"] == body["session_start_limit"]["total"]


def test_the_four_servers_split_two_and_two_on_two_shards_and_one_each_on_four() -> None:
    servers = (SANDBOX, SECOND, THIRD, FOURTH)
    assert sorted(shard_of(g.id, 2) for g in servers) == [0, 0, 1, 1]
    assert sorted(shard_of(g.id, 4) for g in servers) == [0, 1, 2, 3]


async def test_each_shard_gets_only_its_servers_and_dms_go_to_shard_0(connect) -> None:
    async with Sandbox(shard_count=2, max_concurrency=2) as sandbox:
        first, second = await connect(sandbox), await connect(sandbox)
        ready = {0: await first.identify([0, 2]), 1: await second.identify([1, 2])}
        created = {0: await first.events(2), 1: await second.events(2)}
        for shard, session_ready in ready.items():
            assert session_ready is not None and session_ready["t"] == "READY"
            assert session_ready["d"]["shard"] == [shard, 2]
            expected = {str(g.id) for g in (SANDBOX, SECOND, THIRD, FOURTH)
                        if shard_of(g.id, 2) == shard}  # fmt: skip
            assert {g["id"] for g in session_ready["d"]["guilds"]} == expected
            assert {d["id"] for t, d in created[shard] if t == "GUILD_CREATE"} == expected
        assert sorted(sandbox.ready_shards) == [(0, 2), (1, 2)]

        await sandbox.send("in third", author="carol")  # Third: shard 0
        await sandbox.send("in second", author="alice")  # Second: shard 1
        await sandbox.send("a dm", author="bob", dm=True)  # DMs: shard 0
        await sandbox.join_voice("bob")  # Second: shard 1
        [(_, third), (_, dm)] = await first.events(2)
        [(_, in_second), (voice, state)] = await second.events(2)
    assert third["content"] == "in third" and dm["content"] == "a dm" and "guild_id" not in dm
    assert in_second["content"] == "in second"
    assert voice == "VOICE_STATE_UPDATE" and state["guild_id"] == str(SECOND.id)


@pytest.mark.parametrize(
    ("shard", "code"),
    [
        ([2, 2], CLOSE_INVALID_SHARD),
        ([-1, 2], CLOSE_INVALID_SHARD),
        ([0, 0], CLOSE_INVALID_SHARD),
        (["0", 2], CLOSE_INVALID_SHARD),
        ([0, 1], CLOSE_SHARDING_REQUIRED),
        (None, CLOSE_SHARDING_REQUIRED),  # no shard: one session for every server
    ],
)
async def test_a_wrong_shard_is_refused_with_discords_close_code(
    connect, shard: list[Any] | None, code: int
) -> None:
    async with Sandbox(shard_count=2) as sandbox:
        session = await connect(sandbox)
        assert await session.identify(shard) is None
        assert session.ws.close_code == code
        assert not sandbox.ready_shards and not sandbox.logins.accepted


async def test_more_shards_than_recommended_are_accepted(connect) -> None:
    async with Sandbox(shard_count=1) as sandbox:
        session = await connect(sandbox)
        ready = await session.identify([3, 4])
    assert ready is not None and [g["id"] for g in ready["d"]["guilds"]] == [str(SANDBOX.id)]


async def test_a_second_login_in_the_same_5_s_bucket_gets_invalid_session(connect) -> None:
    clock = Clock()
    async with Sandbox(shard_count=2, max_concurrency=1) as sandbox:
        sandbox.logins.clock = clock
        assert (await (await connect(sandbox)).identify([0, 2]) or {}).get("t") == "READY"
        refused = await (await connect(sandbox)).identify([1, 2])
        assert refused == {"op": 9, "d": False}
        assert sandbox.logins.refused == [(1, 2)]
        clock.now += IDENTIFY_WINDOW
        later = await (await connect(sandbox)).identify([1, 2])
    assert later is not None and later["t"] == "READY"
    assert sandbox.logins.accepted == [(0, 2), (1, 2)]


async def test_shards_in_different_buckets_log_in_together(connect) -> None:
    async with Sandbox(shard_count=4, max_concurrency=2) as sandbox:
        sandbox.logins.clock = Clock()  # no time passes
        answers = [await (await connect(sandbox)).identify([i, 4]) for i in range(4)]
    assert [(a or {}).get("t", (a or {}).get("op")) for a in answers] == [
        "READY",
        "READY",
        9,
        9,
    ]
    assert sandbox.logins.refused == [(2, 4), (3, 4)]


async def test_a_resume_keeps_its_shard_and_is_no_login(connect) -> None:
    async with Sandbox(shard_count=2, max_concurrency=1) as sandbox:
        sandbox.logins.clock = Clock()
        first = await connect(sandbox)
        ready = await first.identify([1, 2])
        assert ready is not None
        await first.ws.close()
        again = await connect(sandbox)
        resume = {"token": "t", "session_id": ready["d"]["session_id"], "seq": 3}
        await again.ws.send_str(json.dumps({"op": 6, "d": resume}))
        resumed = await again.receive()
        assert resumed is not None and resumed["d"]["shard"] == [1, 2]
        unknown = await connect(sandbox)
        await unknown.ws.send_str(json.dumps({"op": 6, "d": {**resume, "session_id": "x"}}))
        assert await unknown.receive() == {"op": 9, "d": False}
    assert sandbox.logins.accepted == [(1, 2)] and not sandbox.logins.refused
