"""Taking turns to log in to Discord's gateway, across every process of the bot (Redis).

Discord lets a bot start `max_concurrency` sessions per 5 seconds: shard `i` logs in through
bucket `i % max_concurrency`, and each bucket takes one IDENTIFY per 5 s. Processes that run
different shards share that budget, so before each IDENTIFY a shard takes its bucket's key in
Redis (`SET key NX PX`) and leaves it to expire 5 s (plus a margin) later: the next shard of
that bucket, in whichever process, waits for the key to go. When Redis can't be reached the
shard says so in the log and tries again with growing waits; it never logs in unpaced.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

import redis.asyncio as redis
from redis.exceptions import RedisError

from bot.config import hide_password

log = logging.getLogger(__name__)

IDENTIFY_WINDOW = 5.0  # seconds Discord keeps a login bucket taken after an IDENTIFY
# The key is taken just before the IDENTIFY is sent; the margin covers the time in between.
HOLD_MARGIN = 0.5
KEY_PREFIX = "voicechatbot:login"
RETRY_FIRST = 1.0  # seconds before the first retry when Redis is unreachable
RETRY_MAX = 30.0
CONNECT_TIMEOUT = 5.0


def bucket_key(bot_id: int, shard_id: int, max_concurrency: int) -> str:
    """The Redis key of a shard's login bucket; per bot, since each bot has its own limit."""
    return f"{KEY_PREFIX}:{bot_id}:{shard_id % max(max_concurrency, 1)}"


class LoginTurns:
    """One IDENTIFY per login bucket per 5 s among all processes sharing `url`."""

    def __init__(
        self,
        url: str,
        *,
        hold: float = IDENTIFY_WINDOW + HOLD_MARGIN,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self.url = url
        self.hold_ms = int(hold * 1000)
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.redis = redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
        )
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.taken: list[tuple[str, int]] = []  # (key, shard id), in the order this process took

    async def wait_turn(self, bot_id: int, shard_id: int, max_concurrency: int) -> str:
        """Wait until this shard may IDENTIFY, then hold its bucket; the bucket's key."""
        key = bucket_key(bot_id, shard_id, max_concurrency)
        delay = self.retry_first
        while True:
            try:
                left = await self._try_take(key, shard_id)
            except (RedisError, OSError) as exc:
                log.error(
                    "Redis at %s can't be reached to take shard %d's login turn (%s); "
                    "trying again in %.0f s",
                    hide_password(self.url),
                    shard_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            if left is None:
                self.taken.append((key, shard_id))
                log.info("shard %d took login turn %s", shard_id, key)
                return key
            delay = self.retry_first
            await asyncio.sleep(left)

    async def _try_take(self, key: str, shard_id: int) -> float | None:
        """None when taken; otherwise seconds until the bucket may be free."""
        if await self.redis.set(key, f"{self.owner}:shard-{shard_id}", nx=True, px=self.hold_ms):
            return None
        left_ms = await self.redis.pttl(key)
        if left_ms == -1:  # held with no expiry (not by this code): never wait forever on it
            await self.redis.pexpire(key, self.hold_ms)
            left_ms = self.hold_ms
        return max(left_ms, 20) / 1000

    async def close(self) -> None:
        await self.redis.aclose()
