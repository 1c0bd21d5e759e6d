"""One playback queue per server, knowing nothing of Discord.

The voice cog gives the queue a `play(guild_id, path)` coroutine that returns when the clip has
finished playing (and stops playback when cancelled). Items are single clips or streams of
clips (`SynthesisService.synthesize_stream`); they play one at a time, in the order they were
enqueued. A stream's first clip plays while its later clips are still being synthesised.

The queue owns the files it is given: each is deleted after playing, or when dropped by
`skip`, `stop` or `clear`.

It counts what it does: the items waiting (`metrics.VOICE_QUEUE`, over every server), and
the time from an item's enqueueing to its first clip starting (`SAY_FIRST_PACKET_SECONDS`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot import metrics
from bot.services.voice.synthesis import SpokenAudio, remove_file

log = logging.getLogger(__name__)

PlayFunction = Callable[[int, Path], Awaitable[None]]
ErrorHandler = Callable[[int, Exception], Awaitable[None]]
Item = SpokenAudio | AsyncIterator[SpokenAudio]


@dataclass
class _Queued:
    item: Item
    queued_at: float  # time.monotonic() when it was enqueued


@dataclass
class _Guild:
    items: deque[_Queued] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    current: asyncio.Task[None] | None = None
    last_activity: float = 0.0


class PlaybackQueue:
    """Per-server queues, each drained by one worker task started on demand.

    `on_error(guild_id, exc)` hears about items that failed (synthesis or playback); the
    failure is logged either way and the queue moves on to the next item.
    """

    def __init__(
        self,
        play: PlayFunction,
        *,
        on_error: ErrorHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._play = play
        self._on_error = on_error
        self._clock = clock
        self._guilds: dict[int, _Guild] = {}
        self._closed = False

    def enqueue(self, guild_id: int, item: Item) -> int:
        """Queue a clip or a stream of clips; returns how many items are ahead of it."""
        if self._closed:
            raise RuntimeError("the playback queue is closed")
        state = self._guilds.setdefault(guild_id, _Guild(last_activity=self._clock()))
        ahead = len(state.items) + (1 if state.current is not None else 0)
        state.items.append(_Queued(item, time.monotonic()))
        metrics.VOICE_QUEUE.inc()
        if state.worker is None or state.worker.done():
            state.worker = asyncio.create_task(
                self._work(guild_id, state), name=f"playback-{guild_id}"
            )
        return ahead

    def is_playing(self, guild_id: int) -> bool:
        """True while an item is being played (or its next clip synthesised)."""
        state = self._guilds.get(guild_id)
        return state is not None and state.current is not None

    def pending(self, guild_id: int) -> int:
        """Items waiting behind the current one."""
        state = self._guilds.get(guild_id)
        return len(state.items) if state else 0

    def size(self, guild_id: int) -> int:
        """Items waiting plus the one playing."""
        return self.pending(guild_id) + self.is_playing(guild_id)

    def last_activity(self, guild_id: int) -> float:
        """Clock time when the server's last clip ended (or it was touched); 0.0 if never."""
        state = self._guilds.get(guild_id)
        return state.last_activity if state else 0.0

    def touch(self, guild_id: int) -> None:
        """Count now as activity, e.g. when the bot joins a channel, so idle time starts anew."""
        self._guilds.setdefault(guild_id, _Guild()).last_activity = self._clock()

    async def wait_idle(self, guild_id: int) -> None:
        """Return once the server's queue is empty and nothing plays."""
        state = self._guilds.get(guild_id)
        while state is not None and state.worker is not None and not state.worker.done():
            await asyncio.wait([state.worker])

    def skip(self, guild_id: int) -> bool:
        """Stop the current item (all of a stream's clips); False when nothing is playing."""
        state = self._guilds.get(guild_id)
        if state is None or state.current is None or state.current.done():
            return False
        state.current.cancel()
        return True

    async def stop(self, guild_id: int) -> int:
        """Drop the waiting items and stop the current one; returns how many were removed."""
        state = self._guilds.get(guild_id)
        if state is None:
            return 0
        dropped = [queued.item for queued in state.items]
        state.items.clear()
        metrics.VOICE_QUEUE.dec(len(dropped))
        current = state.current
        if current is not None and not current.done():
            current.cancel()
            dropped_current = 1
        else:
            dropped_current = 0
        for item in dropped:
            await _discard(item)
        if current is not None:
            await asyncio.wait([current])
        return len(dropped) + dropped_current

    async def clear(self, guild_id: int) -> None:
        """Forget a server entirely (the bot left or lost its voice connection)."""
        await self.stop(guild_id)
        state = self._guilds.pop(guild_id, None)
        if state is not None and state.worker is not None:
            state.worker.cancel()
            await asyncio.wait([state.worker])

    async def close(self) -> None:
        """Stop every server's playback and delete the files still queued."""
        self._closed = True
        for guild_id in list(self._guilds):
            await self.clear(guild_id)

    async def _work(self, guild_id: int, state: _Guild) -> None:
        while state.items:
            queued = state.items.popleft()
            metrics.VOICE_QUEUE.dec()
            item = queued.item
            state.current = asyncio.create_task(self._run_item(guild_id, state, queued))
            try:
                await asyncio.wait([state.current])
            except asyncio.CancelledError:
                state.current.cancel()
                await asyncio.wait([state.current])
                raise
            finally:
                state.current = None
                # Also covers an item cancelled before it started: its file or stream is
                # released here. Both are harmless on an item that already finished.
                await _discard(item)

    async def _run_item(self, guild_id: int, state: _Guild, queued: _Queued) -> None:
        item = queued.item
        first_of: _Queued | None = queued
        try:
            if isinstance(item, SpokenAudio):
                await self._play_clip(guild_id, state, item, first_of)
            else:
                async for clip in item:
                    await self._play_clip(guild_id, state, clip, first_of)
                    first_of = None  # only the first clip's start is the item's first audio
        except asyncio.CancelledError:
            log.debug("playback in guild %d skipped or stopped", guild_id)
            raise
        except Exception as exc:
            log.warning("playback item failed in guild %d", guild_id, exc_info=True)
            await self._report(guild_id, exc)

    async def _play_clip(
        self, guild_id: int, state: _Guild, clip: SpokenAudio, first_of: _Queued | None = None
    ) -> None:
        """Play one clip; `first_of` is the item it is the first clip of (its wait is timed)."""
        if first_of is not None:
            metrics.SAY_FIRST_PACKET_SECONDS.observe(time.monotonic() - first_of.queued_at)
        try:
            await self._play(guild_id, clip.path)
        finally:
            remove_file(clip.path)
            state.last_activity = self._clock()

    async def _report(self, guild_id: int, exc: Exception) -> None:
        if self._on_error is None:
            return
        try:
            await self._on_error(guild_id, exc)
        except Exception:
            log.exception("the playback error handler failed in guild %d", guild_id)


async def _discard(item: Item) -> None:
    if isinstance(item, SpokenAudio):
        remove_file(item.path)
    else:
        await _close_stream(item)


async def _close_stream(stream: AsyncIterator[SpokenAudio]) -> None:
    """Close a stream so that it deletes the clips it made ahead."""
    aclose = getattr(stream, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:
        log.warning("closing a synthesis stream failed", exc_info=True)
