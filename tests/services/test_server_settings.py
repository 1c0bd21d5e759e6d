"""Per-server, per-channel and per-person settings, declared once (tenancy/settings.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.config import load_settings
from bot.services.storage import Storage
from bot.services.tenancy import settings as declared
from bot.services.tenancy.settings import (
    AUTOSPEAK,
    CHAT,
    DATASET,
    LANGUAGE,
    LISTEN_OPTOUT,
    READ_CHANNELS,
    READER,
    TTS_ENGINE,
    ServerSettings,
)

GUILD, CHANNEL, USER = 1, 10, 100


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    async with Storage(tmp_path / "bot.db") as store:
        yield store


@pytest.fixture
def settings(storage: Storage) -> ServerSettings:
    config = SimpleNamespace(language="fr-FR", default_dataset="weather")
    return ServerSettings(storage, config)  # type: ignore[arg-type]


async def test_defaults_come_from_the_declaration_or_the_bots_settings(
    settings: ServerSettings,
) -> None:
    assert await settings.get(GUILD, AUTOSPEAK) is True
    assert await settings.get(GUILD, TTS_ENGINE) is None
    assert await settings.get(GUILD, LANGUAGE) == "fr-FR"  # LANGUAGE, the bot's setting
    assert await settings.get(GUILD, DATASET) == "weather"  # DEFAULT_DATASET
    assert await settings.channel(CHANNEL, CHAT) is False
    assert await settings.get(GUILD, READ_CHANNELS) == []


def test_the_defaults_of_a_real_config_are_its_own(tmp_path: Path) -> None:
    config = load_settings({"DATA_DIR": str(tmp_path), "LANGUAGE": "de-DE"}, env_file=None)
    assert ServerSettings(None, config).default(LANGUAGE) == "de-DE"  # type: ignore[arg-type]
    assert ServerSettings(None, config).default(DATASET) == config.default_dataset  # type: ignore[arg-type]


async def test_values_are_written_and_cleared(settings: ServerSettings, storage: Storage) -> None:
    await settings.set(GUILD, AUTOSPEAK, False)
    await settings.set(GUILD, TTS_ENGINE, "piper")
    assert await settings.many(GUILD, AUTOSPEAK, TTS_ENGINE, LANGUAGE) == (False, "piper", "fr-FR")
    assert await storage.get_guild_setting(GUILD, "autospeak") is False
    await settings.set(GUILD, TTS_ENGINE, None)
    assert await settings.get(GUILD, TTS_ENGINE) is None
    assert "tts_engine" not in await storage.guild_settings(GUILD)
    await settings.set_channel(CHANNEL, CHAT, True)
    assert await settings.channel(CHANNEL, CHAT) is True
    assert await settings.get(GUILD + 1, AUTOSPEAK) is True  # another server's are its own


async def test_a_stored_value_of_the_wrong_type_reads_as_the_default(
    settings: ServerSettings, storage: Storage
) -> None:
    await storage.set_guild_setting(GUILD, "autospeak", "yes please")
    await storage.set_guild_setting(GUILD, "read_channels", [1, "two"])
    await storage.set_guild_setting(GUILD, "listen_voice_channel", True)  # a bool, not an id
    assert await settings.get(GUILD, AUTOSPEAK) is True
    assert await settings.get(GUILD, READ_CHANNELS) == []
    assert await settings.get(GUILD, declared.LISTEN_VOICE_CHANNEL) is None


async def test_a_wrong_value_or_scope_is_a_programming_error(settings: ServerSettings) -> None:
    with pytest.raises(TypeError, match="takes"):
        await settings.set(GUILD, AUTOSPEAK, "on")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="channel setting"):
        await settings.get(GUILD, CHAT)
    with pytest.raises(TypeError, match="user setting"):
        await settings.set(GUILD, LISTEN_OPTOUT, True)


async def test_a_persons_settings_and_per_server_choices(settings: ServerSettings) -> None:
    await settings.set_user(USER, LISTEN_OPTOUT, True)
    await settings.set_user(USER, READER, {"speed": 1.5}, str(GUILD))
    await settings.set_user(USER, READER, {"voice": "en-gb"}, str(GUILD + 1))
    assert await settings.users_with(LISTEN_OPTOUT) == {USER: True}
    assert await settings.user(USER, READER, str(GUILD)) == {"speed": 1.5}
    assert sorted(await settings.user_keys(USER, READER)) == [str(GUILD), str(GUILD + 1)]
    await settings.set_user(USER, READER, None, str(GUILD))
    assert await settings.user(USER, READER, str(GUILD)) is None


def test_every_key_is_declared_once() -> None:
    keys = [s.key for s in declared.SETTINGS]
    assert len(keys) == len(set(keys)) and "language" in keys and "read_names" in keys
