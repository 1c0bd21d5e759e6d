"""Audio for the listening tests: 20 ms frames of 48 kHz mono s16le, as the receiver gives them.

Speech comes from espeak-ng (resampled to 48 kHz by ffmpeg), tones and noise from numpy.
"""

from __future__ import annotations

import functools
import subprocess

import numpy as np

from bot.services.hearing.listening.sink import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE
from bot.services.speech.audio import ffmpeg_exe


@functools.cache
def espeak(text: str, voice: str = "en-us") -> bytes:
    """`text` spoken by espeak-ng, as 48 kHz mono s16le."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True
    ).stdout
    return subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-i", "pipe:0"]
        + ["-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "pipe:1"],
        input=wav,
        check=True,
        capture_output=True,
    ).stdout


def silence(ms: int) -> bytes:
    return bytes(SAMPLE_RATE * ms // 1000 * 2)


def tone(ms: int, hz: float = 220.0, level: float = 0.3) -> bytes:
    """A voiced-sounding buzz: a tone with harmonics, like a vowel."""
    t = np.arange(SAMPLE_RATE * ms // 1000) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * hz * k * t) / k for k in range(1, 8))
    wave = wave / np.max(np.abs(wave)) * level * 32767
    return wave.astype(np.int16).tobytes()


def noise(ms: int, level: float = 0.01, seed: int = 1) -> bytes:
    samples = np.random.default_rng(seed).normal(0, level * 32767, SAMPLE_RATE * ms // 1000)
    return np.clip(samples, -32768, 32767).astype(np.int16).tobytes()


def frames(pcm: bytes) -> list[bytes]:
    """Whole 20 ms frames (a partial last frame is padded with zeros)."""
    if len(pcm) % FRAME_BYTES:
        pcm += bytes(FRAME_BYTES - len(pcm) % FRAME_BYTES)
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


def seconds(pcm: bytes) -> float:
    return len(pcm) / 2 / SAMPLE_RATE


assert FRAME_SAMPLES * 2 == FRAME_BYTES


class Clock:
    """A clock the tests move by hand (`clock.now += 0.02`)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now
