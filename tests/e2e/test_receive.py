"""The bot receives users' voice: the sandbox speaks into the call, a sink attached to the
bot's voice client gets 20 ms mono frames attributed to the right user."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import wave

import numpy as np

from bot.core.voice_client import ListeningVoiceClient
from bot.sandbox.server import Sandbox
from bot.sandbox.voice_speak import encrypt_rtp
from bot.services.hearing.listening.sink import FRAME_BYTES
from tests.e2e.conftest import E2E, eventually

GUILD = Sandbox.GUILD_ID


class RecordingSink:
    """An AudioSink that keeps everything (thread-safe: called from the socket reader)."""

    def __init__(self, unwanted: set[int] | None = None) -> None:
        self.unwanted = unwanted or set()
        self.pcm: dict[int, bytearray] = {}
        self.silences: list[int] = []
        self.left: list[int] = []
        self.bad_frames = 0
        self.threads: set[int] = set()  # the threads that called in
        self._lock = threading.Lock()

    def wants(self, user_id: int) -> bool:
        return user_id not in self.unwanted

    def on_audio(self, user_id: int, pcm: bytes) -> None:
        with self._lock:
            self.bad_frames += len(pcm) != FRAME_BYTES
            self.pcm.setdefault(user_id, bytearray()).extend(pcm)

    def on_silence(self, user_id: int) -> None:
        with self._lock:
            self.threads.add(threading.get_ident())
            self.silences.append(user_id)

    def on_speaker_left(self, user_id: int) -> None:
        with self._lock:
            self.threads.add(threading.get_ident())
            self.left.append(user_id)

    def frames(self, user_id: int) -> int:
        with self._lock:
            return len(self.pcm.get(user_id, b"")) // FRAME_BYTES

    def wav16k(self, user_id: int) -> bytes:
        samples = np.frombuffer(bytes(self.pcm[user_id]), dtype=np.int16)[::3]  # 48k -> 16k
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(16_000)
            out.writeframes(samples.tobytes())
        return buffer.getvalue()


async def listening_bot(e2e: E2E, sink: RecordingSink) -> ListeningVoiceClient:
    await e2e.sandbox.join_voice("owner")
    assert await e2e.ask_text("!join") == "Joined **Voice**."
    client = e2e.bot.get_guild(GUILD).voice_client
    assert isinstance(client, ListeningVoiceClient)
    client.start_receiving(sink)
    assert client.receiving
    return client


async def speech(e2e: E2E, text: str) -> bytes:
    spoken = await e2e.bot.services.synthesis.synthesize(text, "en-US")
    try:
        return spoken.path.read_bytes()
    finally:
        spoken.path.unlink(missing_ok=True)


def user_id(e2e: E2E, name: str) -> int:
    return e2e.sandbox.user(name).id


async def test_a_user_is_heard_with_the_right_duration_and_id(e2e: E2E, hear) -> None:
    sink = RecordingSink()
    client = await listening_bot(e2e, sink)
    owner = user_id(e2e, "owner")
    spoken = await e2e.sandbox.speak("owner", await speech(e2e, "Hello there, my friend."))
    await eventually(lambda: owner in sink.silences, 15)
    assert abs(sink.frames(owner) - spoken.frames) <= 2
    assert sink.bad_frames == 0 and set(sink.pcm) == {owner}
    assert "hello" in await hear(sink.wav16k(owner))
    assert client.receive_stats.get("frames", 0) == sink.frames(owner)


async def test_two_users_overlapping_are_told_apart(e2e: E2E, hear) -> None:
    sink = RecordingSink()
    await listening_bot(e2e, sink)
    await e2e.sandbox.join_voice("member")
    owner, member = user_id(e2e, "owner"), user_id(e2e, "member")
    first = await speech(e2e, "The weather is lovely today.")
    second = await speech(e2e, "Seven green bottles.")
    said = await asyncio.gather(
        e2e.sandbox.speak("owner", first), e2e.sandbox.speak("member", second)
    )
    assert said[0].ssrc != said[1].ssrc
    await eventually(lambda: {owner, member} <= set(sink.silences), 15)
    assert abs(sink.frames(owner) - said[0].frames) <= 2
    assert abs(sink.frames(member) - said[1].frames) <= 2
    assert "weather" in await hear(sink.wav16k(owner))
    assert "bottle" in await hear(sink.wav16k(member))


async def test_bad_packets_unknown_ssrcs_and_departed_users_are_ignored(e2e: E2E) -> None:
    sink = RecordingSink()
    client = await listening_bot(e2e, sink)
    await e2e.sandbox.join_voice("member")  # so the bot does not leave when the owner does
    owner = user_id(e2e, "owner")
    clip = await speech(e2e, "One two three.")
    spoken = await e2e.sandbox.speak("owner", clip)
    await eventually(lambda: owner in sink.silences, 15)
    heard = sink.frames(owner)

    key = e2e.sandbox.voice.session_key(GUILD)
    for packet in (b"", b"\x80", os.urandom(200), bytes([0x80, 200]) + bytes(40)):
        e2e.sandbox.voice.send_raw(GUILD, packet)
    stranger = encrypt_rtp(key, sequence=1, timestamp=0, ssrc=999_999, payload=b"\xfc", nonce=9)
    e2e.sandbox.voice.send_raw(GUILD, stranger)
    await e2e.sandbox.leave_voice("owner")  # the voice server sends op 13
    await eventually(lambda: owner in sink.left, 15)
    late = encrypt_rtp(key, sequence=5, timestamp=0, ssrc=spoken.ssrc, payload=b"\xfc", nonce=99)
    e2e.sandbox.voice.send_raw(GUILD, late)
    await eventually(lambda: client.receive_stats.get("undecryptable", 0) >= 2, 15)

    member = user_id(e2e, "member")
    await e2e.sandbox.speak("member", clip)  # the receiver still works
    await eventually(lambda: member in sink.silences, 15)
    assert sink.frames(owner) == heard
    assert client.receive_stats.get("rtcp") == 1
    assert client.receive_stats.get("errors", 0) == 0
    assert threading.get_ident() not in sink.threads  # never called on the event loop


async def test_a_user_the_sink_does_not_want_is_never_decoded(e2e: E2E) -> None:
    await e2e.sandbox.join_voice("member")
    member = user_id(e2e, "member")
    sink = RecordingSink(unwanted={member})
    client = await listening_bot(e2e, sink)
    clip = await speech(e2e, "Do not listen to me.")
    await e2e.sandbox.speak("member", clip)
    await e2e.sandbox.speak("owner", clip)
    owner = user_id(e2e, "owner")
    await eventually(lambda: owner in sink.silences, 15)
    assert member not in client.decoded_by_user and client.decoded_by_user[owner] > 0
    assert client.receive_stats["unwanted"] > 0
    assert member not in sink.pcm


async def test_speaking_needs_the_user_in_the_bots_channel(e2e: E2E) -> None:
    await listening_bot(e2e, RecordingSink())
    try:
        await e2e.sandbox.speak("moderator", b"not even audio")
    except ValueError as exc:
        assert "not in the bot's voice channel" in str(exc)
    else:
        raise AssertionError("speaking from outside the channel was allowed")
