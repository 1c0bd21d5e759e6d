"""Shared fixtures for the speech and audio tests: fixture files, generated audio, one whisper."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.services import audio
from bot.services.speech import WhisperEngine

AudioSegment = audio.AudioSegment

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SPOKEN = "hello world this is a test"


@pytest.fixture(scope="session")
def fixture_bytes() -> Callable[[str], bytes]:
    """fixture_bytes("hello.ogg") -> the committed file's bytes."""
    return lambda name: (FIXTURES / name).read_bytes()


@pytest.fixture(scope="session")
def hello() -> AudioSegment:
    """The spoken fixture phrase, decoded (16 kHz mono, about 2.7 s)."""
    return audio.decode((FIXTURES / "hello.wav").read_bytes(), "hello.wav")


@pytest.fixture(scope="session")
def hello_wav(hello: AudioSegment) -> bytes:
    return audio.to_wav(hello)


def silence(seconds: float) -> AudioSegment:
    return AudioSegment.silent(duration=int(seconds * 1000), frame_rate=audio.SAMPLE_RATE)


@pytest.fixture(scope="session")
def speech_with_pauses(hello: AudioSegment) -> Callable[[float, float], AudioSegment]:
    """speech_with_pauses(total_seconds, pause_seconds): the phrase repeated with pauses."""

    def make(total_seconds: float, pause_seconds: float = 1.5) -> AudioSegment:
        unit = hello + silence(pause_seconds)
        repeats = int(total_seconds * 1000 // len(unit)) + 1
        return (unit * repeats)[: int(total_seconds * 1000)]

    return make


@pytest.fixture(scope="session")
def encode() -> Callable[..., bytes]:
    """encode(segment, ".ext", *ffmpeg_output_options) -> that file's bytes, made by ffmpeg."""

    def run(segment: AudioSegment, suffix: str, *options: str) -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            source, target = Path(folder) / "in.wav", Path(folder) / f"out{suffix}"
            source.write_bytes(audio.to_wav(segment))
            command = [audio.ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(source)]
            subprocess.run([*command, *options, str(target)], check=True, capture_output=True)
            return target.read_bytes()

    return run


@pytest.fixture(scope="session")
def whisper_engine() -> WhisperEngine:
    """One loaded whisper engine for the whole session (loading takes about a second)."""
    engine = WhisperEngine()
    engine.load()
    return engine
