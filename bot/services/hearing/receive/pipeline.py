"""From raw voice datagrams to an `AudioSink`: the receive path without any Discord object.

    datagram → RTCP? skip → transport decryption → SSRC → user id (unknown: hold ≤ 1 s)
             → sink.wants(user)? (no: drop undecoded) → DAVE → jitter buffer → Opus → sink

`feed` is called on discord.py's socket-reader thread for every datagram; the voice-gateway
facts (`speaking`, `user_left`, `reset`, `set_key`) come from the event loop. One re-entrant
lock serialises both. Nothing here raises out of `feed`: a bad packet is counted in `stats`
and logged at debug.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import av

from bot.services.hearing.listening.sink import AudioSink
from bot.services.hearing.receive.dave import DaveDecryptor
from bot.services.hearing.receive.jitter import JitterBuffer
from bot.services.hearing.receive.opus import OPUS_SILENCE, OpusFrameDecoder
from bot.services.hearing.receive.rtp import RtpPacket, TransportDecryptor, is_rtcp

log = logging.getLogger(__name__)

HOLD_SECONDS = 1.0  # packets of an SSRC that no SPEAKING has mapped yet
HOLD_PACKETS = 50  # 1 s of 20 ms packets
MAX_UNKNOWN_SSRCS = 16


@dataclass
class _Speaker:
    user_id: int
    jitter: JitterBuffer
    decoder: OpusFrameDecoder
    silent: bool = False


@dataclass
class _Held:
    since: float
    packets: deque[RtpPacket] = field(default_factory=lambda: deque(maxlen=HOLD_PACKETS))


class ReceivePipeline:
    """One voice connection's receive state: keys, SSRC map, speakers, counters."""

    def __init__(
        self,
        sink: AudioSink,
        *,
        dave: DaveDecryptor | None = None,
        decoder_factory: Callable[[], OpusFrameDecoder] = OpusFrameDecoder,
        clock: Callable[[], float] = time.monotonic,
        jitter_depth: int = 4,
    ) -> None:
        self.sink = sink
        self.dave = dave or DaveDecryptor()
        self.stats: Counter[str] = Counter()
        self.decoded_by_user: Counter[int] = Counter()
        self._decoder_factory = decoder_factory
        self._clock = clock
        self._jitter_depth = jitter_depth
        self._lock = threading.RLock()
        self._transport: TransportDecryptor | None = None
        self._users: dict[int, int] = {}  # ssrc -> user id
        self._speakers: dict[int, _Speaker] = {}  # ssrc -> stream state
        self._held: dict[int, _Held] = {}  # unmapped ssrc -> its recent packets

    # ----- voice gateway facts (event loop) ------------------------------------------------

    def set_key(self, secret_key: bytes | list[int], mode: str) -> None:
        """Use a (new) session key; a key change means a new session, so forget the SSRCs."""
        with self._lock:
            if self._transport is not None and self._transport.key == bytes(secret_key):
                return
            self._transport = TransportDecryptor(secret_key, mode)

    def speaking(self, user_id: int, ssrc: int, flags: int) -> None:
        """Voice op 5: `ssrc` belongs to `user_id`; flags 0 means they stopped speaking."""
        with self._lock:
            old = self._users.get(ssrc)
            if old is not None and old != user_id:
                self._end_stream(ssrc)
            for other, uid in list(self._users.items()):
                if uid == user_id and other != ssrc:  # a rejoin brings a new SSRC
                    self._end_stream(other)
                    del self._users[other]
            self._users[ssrc] = user_id
            held = self._held.pop(ssrc, None)
            if held is not None:
                for packet in held.packets:
                    self._deliver(user_id, packet)
            if flags == 0:
                self._silence(ssrc, user_id)

    def user_left(self, user_id: int) -> None:
        """Voice op 13: forget the user's SSRCs and tell the sink their stream ended."""
        with self._lock:
            for ssrc in [s for s, uid in self._users.items() if uid == user_id]:
                del self._users[ssrc]
                self._end_stream(ssrc)
            self._call(self.sink.on_speaker_left, user_id)

    def reset(self) -> None:
        """The voice websocket reconnected: SSRCs are re-announced, so start the map afresh."""
        with self._lock:
            for ssrc in list(self._speakers):
                user_id = self._speakers[ssrc].user_id
                self._end_stream(ssrc)
                self._call(self.sink.on_speaker_left, user_id)
            self._users.clear()
            self._held.clear()

    def users(self) -> dict[int, int]:
        """A copy of the SSRC → user id map."""
        with self._lock:
            return dict(self._users)

    # ----- datagrams (socket-reader thread) ------------------------------------------------

    def feed(self, datagram: bytes) -> None:
        """Take one UDP datagram. Never raises."""
        try:
            with self._lock:
                self._feed(datagram)
        except Exception:  # a receiver must outlive any packet
            self.stats["errors"] += 1
            log.debug("Dropped a voice packet after an unexpected error", exc_info=True)

    def _feed(self, datagram: bytes) -> None:
        self.stats["datagrams"] += 1
        if is_rtcp(datagram):
            self.stats["rtcp"] += 1
            return
        if self._transport is None:
            self.stats["no_key"] += 1
            return
        packet = self._transport.decrypt(datagram)
        if packet is None:
            self.stats["undecryptable"] += 1
            return
        user_id = self._users.get(packet.ssrc)
        if user_id is None:
            self._hold(packet)
            return
        self._deliver(user_id, packet)

    def _hold(self, packet: RtpPacket) -> None:
        now = self._clock()
        for ssrc, held in list(self._held.items()):
            if now - held.since > HOLD_SECONDS:
                self.stats["unknown_ssrc"] += len(held.packets)
                del self._held[ssrc]
        held = self._held.get(packet.ssrc)
        if held is None:
            if len(self._held) >= MAX_UNKNOWN_SSRCS:
                self.stats["unknown_ssrc"] += 1
                return
            held = self._held[packet.ssrc] = _Held(now)
        if len(held.packets) == HOLD_PACKETS:
            self.stats["unknown_ssrc"] += 1
        held.packets.append(packet)

    def _deliver(self, user_id: int, packet: RtpPacket) -> None:
        if not self.sink.wants(user_id):
            self.stats["unwanted"] += 1
            return
        frame = self.dave.decrypt(user_id, packet.payload)
        if frame is None:
            self.stats["dave_dropped"] += 1
            return
        speaker = self._speaker(packet.ssrc, user_id)
        for payload in speaker.jitter.push(packet.sequence, frame):
            self._decode(speaker, payload)

    def _speaker(self, ssrc: int, user_id: int) -> _Speaker:
        speaker = self._speakers.get(ssrc)
        if speaker is None:
            speaker = _Speaker(user_id, JitterBuffer(self._jitter_depth), self._decoder_factory())
            self._speakers[ssrc] = speaker
        return speaker

    def _decode(self, speaker: _Speaker, payload: bytes) -> None:
        if payload == OPUS_SILENCE:
            if not speaker.silent:
                speaker.silent = True
                self._call(self.sink.on_silence, speaker.user_id)
            return
        speaker.silent = False
        self.stats["decoded"] += 1
        self.decoded_by_user[speaker.user_id] += 1
        try:
            frames = speaker.decoder.decode(payload)
        except (av.error.FFmpegError, ValueError) as exc:
            self.stats["undecodable"] += 1
            log.debug("Dropped an undecodable Opus packet of user %s: %s", speaker.user_id, exc)
            return
        for frame in frames:
            self.stats["frames"] += 1
            self._call(self.sink.on_audio, speaker.user_id, frame)

    def _silence(self, ssrc: int, user_id: int) -> None:
        speaker = self._speakers.get(ssrc)
        if speaker is not None:
            for payload in speaker.jitter.flush():
                self._decode(speaker, payload)
            if speaker.silent:
                return
            speaker.silent = True
        self._call(self.sink.on_silence, user_id)

    def _end_stream(self, ssrc: int) -> None:
        speaker = self._speakers.pop(ssrc, None)
        if speaker is not None:
            for payload in speaker.jitter.flush():
                self._decode(speaker, payload)

    def _call(self, method: Callable[..., None], *args: object) -> None:
        try:
            method(*args)
        except Exception:
            self.stats["sink_errors"] += 1
            log.exception("The audio sink failed in %s", getattr(method, "__name__", method))
