"""Login turns through a real Redis: one IDENTIFY per bucket at a time, across instances,
and a clear log line (then retries) while Redis can't be reached."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.core.gateway import LoginTurns, bucket_key
from tests.redis_server import RedisServer, free_port

BOT = 1_100_000_000_000_000_100


def test_shards_share_a_bucket_by_their_id_modulo_max_concurrency() -> None:
    assert bucket_key(BOT, 0, 1) == bucket_key(BOT, 1, 1)
    assert bucket_key(BOT, 0, 2) == bucket_key(BOT, 2, 2) != bucket_key(BOT, 1, 2)
    assert bucket_key(BOT, 0, 1) != bucket_key(BOT + 1, 0, 1)  # each bot has its own budget


async def test_a_second_process_waits_until_the_bucket_is_free(redis_url: str) -> None:
    first, second = LoginTurns(redis_url, hold=2.0), LoginTurns(redis_url, hold=2.0)
    try:
        key = await first.wait_turn(BOT, 0, 1)
        waiting = asyncio.create_task(second.wait_turn(BOT, 1, 1))
        await asyncio.sleep(0.3)  # it has asked Redis and is waiting out the key
        assert not waiting.done()
        assert (await first.redis.get(key)).decode().startswith(first.owner)
        assert await waiting == key
        assert (await second.redis.get(key)).decode().startswith(second.owner)
        assert first.taken == [(key, 0)] and second.taken == [(key, 1)]
    finally:
        await first.close()
        await second.close()


async def test_shards_in_other_buckets_do_not_wait(redis_url: str) -> None:
    turns = LoginTurns(redis_url, hold=60.0)  # a wait would outlast the test's timeout
    try:
        keys = [await asyncio.wait_for(turns.wait_turn(BOT, i, 2), 10) for i in (0, 1)]
    finally:
        await turns.close()
    assert len(set(keys)) == 2


async def test_unreachable_redis_is_logged_and_retried_until_it_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    turns = LoginTurns(f"redis://:secret@127.0.0.1:{port}/0", retry_first=0.05, retry_max=0.2)
    caplog.set_level(logging.ERROR, logger="bot.core.gateway")
    waiting = asyncio.create_task(turns.wait_turn(BOT, 3, 1))
    try:
        while not caplog.records:
            assert not waiting.done(), waiting
            await asyncio.sleep(0.05)
        line = caplog.records[0].getMessage()
        assert f"Redis at redis://:***@127.0.0.1:{port}/0 can't be reached" in line
        assert "shard 3's login turn" in line and "secret" not in line
        with await asyncio.to_thread(RedisServer.start, port) as server:
            await server_accepts_password(server)
            assert await asyncio.wait_for(waiting, 30) == bucket_key(BOT, 3, 1)
    finally:
        waiting.cancel()
        await turns.close()


async def server_accepts_password(server: RedisServer) -> None:
    """Our test server has no password; Redis answers AUTH with one as an error, so give
    it the password the URL names."""
    import redis.asyncio as redis

    client = redis.from_url(server.url())
    try:
        await client.config_set("requirepass", "secret")
    finally:
        await client.aclose()
