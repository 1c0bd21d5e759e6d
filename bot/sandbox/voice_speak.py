"""Users SPEAK to the bot in the sandbox: audio → Opus → encrypted RTP to the bot's UDP socket.

What a Discord voice server does for a user who talks: it tells the bot's voice websocket
which SSRC is whose (SPEAKING, op 5), then forwards that user's RTP packets. Here the audio is
a WAV path or bytes at any rate, converted to 48 kHz stereo and encoded with PyAV's bundled
libopus into 20 ms frames; each becomes an ``aead_xchacha20_poly1305_rtpsize`` packet with the
session's key, an incrementing sequence number, timestamp and 4-byte nonce counter. Five Opus
silence frames end the stream, as Discord clients do.

DAVE stays declined (the session description says ``dave_protocol_version: 0``), so payloads
are plain Opus inside the transport encryption.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import av
import nacl.secret
import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms
FRAME_SECONDS = 0.02
OPUS_SILENCE = b"\xf8\xff\xfe"
SILENCE_FRAMES = 5
OPUS_PAYLOAD_TYPE = 0x78
EXTENSION_PROFILE = 0xBEDE  # RFC 8285 one-byte header extensions, as Discord clients send


def load_pcm(audio: Path | str | bytes) -> bytes:
    """Any audio file PyAV can read (a path or its bytes) as s16le 48 kHz stereo PCM."""
    source = io.BytesIO(audio) if isinstance(audio, bytes) else str(audio)
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=SAMPLE_RATE)
    chunks: list[bytes] = []
    with av.open(source) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            for converted in resampler.resample(frame):
                chunks.append(converted.to_ndarray().tobytes())
    for converted in resampler.resample(None):
        chunks.append(converted.to_ndarray().tobytes())
    return b"".join(chunks)


def encode_opus(pcm: bytes) -> list[bytes]:
    """s16le 48 kHz stereo PCM as 20 ms Opus packets (the last frame padded with silence)."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = SAMPLE_RATE
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = 64_000
    codec.options = {"frame_duration": "20", "application": "voip"}
    codec.open()
    frame_bytes = FRAME_SAMPLES * 4
    if len(pcm) % frame_bytes:
        pcm += bytes(frame_bytes - len(pcm) % frame_bytes)
    packets: list[bytes] = []
    for index, start in enumerate(range(0, len(pcm), frame_bytes)):
        samples = np.frombuffer(pcm[start : start + frame_bytes], dtype=np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = index * FRAME_SAMPLES
        packets.extend(bytes(p) for p in codec.encode(frame))
    packets.extend(bytes(p) for p in codec.encode(None))
    return packets


def encrypt_rtp(
    key: bytes,
    *,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    nonce: int,
    csrcs: tuple[int, ...] = (),
    extension: bytes | None = None,
    padding: int = 0,
    payload_type: int = OPUS_PAYLOAD_TYPE,
) -> bytes:
    """One ``aead_xchacha20_poly1305_rtpsize`` packet, as a Discord voice server forwards it.

    The associated data is the RTP header, its CSRCs and (when `extension` is given) the
    4-byte extension header; the extension values (a multiple of 4 bytes), the payload and
    `padding` bytes of RTP padding (P bit) are encrypted. The 4-byte `nonce` counter ends the
    packet.
    """
    if extension is not None and len(extension) % 4:
        raise ValueError("RTP extension values come in 4-byte words")
    first = 0x80 | len(csrcs)
    if padding:
        first |= 0x20
    if extension is not None:
        first |= 0x10
    header = struct.pack(">BBHII", first, payload_type, sequence & 0xFFFF, timestamp, ssrc)
    header += b"".join(struct.pack(">I", c) for c in csrcs)
    body = payload
    if extension is not None:
        header += struct.pack(">HH", EXTENSION_PROFILE, len(extension) // 4)
        body = extension + body
    if padding:
        body += bytes(padding - 1) + bytes([padding])
    suffix = struct.pack(">I", nonce & 0xFFFFFFFF)
    full_nonce = suffix + bytes(nacl.secret.Aead.NONCE_SIZE - len(suffix))
    sealed = nacl.secret.Aead(key).encrypt(body, header, full_nonce).ciphertext
    return header + sealed + suffix


@dataclass
class RtpStream:
    """One speaker's outgoing RTP state (sequence, timestamp, nonce counter)."""

    key: bytes
    ssrc: int
    sequence: int = 0
    timestamp: int = 0
    nonce: int = 0

    def packet(self, payload: bytes) -> bytes:
        data = encrypt_rtp(
            self.key,
            sequence=self.sequence,
            timestamp=self.timestamp,
            ssrc=self.ssrc,
            payload=payload,
            nonce=self.nonce,
        )
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
        self.nonce = (self.nonce + 1) & 0xFFFFFFFF
        return data


@dataclass(frozen=True)
class Spoken:
    """What `speak` sent: the SSRC it used, the Opus frames and their seconds of audio."""

    ssrc: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames * FRAME_SECONDS


def opus_frames(audio: Path | str | bytes) -> list[bytes]:
    """Blocking: decode `audio` and encode it as 20 ms Opus frames (run it in a thread)."""
    return encode_opus(load_pcm(audio))
