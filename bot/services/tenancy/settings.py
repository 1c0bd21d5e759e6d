"""Every setting a server, a channel or a person keeps, declared once: key, type and default.

    settings = ServerSettings(storage, config)
    if await settings.get(guild_id, AUTOSPEAK): ...
    await settings.set(guild_id, TTS_ENGINE, "piper")      # None: back to the default
    engine, voice = await settings.many(guild_id, TTS_ENGINE, TTS_VOICE)   # one read

A default that an operator chooses comes from the bot's settings (`default_from`: LANGUAGE,
DEFAULT_DATASET), never written here twice. A stored value of the wrong type (an older bot's,
or a hand-edited row) reads as the default and is logged. To add a setting: declare it below,
then read and write it through `ServerSettings`; nothing else names its key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from bot.services.storage import Storage

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
Scope = Literal["guild", "channel", "user"]


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) for v in value)


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One stored setting: its key, the types it holds, and its default."""

    key: str
    types: tuple[type, ...]
    default: T
    scope: Scope = "guild"
    default_from: str | None = None  # the bot setting that gives the default, if any
    check: Callable[[Any], bool] | None = field(default=None, compare=False)

    def default_for(self, config: Settings | None) -> T:
        if self.default_from is not None and config is not None:
            return getattr(config, self.default_from)  # type: ignore[no-any-return]
        return self.default

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) and bool not in self.types:
            return False  # JSON's true is not a channel id
        return isinstance(value, self.types) and (self.check is None or self.check(value))

    def read(self, stored: Any, config: Settings | None) -> T:
        if stored is None:
            return self.default_for(config)
        if not self.accepts(stored):
            log.warning("setting %s holds %r, not a %s; using its default", self.key,
                        stored, "/".join(t.__name__ for t in self.types))  # fmt: skip
            return self.default_for(config)
        return stored  # type: ignore[no-any-return]


# ----- a server's ------------------------------------------------------------------------------

LANGUAGE = Setting[str]("language", (str,), "en-US", default_from="language")
HEARD_LANGUAGE = Setting[str | None]("heard_language", (str,), None)  # with `auto`: the last
TRANSLATE = Setting[bool]("translate", (bool,), False)
AUTOTRANSCRIBE = Setting[bool]("autotranscribe", (bool,), True)
DATASET = Setting[str]("dataset", (str,), "smalltalk", default_from="default_dataset")
TTS_ENGINE = Setting[str | None]("tts_engine", (str,), None)  # None: TTS_ENGINES' order
TTS_VOICE = Setting[str | None]("tts_voice", (str,), None)  # None: the engine's own
AUTOSPEAK = Setting[bool]("autospeak", (bool,), True)
READ_CHANNELS = Setting[list[int]]("read_channels", (list,), [], check=_ints)
READ_NAMES = Setting[bool]("read_names", (bool,), True)
READ_BOTS = Setting[bool]("read_bots", (bool,), False)
READ_AUTOJOIN = Setting[bool]("read_autojoin", (bool,), False)
LISTEN_ON = Setting[bool]("listen_on", (bool,), False)
LISTEN_VOICE_CHANNEL = Setting[int | None]("listen_voice_channel", (int,), None)
LISTEN_CAPTION_CHANNEL = Setting[int | None]("listen_caption_channel", (int,), None)
LISTEN_WAKE_WORDS = Setting[list[str] | None]("listen_wake_words", (list,), None, check=_texts)
LISTEN_CONVERSATION = Setting[bool]("listen_conversation", (bool,), False)

# ----- a channel's -----------------------------------------------------------------------------

CHAT = Setting[bool]("chat", (bool,), False, scope="channel")

# ----- a person's ------------------------------------------------------------------------------

LISTEN_OPTOUT = Setting[bool | None]("listen_optout", (bool,), None, scope="user")
# A person's reading-aloud choices in one server: the key is READER.key + the server's id.
READER = Setting[dict[str, Any] | None]("reading:", (dict,), None, scope="user")

SETTINGS: tuple[Setting[Any], ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, Setting)
)


class ServerSettings:
    """Typed reads and writes of the settings above (see the module)."""

    def __init__(self, storage: Storage, config: Settings | None = None) -> None:
        self.storage = storage
        self.config = config

    async def get(self, guild_id: int, setting: Setting[T]) -> T:
        _expect(setting, "guild")
        stored = await self.storage.get_guild_setting(guild_id, setting.key)
        return setting.read(stored, self.config)

    async def set(self, guild_id: int, setting: Setting[T], value: T | None) -> None:
        """Store `value` (None: back to the default)."""
        _expect(setting, "guild")
        await self.storage.set_guild_setting(guild_id, setting.key, self._stored(setting, value))

    @overload
    async def many(self, guild_id: int, a: Setting[T], /) -> tuple[T]: ...
    @overload
    async def many(self, guild_id: int, /, *settings: Setting[Any]) -> tuple[Any, ...]: ...
    async def many(self, guild_id: int, /, *settings: Setting[Any]) -> tuple[Any, ...]:
        """Several of a server's settings in one read."""
        stored = await self.storage.guild_settings(guild_id)
        for setting in settings:
            _expect(setting, "guild")
        return tuple(s.read(stored.get(s.key), self.config) for s in settings)

    def default(self, setting: Setting[T]) -> T:
        return setting.default_for(self.config)

    async def channel(self, channel_id: int, setting: Setting[T]) -> T:
        _expect(setting, "channel")
        stored = await self.storage.get_channel_setting(channel_id, setting.key)
        return setting.read(stored, self.config)

    async def set_channel(self, channel_id: int, setting: Setting[T], value: T | None) -> None:
        _expect(setting, "channel")
        stored = self._stored(setting, value)
        await self.storage.set_channel_setting(channel_id, setting.key, stored)

    async def user(self, user_id: int, setting: Setting[T], suffix: str = "") -> T:
        """A person's setting (`suffix`: the server's id, for a choice made per server)."""
        _expect(setting, "user")
        stored = await self.storage.get_user_setting(user_id, setting.key + suffix)
        return setting.read(stored, self.config)

    async def set_user(
        self, user_id: int, setting: Setting[T], value: T | None, suffix: str = ""
    ) -> None:
        _expect(setting, "user")
        stored = self._stored(setting, value)
        await self.storage.set_user_setting(user_id, setting.key + suffix, stored)

    async def users_with(self, setting: Setting[T]) -> dict[int, T]:
        """Every person who has `setting` set (a per-person one, without a suffix)."""
        _expect(setting, "user")
        found = await self.storage.users_with_setting(setting.key)
        return {user: setting.read(value, self.config) for user, value in found.items()}

    async def user_keys(self, user_id: int, setting: Setting[Any]) -> list[str]:
        """The suffixes a person has `setting` under (the servers of a per-server choice)."""
        _expect(setting, "user")
        keys = await self.storage.user_settings(user_id)
        return [k.removeprefix(setting.key) for k in keys if k.startswith(setting.key)]

    def _stored(self, setting: Setting[T], value: T | None) -> Any:
        if value is None:
            return None
        if not setting.accepts(value):
            raise TypeError(f"setting {setting.key} takes {setting.types}, not {value!r}")
        return value


def _expect(setting: Setting[Any], scope: Scope) -> None:
    if setting.scope != scope:
        raise TypeError(f"setting {setting.key} is a {setting.scope} setting, not a {scope} one")
