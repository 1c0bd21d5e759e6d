"""Shared fixtures for the speech and audio tests (audio helpers: tests/fixtures/speech.py)."""

from __future__ import annotations

import pytest

from bot.services import audio
from bot.services.speech import WhisperEngine
from tests.fixtures import speech as samples


@pytest.fixture(scope="session")
def hello() -> audio.AudioSegment:
    """The spoken fixture phrase, decoded (16 kHz mono, about 2.6 s)."""
    return samples.hello()


@pytest.fixture(scope="session")
def hello_wav(hello: audio.AudioSegment) -> bytes:
    return audio.to_wav(hello)


@pytest.fixture(scope="session")
def whisper_engine() -> WhisperEngine:
    """One loaded whisper engine for the whole session (loading takes about a second)."""
    engine = WhisperEngine()
    engine.load()
    return engine
