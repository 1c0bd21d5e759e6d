"""Opus packets to 20 ms frames of 48 kHz mono s16le, with PyAV's bundled libopus.

One `OpusFrameDecoder` per speaker (Opus decoding is stateful). Packets longer than 20 ms
yield several frames; leftovers wait for the next packet, so every frame handed out is
exactly `FRAME_BYTES` long.
"""

from __future__ import annotations

import logging

import av

from bot.services.hearing.listening.sink import FRAME_BYTES, SAMPLE_RATE

log = logging.getLogger(__name__)

OPUS_SILENCE = b"\xf8\xff\xfe"


class OpusFrameDecoder:
    """Decodes one speaker's Opus packets to mono 20 ms frames. Not thread-safe."""

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("libopus", "r")
        self._codec.sample_rate = SAMPLE_RATE
        self._codec.layout = "stereo"
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._pending = bytearray()
        self.packets = 0

    def decode(self, payload: bytes) -> list[bytes]:
        """Frames decoded from one packet; raises `av.error.FFmpegError` on a corrupt one."""
        self.packets += 1
        for frame in self._codec.decode(av.Packet(payload)):
            for mono in self._resampler.resample(frame):
                self._pending += mono.to_ndarray().tobytes()
        frames = []
        while len(self._pending) >= FRAME_BYTES:
            frames.append(bytes(self._pending[:FRAME_BYTES]))
            del self._pending[:FRAME_BYTES]
        return frames
