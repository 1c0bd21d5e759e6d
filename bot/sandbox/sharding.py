"""Shards and logins as Discord's gateway meters them, for the sandbox.

- `GET /gateway/bot` recommends a shard count and tells `max_concurrency`: how many sessions
  may start (IDENTIFY) per 5 seconds. Shard `i` logs in through bucket `i % max_concurrency`;
  each bucket takes one IDENTIFY per 5 s. One beyond that is answered with op 9 (Invalid
  Session, `d: false`), as Discord does; the client identifies again later.
- IDENTIFY's `shard: [id, count]`: an id outside `0..count-1` closes the connection with 4010
  (Invalid shard); a count below the recommended one with 4011 (Sharding required: each
  session would hold too many servers). No `shard` means `[0, 1]`.
- A session of shard `[id, count]` receives the events of the servers with
  `(guild_id >> 22) % count == id`; events outside a server (DMs) go to shard 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox.world import shard_of

log = logging.getLogger(__name__)

IDENTIFY_WINDOW = 5.0  # seconds a login bucket stays taken after an IDENTIFY
CLOSE_INVALID_SHARD = 4010
CLOSE_SHARDING_REQUIRED = 4011
SESSION_STARTS_PER_DAY = 1000

Shard = tuple[int, int]  # (shard id, shard count)


class ShardRefused(Exception):
    """The gateway closes the connection with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def owns(shard: Shard, guild_id: int | None) -> bool:
    """Whether a session of `shard` receives the events of this server (None: a DM)."""
    shard_id, count = shard
    if guild_id is None:
        return shard_id == 0
    return shard_of(guild_id, count) == shard_id


def guild_of_event(data: dict[str, Any]) -> int | None:
    """The server an event belongs to, from its `guild_id`; None for DMs."""
    raw = data.get("guild_id")
    return int(raw) if raw else None


@dataclass
class Login:
    shard: Shard
    at: float  # monotonic seconds
    refused: bool = False


@dataclass
class Logins:
    """The recommended shard count, `max_concurrency`, and every IDENTIFY the gateway saw."""

    shard_count: int = 1
    max_concurrency: int = 1
    clock: Callable[[], float] = time.monotonic
    seen: list[Login] = field(default_factory=list)
    _bucket_taken: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.shard_count < 1 or self.max_concurrency < 1:
            raise ValueError("shard_count and max_concurrency must be at least 1")

    @property
    def accepted(self) -> list[Shard]:
        return [login.shard for login in self.seen if not login.refused]

    @property
    def refused(self) -> list[Shard]:
        """Shards whose IDENTIFY came while their login bucket was taken."""
        return [login.shard for login in self.seen if login.refused]

    def shard_of(self, identify: dict[str, Any]) -> Shard:
        """The `[id, count]` an IDENTIFY asks for; ShardRefused when Discord would close."""
        raw = identify.get("shard")
        if raw is None:
            raw = [0, 1]
        valid = (
            isinstance(raw, list)
            and len(raw) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in raw)
        )
        if not valid or not (raw[1] >= 1 and 0 <= raw[0] < raw[1]):
            raise ShardRefused(CLOSE_INVALID_SHARD, "Invalid shard.")
        if raw[1] < self.shard_count:
            raise ShardRefused(CLOSE_SHARDING_REQUIRED, "Sharding required.")
        return (raw[0], raw[1])

    def admit(self, shard: Shard) -> bool:
        """Record an IDENTIFY; False when its bucket already took one in the last 5 s."""
        now = self.clock()
        bucket = shard[0] % self.max_concurrency
        taken = self._bucket_taken.get(bucket)
        refused = taken is not None and now - taken < IDENTIFY_WINDOW
        self.seen.append(Login(shard, now, refused))
        if refused:
            log.warning("login bucket %d taken: shard %s's IDENTIFY is refused", bucket, shard)
            return False
        self._bucket_taken[bucket] = now
        return True

    def gateway_bot(self, url: str) -> dict[str, Any]:
        """The body of `GET /gateway/bot`."""
        remaining = max(SESSION_STARTS_PER_DAY - len(self.accepted), 0)
        limits = {
            "total": SESSION_STARTS_PER_DAY,
            "remaining": remaining,
            "reset_after": 0,
            "max_concurrency": self.max_concurrency,
        }
        return {"url": url, "shards": self.shard_count, "session_start_limit": limits}
