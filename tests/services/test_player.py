"""The per-server playback queue: order, one at a time, skip, stop, failures, file clean-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.services.voice.player import PlaybackQueue
from bot.services.voice.synthesis import SpokenAudio, SynthesisService

GUILD = 1
OTHER_GUILD = 2


class FakeVoice:
    """Stands in for the cog's play(): 'plays' a clip for a few ms and records what it saw."""

    def __init__(self, seconds: float = 0.01) -> None:
        self.seconds = seconds
        self.started: list[tuple[int, str]] = []
        self.finished: list[tuple[int, str]] = []
        self.cancelled: list[str] = []
        self.existed: list[bool] = []
        self.active = 0
        self.most_active = 0
        self.fail: set[str] = set()
        self.hold: set[str] = set()
        self.started_event = asyncio.Event()

    async def __call__(self, guild_id: int, path: Path) -> None:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        self.started.append((guild_id, path.name))
        self.existed.append(exists(path))
        self.started_event.set()
        try:
            if path.name in self.fail:
                raise RuntimeError("the voice connection broke")
            await asyncio.sleep(3600 if path.name in self.hold else self.seconds)
            self.finished.append((guild_id, path.name))
        except asyncio.CancelledError:
            self.cancelled.append(path.name)
            raise
        finally:
            self.active -= 1

    def names(self, guild_id: int = GUILD) -> list[str]:
        return [name for g, name in self.started if g == guild_id]

    async def wait_started(self, name: str, guild_id: int = GUILD) -> None:
        while (guild_id, name) not in self.started:
            self.started_event.clear()
            await self.started_event.wait()


def clip(folder: Path, name: str) -> SpokenAudio:
    path = folder / name
    path.write_bytes(b"RIFF fake audio")
    return SpokenAudio(path=path, engine="fake", duration_seconds=0.01)


def exists(path: Path) -> bool:
    return path.exists()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class Stream:
    """An async iterator of clips that can be held between clips and records being closed."""

    def __init__(self, clips: list[SpokenAudio], fail_after: int | None = None) -> None:
        self.clips = clips
        self.fail_after = fail_after
        self.given = 0
        self.gates = [asyncio.Event() for _ in clips]
        for gate in self.gates:
            gate.set()
        self.closed = False

    def __aiter__(self) -> AsyncIterator[SpokenAudio]:
        return self

    async def __anext__(self) -> SpokenAudio:
        if self.fail_after is not None and self.given == self.fail_after:
            raise RuntimeError("synthesis failed")
        if self.given >= len(self.clips):
            raise StopAsyncIteration
        await self.gates[self.given].wait()
        self.given += 1
        return self.clips[self.given - 1]

    async def aclose(self) -> None:
        self.closed = True
        for left in self.clips[self.given :]:
            left.path.unlink(missing_ok=True)


def test_construction_starts_no_task() -> None:
    queue = PlaybackQueue(FakeVoice())  # no running loop needed: nothing is started here
    assert not queue.is_playing(GUILD)
    assert queue.pending(GUILD) == 0
    assert queue.last_activity(GUILD) == 0.0


async def test_five_quick_items_play_in_order_one_at_a_time(tmp_path: Path) -> None:
    voice = FakeVoice()
    queue = PlaybackQueue(voice)
    names = [f"tts-{i}.wav" for i in range(5)]
    ahead = [queue.enqueue(GUILD, clip(tmp_path, name)) for name in names]
    assert ahead == [0, 1, 2, 3, 4]
    await queue.wait_idle(GUILD)
    assert voice.names() == names
    assert [name for _, name in voice.finished] == names
    assert voice.most_active == 1
    assert all(voice.existed)
    assert listing(tmp_path) == []  # every file removed after playing
    assert not queue.is_playing(GUILD)


async def test_items_enqueued_while_playing_wait_their_turn(tmp_path: Path) -> None:
    voice = FakeVoice(seconds=0.05)
    queue = PlaybackQueue(voice)
    queue.enqueue(GUILD, clip(tmp_path, "a.wav"))
    await voice.wait_started("a.wav")
    assert queue.is_playing(GUILD)
    assert queue.enqueue(GUILD, clip(tmp_path, "b.wav")) == 1
    assert queue.enqueue(GUILD, clip(tmp_path, "c.wav")) == 2
    assert queue.pending(GUILD) == 2
    await queue.wait_idle(GUILD)
    assert voice.names() == ["a.wav", "b.wav", "c.wav"]
    assert voice.most_active == 1


async def test_queue_restarts_after_going_idle(tmp_path: Path) -> None:
    voice = FakeVoice()
    queue = PlaybackQueue(voice)
    queue.enqueue(GUILD, clip(tmp_path, "a.wav"))
    await queue.wait_idle(GUILD)
    queue.enqueue(GUILD, clip(tmp_path, "b.wav"))
    await queue.wait_idle(GUILD)
    assert voice.names() == ["a.wav", "b.wav"]


async def test_stream_first_clip_plays_while_the_rest_is_being_made(tmp_path: Path) -> None:
    voice = FakeVoice()
    queue = PlaybackQueue(voice)
    stream = Stream([clip(tmp_path, f"s{i}.wav") for i in range(3)])
    stream.gates[1].clear()  # the second sentence is "still being synthesised"
    queue.enqueue(GUILD, stream)
    queue.enqueue(GUILD, clip(tmp_path, "after.wav"))
    await voice.wait_started("s0.wav")
    await asyncio.sleep(0.05)
    assert voice.names() == ["s0.wav"]  # nothing else jumps ahead while the stream waits
    stream.gates[1].set()
    await queue.wait_idle(GUILD)
    assert voice.names() == ["s0.wav", "s1.wav", "s2.wav", "after.wav"]
    assert stream.closed
    assert listing(tmp_path) == []


async def test_skip_stops_the_current_item_and_moves_on(tmp_path: Path) -> None:
    voice = FakeVoice()
    voice.hold.add("long.wav")
    queue = PlaybackQueue(voice)
    assert not queue.skip(GUILD)
    queue.enqueue(GUILD, clip(tmp_path, "long.wav"))
    queue.enqueue(GUILD, clip(tmp_path, "next.wav"))
    await voice.wait_started("long.wav")
    assert queue.skip(GUILD)
    await queue.wait_idle(GUILD)
    assert voice.cancelled == ["long.wav"]
    assert voice.names() == ["long.wav", "next.wav"]
    assert listing(tmp_path) == []
    assert not queue.skip(GUILD)


async def test_skip_drops_the_rest_of_a_stream(tmp_path: Path) -> None:
    voice = FakeVoice()
    voice.hold.add("s0.wav")
    queue = PlaybackQueue(voice)
    stream = Stream([clip(tmp_path, f"s{i}.wav") for i in range(3)])
    queue.enqueue(GUILD, stream)
    queue.enqueue(GUILD, clip(tmp_path, "next.wav"))
    await voice.wait_started("s0.wav")
    assert queue.skip(GUILD)
    await queue.wait_idle(GUILD)
    assert voice.names() == ["s0.wav", "next.wav"]
    assert stream.closed
    assert listing(tmp_path) == []


async def test_skip_before_the_item_started_still_removes_its_file(tmp_path: Path) -> None:
    voice = FakeVoice()
    queue = PlaybackQueue(voice)
    queue.enqueue(GUILD, clip(tmp_path, "a.wav"))
    await asyncio.sleep(0)  # the worker took the item, which has not run yet
    assert queue.skip(GUILD)
    await queue.wait_idle(GUILD)
    assert voice.started == []
    assert listing(tmp_path) == []


async def test_stop_clears_the_queue_and_the_current_item(tmp_path: Path) -> None:
    voice = FakeVoice()
    voice.hold.add("a.wav")
    queue = PlaybackQueue(voice)
    queue.enqueue(GUILD, clip(tmp_path, "a.wav"))
    queue.enqueue(GUILD, clip(tmp_path, "b.wav"))
    waiting_stream = Stream([clip(tmp_path, "s0.wav"), clip(tmp_path, "s1.wav")])
    queue.enqueue(GUILD, waiting_stream)
    queue.enqueue(GUILD, clip(tmp_path, "c.wav"))
    await voice.wait_started("a.wav")

    assert await queue.stop(GUILD) == 4
    await queue.wait_idle(GUILD)
    assert voice.names() == ["a.wav"]
    assert waiting_stream.closed
    assert listing(tmp_path) == []
    assert await queue.stop(GUILD) == 0
    # The queue works again afterwards.
    queue.enqueue(GUILD, clip(tmp_path, "d.wav"))
    await queue.wait_idle(GUILD)
    assert voice.names() == ["a.wav", "d.wav"]


async def test_stop_of_an_unknown_server() -> None:
    assert await PlaybackQueue(FakeVoice()).stop(42) == 0


async def test_failing_play_is_reported_and_the_queue_continues(tmp_path: Path) -> None:
    voice = FakeVoice()
    voice.fail.add("tts-1.wav")
    errors: list[tuple[int, str]] = []

    async def on_error(guild_id: int, exc: Exception) -> None:
        errors.append((guild_id, str(exc)))

    queue = PlaybackQueue(voice, on_error=on_error)
    names = [f"tts-{i}.wav" for i in range(4)]
    for name in names:
        queue.enqueue(GUILD, clip(tmp_path, name))
    await queue.wait_idle(GUILD)
    assert voice.names() == names
    assert errors == [(GUILD, "the voice connection broke")]
    assert listing(tmp_path) == []


async def test_failing_stream_is_reported_once_and_the_queue_continues(tmp_path: Path) -> None:
    voice = FakeVoice()
    errors: list[Exception] = []

    async def on_error(guild_id: int, exc: Exception) -> None:
        errors.append(exc)

    queue = PlaybackQueue(voice, on_error=on_error)
    stream = Stream([clip(tmp_path, f"s{i}.wav") for i in range(3)], fail_after=1)
    queue.enqueue(GUILD, stream)
    queue.enqueue(GUILD, clip(tmp_path, "after.wav"))
    await queue.wait_idle(GUILD)
    assert voice.names() == ["s0.wav", "after.wav"]
    assert [str(e) for e in errors] == ["synthesis failed"]
    assert stream.closed
    assert listing(tmp_path) == []


async def test_a_failing_error_handler_does_not_stop_the_queue(tmp_path: Path) -> None:
    voice = FakeVoice()
    voice.fail.add("a.wav")

    async def on_error(guild_id: int, exc: Exception) -> None:
        raise ValueError("handler bug")

    queue = PlaybackQueue(voice, on_error=on_error)
    queue.enqueue(GUILD, clip(tmp_path, "a.wav"))
    queue.enqueue(GUILD, clip(tmp_path, "b.wav"))
    await queue.wait_idle(GUILD)
    assert voice.finished == [(GUILD, "b.wav")]


async def test_servers_play_independently(tmp_path: Path) -> None:
    voice = FakeVoice()
    voice.hold.add("a-long.wav")
    queue = PlaybackQueue(voice)
    queue.enqueue(GUILD, clip(tmp_path, "a-long.wav"))
    queue.enqueue(OTHER_GUILD, clip(tmp_path, "b.wav"))
    await queue.wait_idle(OTHER_GUILD)
    assert voice.finished == [(OTHER_GUILD, "b.wav")]
    assert queue.is_playing(GUILD) and not queue.is_playing(OTHER_GUILD)
    await queue.close()


async def test_last_activity_is_when_the_last_clip_ended(tmp_path: Path) -> None:
    now = [100.0]
    queue = PlaybackQueue(FakeVoice(), clock=lambda: now[0])
    queue.touch(GUILD)
    assert queue.last_activity(GUILD) == 100.0
    now[0] = 150.0
    queue.enqueue(GUILD, clip(tmp_path, "a.wav"))
    await queue.wait_idle(GUILD)
    assert queue.last_activity(GUILD) == 150.0
    assert queue.last_activity(OTHER_GUILD) == 0.0


async def test_clear_forgets_the_server(tmp_path: Path) -> None:
    voice = FakeVoice()
    voice.hold.add("a.wav")
    queue = PlaybackQueue(voice)
    queue.enqueue(GUILD, clip(tmp_path, "a.wav"))
    queue.enqueue(GUILD, clip(tmp_path, "b.wav"))
    await voice.wait_started("a.wav")
    await queue.clear(GUILD)
    assert not queue.is_playing(GUILD)
    assert queue.pending(GUILD) == 0
    assert queue.last_activity(GUILD) == 0.0
    assert listing(tmp_path) == []
    assert voice.cancelled == ["a.wav"]


async def test_close_stops_everything_and_refuses_new_items(tmp_path: Path) -> None:
    voice = FakeVoice()
    voice.hold.update({"a.wav", "b.wav"})
    queue = PlaybackQueue(voice)
    queue.enqueue(GUILD, clip(tmp_path, "a.wav"))
    queue.enqueue(OTHER_GUILD, clip(tmp_path, "b.wav"))
    queue.enqueue(OTHER_GUILD, clip(tmp_path, "c.wav"))
    await voice.wait_started("a.wav")
    await voice.wait_started("b.wav", OTHER_GUILD)
    await queue.close()
    assert listing(tmp_path) == []
    assert sorted(voice.cancelled) == ["a.wav", "b.wav"]
    assert not queue.is_playing(GUILD) and not queue.is_playing(OTHER_GUILD)
    with pytest.raises(RuntimeError):
        queue.enqueue(GUILD, clip(tmp_path, "late.wav"))


async def test_real_synthesis_stream_through_the_queue(tmp_path: Path) -> None:
    """espeak clips of a three-sentence reply reach play() in order, then are deleted."""
    service = SynthesisService(["espeak"], tmp_dir=tmp_path / "tts")
    heard: list[float] = []

    async def play(guild_id: int, path: Path) -> None:
        heard.append(await asyncio.to_thread(_wav_seconds, path))

    queue = PlaybackQueue(play)
    text = "First sentence here. The second sentence is the longest one of all. Third."
    queue.enqueue(GUILD, service.synthesize_stream(text, "en-US"))
    await queue.wait_idle(GUILD)
    assert len(heard) == 3
    assert heard[1] > heard[0] > heard[2] > 0.2
    assert listing(tmp_path / "tts") == []
    await service.close()


def _wav_seconds(path: Path) -> float:
    import wave

    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()
