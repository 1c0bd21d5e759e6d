"""A server's speech language: the one place that reads and writes it.

    languages = ServerLanguages(ServerSettings(storage, config))
    hearing = await languages.hearing(guild_id)     # how to recognize this server's audio
    await languages.heard(guild_id, transcript.language)
    tag = await languages.speaking(guild_id)        # the language to answer aloud in

A server sets a code (`fr-FR`) or `auto`; with `auto` each recording is recognized in the
language it is spoken in, the last language heard is remembered (in the database, for every
process), and it is both the fallback for audio too short or unclear to tell and the language
spoken replies use. Translation into English is a per-server switch. DMs use the default.
"""

from __future__ import annotations

from bot.services.common import languages
from bot.services.speech.transcript import Hearing
from bot.services.tenancy.settings import HEARD_LANGUAGE, LANGUAGE, TRANSLATE, ServerSettings

# When the default language itself is `auto` and nothing was heard yet.
LAST_RESORT = "en-US"


class ServerLanguages:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.default = settings.default(LANGUAGE)  # LANGUAGE, the bot's setting

    async def setting(self, guild_id: int | None) -> str:
        """The code the server set (or the default): a tag or `auto`."""
        if guild_id is None:
            return self.default
        return await self.settings.get(guild_id, LANGUAGE)

    async def translates(self, guild_id: int | None) -> bool:
        if guild_id is None:
            return False
        return await self.settings.get(guild_id, TRANSLATE)

    async def hearing(self, guild_id: int | None) -> Hearing:
        """How to recognize the server's audio: its language, the fallback, translation."""
        language = await self.setting(guild_id)
        return Hearing(
            language, await self._concrete(guild_id, language), await self.translates(guild_id)
        )

    async def speaking(self, guild_id: int | None) -> str:
        """The language to speak in: the server's code, or with `auto` the last heard."""
        return await self._concrete(guild_id, await self.setting(guild_id))

    async def _concrete(self, guild_id: int | None, language: str) -> str:
        if language != languages.AUTO:
            return language
        if guild_id is not None:
            heard = await self.settings.get(guild_id, HEARD_LANGUAGE)
            if heard:
                return heard
        return self.default if self.default != languages.AUTO else LAST_RESORT

    async def heard(self, guild_id: int | None, language: str | None) -> None:
        """Remember the language just heard in an `auto` server (written only when it changes)."""
        if guild_id is None or not language or await self.setting(guild_id) != languages.AUTO:
            return
        if await self.settings.get(guild_id, HEARD_LANGUAGE) != language:
            await self.settings.set(guild_id, HEARD_LANGUAGE, language)

    async def choose(self, guild_id: int, language: str, translate: bool | None = None) -> None:
        """Set the server's language (already checked) and, if given, its translate switch."""
        await self.settings.set(guild_id, LANGUAGE, language)
        if translate is not None:
            await self.settings.set(guild_id, TRANSLATE, translate)
