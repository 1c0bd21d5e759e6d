"""Reading a text channel aloud for the people in voice, as TTS Bot does.

An admin turns reading on for a channel (or a voice channel's own text chat). From then on a
message typed there by someone in the bot's voice channel is spoken, unless it is a command,
starts with the silence prefix `-`, comes from a bot or a webhook (unless allowed), or its
author opted out.

Who said it: "alice said: …" before a new speaker's message, once per run of messages from
the same person (again after `NAME_AGAIN_SECONDS` of quiet), by the server display name or the
nickname set for speech. What is read: the bot's text cleanup (links, emoji, mentions, code
blocks described, spoilers named, long messages cut), and attachments described ("alice sent
an image").

Turns: each server's waiting messages are taken round-robin across authors, so three people
typing at once are heard in turns; one person's backlog holds at most `backlog_max` messages
(older ones dropped and counted: "…and 4 more from alice"). A message is spoken in the voice
and speed its author chose, and edits or deletions of a message not yet spoken update or drop
it. The voice cog queues one `turn()` per message offered; each turn takes the next message
when its time comes, so the queue never speaks stale text.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bot.errors import InvalidInputError
from bot.services.tenancy import settings as declared
from bot.services.tenancy.language import ServerLanguages
from bot.services.tenancy.settings import ServerSettings
from bot.services.voice.clips import MAX_SPEED, MIN_SPEED, SLOW_BELOW, SpokenAudio
from bot.services.voice.spoken_text import cap, clean_for_speech
from bot.services.voice.synthesis import SynthesisService
from bot.services.voice.turns import BACKLOG_MAX, Turn, Turns, Waiting
from bot.services.voice.words import words_for

log = logging.getLogger(__name__)

SILENCE_PREFIX = "-"
MAX_NICKNAME_CHARS = 32
EARLY_CHANGES_KEPT = 50  # per server: edits and deletions of messages not (yet) queued

# `!voice read NAME on|off`: the server's switches.
OPTION_KEYS = {
    "names": declared.READ_NAMES,
    "bots": declared.READ_BOTS,
    "autojoin": declared.READ_AUTOJOIN,
}
ATTACHMENT_KINDS = ("image", "video", "audio", "voice", "file")
_NICKNAME_MARKUP = re.compile(r"[<>@#`*_~|\\]")


@dataclass(frozen=True)
class ReadingSettings:
    """A server's reading aloud: the channels read and its three switches."""

    channels: frozenset[int] = frozenset()
    names: bool = True  # say who wrote a message
    bots: bool = False  # read bots' and webhooks' messages too
    autojoin: bool = False  # join when someone who can be read joins voice


@dataclass(frozen=True)
class Reader:
    """One person's choices in one server."""

    engine: str | None = None
    voice: str | None = None
    speed: float = 1.0
    nickname: str | None = None
    read: bool = True  # False: their messages are never read (opted out)

    @classmethod
    def from_stored(cls, stored: Any) -> Reader:
        if not isinstance(stored, dict):
            return cls()
        speed = stored.get("speed", 1.0)
        return cls(
            engine=_text_or_none(stored.get("engine")),
            voice=_text_or_none(stored.get("voice")),
            speed=min(max(float(speed), MIN_SPEED), MAX_SPEED)
            if isinstance(speed, int | float) and math.isfinite(speed)
            else 1.0,
            nickname=_text_or_none(stored.get("nickname")),
            read=stored.get("read", True) is not False,
        )

    def stored(self) -> dict[str, Any] | None:
        values = {
            "engine": self.engine,
            "voice": self.voice,
            "speed": self.speed if self.speed != 1.0 else None,
            "nickname": self.nickname,
            "read": False if not self.read else None,
        }
        kept = {k: v for k, v in values.items() if v is not None}
        return kept or None


@dataclass(frozen=True)
class Mentions:
    """Names for the mentions in a message, so they are spoken as names."""

    users: Mapping[int, str] = field(default_factory=dict)
    roles: Mapping[int, str] = field(default_factory=dict)
    channels: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Typed:
    """A message as the voice cog saw it, in plain values."""

    id: int
    guild_id: int
    channel_id: int
    author_id: int
    author_name: str  # the server display name
    content: str
    attachments: tuple[str, ...] = ()  # ATTACHMENT_KINDS
    from_bot: bool = False  # a bot or a webhook wrote it
    author_in_voice: bool = True  # in the bot's voice channel
    mentions: Mentions = field(default_factory=Mentions)


class ReadAloud:
    """Which messages are read, in what voice and order; the voice cog plays the turns."""

    def __init__(
        self,
        settings: ServerSettings,
        synthesis: SynthesisService,
        languages: ServerLanguages,
        *,
        prefix: str,
        max_chars: int,
        backlog_max: int = BACKLOG_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stored = settings
        self.synthesis = synthesis
        self.languages = languages
        self.prefix = prefix
        self.max_chars = max_chars
        self.backlog_max = backlog_max
        self._clock = clock
        self._settings: dict[int, ReadingSettings] = {}
        self._turns: dict[int, Turns] = {}
        # Edits and deletions that came before the message was queued (it was still being
        # looked at): applied when it is. A few per server, the newest.
        self._early: dict[int, OrderedDict[int, tuple[str, Mentions] | None]] = {}
        # One change at a time per server: settings and choices are read, changed, written.
        self._changing: dict[int, asyncio.Lock] = {}

    def _lock(self, guild_id: int) -> asyncio.Lock:
        return self._changing.setdefault(guild_id, asyncio.Lock())

    # ----- a server's settings -----------------------------------------------------------------

    async def settings(self, guild_id: int) -> ReadingSettings:
        """The server's reading settings (kept in memory once read)."""
        found = self._settings.get(guild_id)
        if found is None:
            channels, names, bots, autojoin = await self.stored.many(
                guild_id,
                declared.READ_CHANNELS,
                declared.READ_NAMES,
                declared.READ_BOTS,
                declared.READ_AUTOJOIN,
            )
            found = ReadingSettings(frozenset(channels), names, bots, autojoin)
            self._settings[guild_id] = found
        return found

    async def set_channel(self, guild_id: int, channel_id: int, on: bool) -> ReadingSettings:
        async with self._lock(guild_id):
            current = await self.settings(guild_id)
            channels = current.channels | {channel_id} if on else current.channels - {channel_id}
            await self.stored.set(guild_id, declared.READ_CHANNELS, sorted(channels) or None)
            self._settings[guild_id] = replace(current, channels=frozenset(channels))
        if not channels:
            self.clear(guild_id)
        return self._settings[guild_id]

    async def set_option(self, guild_id: int, option: str, on: bool) -> ReadingSettings:
        """Switch `names`, `bots` or `autojoin`."""
        if option not in OPTION_KEYS:
            raise InvalidInputError(f"Unknown reading option `{option}`.")
        async with self._lock(guild_id):
            current = await self.settings(guild_id)
            await self.stored.set(guild_id, OPTION_KEYS[option], on)
            self._settings[guild_id] = replace(current, **{option: on})
            return self._settings[guild_id]

    # ----- a person's choices ------------------------------------------------------------------

    async def reader(self, guild_id: int, user_id: int) -> Reader:
        return Reader.from_stored(await self.stored.user(user_id, declared.READER, str(guild_id)))

    async def _change(self, guild_id: int, user_id: int, **changes: Any) -> Reader:
        """Read, change and store one person's choices (one change at a time per server)."""
        async with self._lock(guild_id):
            reader = replace(await self.reader(guild_id, user_id), **changes)
            await self.stored.set_user(user_id, declared.READER, reader.stored(), str(guild_id))
            return reader

    async def set_speed(self, guild_id: int, user_id: int, value: str) -> Reader:
        try:
            speed = round(float(value.strip().removesuffix("x")), 2)
        except ValueError:
            speed = math.nan
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise InvalidInputError(
                f"The speed is a number from {MIN_SPEED} to {MAX_SPEED} (1 is normal), "
                f"not `{value}`."
            )
        return await self._change(guild_id, user_id, speed=speed)

    async def set_voice(self, guild_id: int, user_id: int, name: str) -> Reader:
        """`default`, an engine's name (its own voice), `engine:voice`, or a voice of an
        engine that speaks the server's language."""
        if name.strip().lower() == "default":
            return await self._change(guild_id, user_id, engine=None, voice=None)
        language = await self.languages.speaking(guild_id)
        engine, voice = await self._find_voice(name.strip(), language)
        return await self._change(guild_id, user_id, engine=engine, voice=voice)

    async def _find_voice(self, name: str, language: str) -> tuple[str, str | None]:
        speaking = [fit.name for fit in self.synthesis.speaking(language)]
        wanted_engine, _, wanted_voice = name.partition(":") if ":" in name else ("", "", name)
        if not wanted_engine and name.lower() in speaking:
            return name.lower(), None
        for engine in speaking:
            if wanted_engine and engine != wanted_engine.lower():
                continue
            if wanted_voice in await self.synthesis.voices(engine, language):
                return engine, wanted_voice
        raise InvalidInputError(
            f"`{name}` is not a voice for `{language}`. Voices for it: "
            f"{await self.synthesis.voices_line(language)}."
        )

    async def set_nickname(self, guild_id: int, user_id: int, value: str | None) -> Reader:
        """The name said before the person's messages; None, `off` or `default` clears it."""
        nickname = None
        if value is not None and value.strip().lower() not in ("", "off", "default", "none"):
            nickname = " ".join(_NICKNAME_MARKUP.sub(" ", value).split())
            if not any(ch.isalnum() for ch in nickname) or len(nickname) > MAX_NICKNAME_CHARS:
                raise InvalidInputError(
                    f"A nickname has letters or digits and at most {MAX_NICKNAME_CHARS} characters."
                )
        return await self._change(guild_id, user_id, nickname=nickname)

    async def set_read(self, guild_id: int, user_id: int, on: bool) -> Reader:
        return await self._change(guild_id, user_id, read=on)

    def speed_note(self, reader: Reader, server_engine: str | None) -> str:
        """What the speed means for the engine that speaks for the person ("" when exact)."""
        engine = reader.engine or server_engine
        if engine == "gtts" and reader.speed != 1.0:
            pace = "slow" if reader.speed < SLOW_BELOW else "normal"
            return f"gtts has two speeds: normal, and slow under {SLOW_BELOW}; this is {pace}."
        return ""

    async def forget(self, user_id: int) -> int:
        """`!forgetme`: delete the person's reading choices in every server; how many."""
        servers = await self.stored.user_keys(user_id, declared.READER)
        for server in servers:
            await self.stored.set_user(user_id, declared.READER, None, server)
        return len(servers)

    # ----- messages ----------------------------------------------------------------------------

    async def should_join(self, guild_id: int, user_id: int) -> bool:
        """Auto-join: the server reads a channel, wants auto-join, and the person is read."""
        settings = await self.settings(guild_id)
        if not settings.channels or not settings.autojoin:
            return False
        return (await self.reader(guild_id, user_id)).read

    async def silent_because(self, typed: Typed) -> str | None:
        """Why `typed` is not read, or None when it is."""
        settings = await self.settings(typed.guild_id)
        if typed.channel_id not in settings.channels:
            return "not a channel read aloud"
        if typed.from_bot and not settings.bots:
            return "from a bot or a webhook"
        if not typed.author_in_voice:
            return "author not in the bot's voice channel"
        content = typed.content.lstrip()
        if content.startswith(self.prefix):
            return "a command"
        if content.startswith(SILENCE_PREFIX):
            return "starts with the silence prefix"
        if not (await self.reader(typed.guild_id, typed.author_id)).read:
            return "the author opted out"
        return None

    async def offer(self, typed: Typed) -> bool:
        """Queue `typed` if it is to be read; True when the caller should queue a `turn()`."""
        if await self.silent_because(typed) is not None:
            return False
        reader = await self.reader(typed.guild_id, typed.author_id)
        language = await self.languages.speaking(typed.guild_id)
        # No await from here on: an edit or a deletion is either early or finds it queued.
        content, mentions = typed.content, typed.mentions
        early = self._early.get(typed.guild_id, {})
        if typed.id in early:  # edited or deleted while it was being looked at
            change = early.pop(typed.id)
            if change is None or change[0].lstrip().startswith((self.prefix, SILENCE_PREFIX)):
                return False
            content, mentions = change
        text = self._clean(language, content, mentions)
        if text is None and not typed.attachments:
            return False
        turns = self._turns.get(typed.guild_id)
        if turns is None:
            turns = self._turns[typed.guild_id] = Turns(self.backlog_max, self._clock)
        name = reader.nickname or typed.author_name
        return turns.add(
            Waiting(
                typed.id,
                typed.author_id,
                name,
                text,
                typed.attachments,
                reader.engine,
                reader.voice,
                reader.speed,
            )
        )

    async def edit(
        self, guild_id: int, message_id: int, content: str, mentions: Mentions | None = None
    ) -> bool:
        """A message not yet spoken was edited: speak its new text (or drop it if nothing
        is left to say). False when it is not waiting."""
        turns = self._turns.get(guild_id)
        waiting = turns.find(message_id) if turns is not None else None
        if turns is None or waiting is None:
            self._remember_early(guild_id, message_id, (content, mentions or Mentions()))
            return False
        if content.lstrip().startswith((self.prefix, SILENCE_PREFIX)):
            return turns.remove(message_id)
        language = await self.languages.speaking(guild_id)
        waiting.text = self._clean(language, content, mentions or Mentions())
        if waiting.text is None and not waiting.attachments:
            turns.remove(message_id)
        return True

    def delete(self, guild_id: int, message_id: int) -> bool:
        """A message not yet spoken was deleted: it never is. False when it is not waiting."""
        turns = self._turns.get(guild_id)
        if turns is not None and turns.remove(message_id):
            return True
        self._remember_early(guild_id, message_id, None)
        return False

    def _remember_early(
        self, guild_id: int, message_id: int, change: tuple[str, Mentions] | None
    ) -> None:
        """An edit (or, None, a deletion) of a message not queued: maybe not queued *yet*."""
        early = self._early.setdefault(guild_id, OrderedDict())
        if early.get(message_id, ()) is None:
            return  # deleted stays deleted
        early[message_id] = change
        early.move_to_end(message_id)
        while len(early) > EARLY_CHANGES_KEPT:
            early.popitem(last=False)

    def waiting(self, guild_id: int) -> int:
        turns = self._turns.get(guild_id)
        return len(turns) if turns is not None else 0

    def clear(self, guild_id: int) -> int:
        """Drop every waiting message (`!stop`, or the bot left voice); how many."""
        turns = self._turns.pop(guild_id, None)
        return turns.clear() if turns is not None else 0

    def _clean(self, language: str, content: str, mentions: Mentions) -> str | None:
        return clean_for_speech(
            content,
            prefix=self.prefix,
            max_chars=self.max_chars,
            users=mentions.users,
            roles=mentions.roles,
            channels=mentions.channels,
            language=language,
            describe_code=True,
        )

    async def turn(self, guild_id: int) -> AsyncIterator[SpokenAudio]:
        """Speak the next message of the server's turns (nothing if none is left)."""
        turns = self._turns.get(guild_id)
        settings = await self.settings(guild_id)
        taken = turns.next(settings.names) if turns is not None else None
        if taken is None:
            return
        language = await self.languages.speaking(guild_id)
        text = self.spoken(taken, language)
        engine, voice = await self.stored.many(guild_id, declared.TTS_ENGINE, declared.TTS_VOICE)
        waiting = taken.waiting
        own = waiting.engine in [fit.name for fit in self.synthesis.speaking(language)]
        stream = self.synthesis.synthesize_stream(
            text,
            language,
            voice=waiting.voice if own else voice,
            engine=waiting.engine if own else engine,
            speed=waiting.speed,
        )
        try:
            async for clip in stream:
                yield clip
        finally:
            await stream.aclose()

    def spoken(self, turn: Turn, language: str) -> str:
        """What is said for a turn: the dropped notice, the name, the text, the attachments."""
        words = words_for(language)
        waiting = turn.waiting
        parts = []
        if turn.dropped:
            parts.append(f"{words.more.format(n=turn.dropped, name=waiting.name)}.")
        if waiting.text is not None:
            said = f"{words.said.format(name=waiting.name)}: " if turn.named else ""
            parts.append(f"{said}{waiting.text}")
        if waiting.attachments:
            kinds = waiting.attachments
            what = getattr(words, kinds[0]) if len(kinds) == 1 else words.files.format(n=len(kinds))
            if turn.named and waiting.text is None:
                parts.append(f"{words.sent.format(name=waiting.name, what=what)}.")
            else:  # after the name and text already said: "An image."
                parts.append(f"{what[:1].upper()}{what[1:]}.")
        return cap(" ".join(parts), self.max_chars * 2, words.cut)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def attachment_kind(filename: str, content_type: str | None, voice_message: bool) -> str:
    """Which of ATTACHMENT_KINDS a file is, for "alice sent an image"."""
    if voice_message:
        return "voice"
    kind = (content_type or "").split("/", 1)[0]
    if kind in ("image", "video", "audio"):
        return kind
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix in ("png", "jpg", "jpeg", "gif", "webp", "bmp"):
        return "image"
    if suffix in ("mp4", "webm", "mov", "mkv"):
        return "video"
    if suffix in ("mp3", "wav", "ogg", "opus", "flac", "m4a"):
        return "audio"
    return "file"
