"""What the bot SAYS in the sandbox: its RTP payloads decoded and grouped into `Utterance`s.

The voice server (bot/sandbox/voice.py) hands every decrypted Opus payload of the bot's
SSRC to `Hearing.receive`. Payloads are decoded with PyAV's bundled libopus to s16 48 kHz
stereo; an utterance ends after `idle_timeout` seconds without audio or when Opus silence
frames arrive (discord.py's player sends five when it stops or pauses). Finished utterances
are saved (when `out_dir` is set) off the loop, then published in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import itertools
import logging
import os
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
CHANNELS = 2
SAMPLE_WIDTH = 2
BYTES_PER_SECOND = SAMPLE_RATE * CHANNELS * SAMPLE_WIDTH
OPUS_SILENCE = b"\xf8\xff\xfe"


@dataclass(frozen=True)
class Utterance:
    """One stretch of audio the bot played, decoded to s16le 48 kHz stereo PCM."""

    guild_id: int
    ssrc: int
    pcm: bytes
    packets: int
    started_at: float
    ended_at: float
    path: Path | None = None

    @property
    def duration(self) -> float:
        """Seconds of decoded audio."""
        return len(self.pcm) / BYTES_PER_SECOND

    def wav_bytes(self) -> bytes:
        """The audio as a 48 kHz stereo 16-bit WAV file."""
        return _wav(self.pcm, SAMPLE_RATE, CHANNELS)

    def mono16k_wav(self) -> bytes:
        """The audio resampled to a 16 kHz mono 16-bit WAV file, as speech recognizers like."""
        return _wav(_to_mono16k(self.pcm), 16_000, 1)


class _OpusDecoder:
    """Decodes single Opus packets to interleaved s16 48 kHz stereo with PyAV's libopus."""

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("opus", "r")
        self._codec.sample_rate = SAMPLE_RATE
        self._codec.layout = "stereo"
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=SAMPLE_RATE)

    def decode(self, payload: bytes) -> bytes:
        chunks: list[bytes] = []
        for frame in self._codec.decode(av.Packet(payload)):
            for converted in self._resampler.resample(frame):
                chunks.append(converted.to_ndarray().tobytes())
        return b"".join(chunks)


@dataclass
class BotStream:
    """The bot's audio in one voice session: its decoder and the utterance in progress."""

    guild_id: int
    ssrc: int
    decoder: _OpusDecoder = field(default_factory=_OpusDecoder)
    pcm: bytearray = field(default_factory=bytearray)
    packets: int = 0
    started_at: float = 0.0
    last_at: float = 0.0
    idle_timer: asyncio.TimerHandle | None = None


class Hearing:
    """Collects, saves and publishes what the bot says, per guild."""

    def __init__(self, out_dir: Path | None = None, *, idle_timeout: float = 0.4) -> None:
        self.out_dir = out_dir
        self.idle_timeout = idle_timeout
        self.on_utterance: Callable[[Utterance], None] | None = None
        self._utterances: dict[int, list[Utterance]] = {}
        self._first_packet: dict[int, float] = {}
        self._published = asyncio.Event()
        self._outbox: asyncio.Queue[tuple[Utterance, Path | None]] | None = None
        self._file_numbers = itertools.count(1)
        self._publisher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._outbox = asyncio.Queue()
        self._publisher = asyncio.create_task(self._publish_loop(), name="voice-utterance-writer")

    async def stop(self) -> None:
        """Wait (briefly) for finished utterances to be saved, then stop publishing."""
        if self._outbox is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self._outbox.join()
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
            self._publisher = None

    def new_session(self, guild_id: int) -> None:
        """A new voice session of the guild starts: its first packet is timed afresh."""
        self._first_packet.pop(guild_id, None)

    # ----- what tests, the console and benchmarks read ----------------------------------

    def utterances(self, guild_id: int) -> list[Utterance]:
        return list(self._utterances.get(guild_id, ()))

    async def wait_for_utterance(
        self, guild_id: int, *, index: int = 0, timeout: float = 15.0
    ) -> Utterance:
        async with asyncio.timeout(timeout):
            while True:
                done = self._utterances.get(guild_id, [])
                if len(done) > index:
                    return done[index]
                await self._published.wait()

    def first_packet_time(self, guild_id: int) -> float | None:
        return self._first_packet.get(guild_id)

    # ----- what the voice server feeds -----------------------------------------------------

    def receive(self, stream: BotStream, payload: bytes) -> None:
        """One decrypted Opus payload of the bot."""
        if payload == OPUS_SILENCE:
            self.finish(stream)
            return
        try:
            pcm = stream.decoder.decode(payload)
        except av.error.FFmpegError as exc:
            log.debug("Dropping an undecodable Opus packet for ssrc %s: %s", stream.ssrc, exc)
            return
        self._add_audio(stream, pcm)

    def _add_audio(self, stream: BotStream, pcm: bytes) -> None:
        now = time.monotonic()
        self._first_packet.setdefault(stream.guild_id, now)
        if stream.packets == 0:
            stream.started_at = now
        stream.pcm += pcm
        stream.packets += 1
        stream.last_at = now
        if stream.idle_timer is not None:
            stream.idle_timer.cancel()
        loop = asyncio.get_running_loop()
        stream.idle_timer = loop.call_later(self.idle_timeout, self.finish, stream)

    def finish(self, stream: BotStream) -> None:
        """End the utterance in progress (if any) and queue it for saving and publishing."""
        if stream.idle_timer is not None:
            stream.idle_timer.cancel()
            stream.idle_timer = None
        if stream.packets == 0:
            return
        utterance = Utterance(
            guild_id=stream.guild_id,
            ssrc=stream.ssrc,
            pcm=bytes(stream.pcm),
            packets=stream.packets,
            started_at=stream.started_at,
            ended_at=stream.last_at,
        )
        stream.pcm = bytearray()
        stream.packets = 0
        path = None
        if self.out_dir is not None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            number = next(self._file_numbers)
            path = self.out_dir / f"voice-{stream.guild_id}-{stamp}-{number:03d}.wav"
        if self._outbox is not None:
            self._outbox.put_nowait((utterance, path))

    # ----- publishing ----------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        """Save utterances in order (off the loop), then make them visible and notify."""
        assert self._outbox is not None
        while True:
            utterance, path = await self._outbox.get()
            try:
                if path is not None:
                    await asyncio.to_thread(_write_atomically, path, utterance.wav_bytes())
                    utterance = dataclasses.replace(utterance, path=path)
                self._publish(utterance)
            except OSError:
                log.exception("Could not save the bot's speech to %s", path)
                self._publish(utterance)
            finally:
                self._outbox.task_done()

    def _publish(self, utterance: Utterance) -> None:
        self._utterances.setdefault(utterance.guild_id, []).append(utterance)
        log.info(
            "Bot said %.2f s in guild %s (%d packets)",
            utterance.duration,
            utterance.guild_id,
            utterance.packets,
        )
        self._published.set()
        self._published = asyncio.Event()
        if self.on_utterance is not None:
            try:
                self.on_utterance(utterance)
            except Exception:
                log.exception("on_utterance callback failed")


def _wav(pcm: bytes, rate: int, channels: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(SAMPLE_WIDTH)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue()


def _to_mono16k(pcm: bytes) -> bytes:
    usable = len(pcm) - len(pcm) % (CHANNELS * SAMPLE_WIDTH)
    if usable == 0:
        return b""
    samples = np.frombuffer(pcm[:usable], dtype=np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
    frame.sample_rate = SAMPLE_RATE
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
    frames = resampler.resample(frame) + resampler.resample(None)
    return b"".join(f.to_ndarray().tobytes() for f in frames)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
