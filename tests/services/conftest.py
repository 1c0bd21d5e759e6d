"""Shared fixtures for the service tests: audio (helpers in tests/fixtures/speech.py) and
storage on both backends (`location`, `storage`: SQLite, then a real PostgreSQL server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.services.speech import audio
from bot.services.speech.whisper import WhisperEngine
from bot.services.storage import Storage
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


Location = str | Path


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """Where a new, empty database goes: a SQLite file, or a PostgreSQL database URL."""
    if request.param == "sqlite":
        return tmp_path / "data" / "bot.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def another_location(
    request: pytest.FixtureRequest, location: Location, tmp_path: Path
) -> Location:
    """A second new database on the same backend as `location`."""
    if isinstance(location, Path):
        return tmp_path / "another" / "bot.db"
    return request.getfixturevalue("new_postgres_database")()


@pytest.fixture
async def storage(location: Location) -> AsyncIterator[Storage]:
    async with Storage(location) as opened:
        yield opened
