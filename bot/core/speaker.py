"""The bot's voice in every server: joining a channel, the playback queue, speaking a text.

One `Speaker` belongs to the bot (`bot.speaker`); the voice cog's commands and spoken replies,
reading aloud and listening all speak through it, so each server has one queue and one
connection. The queue (`services.voice.player`) knows nothing of Discord; this plays its clips
through discord.py's voice client.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import discord

from bot.config import Settings
from bot.core.voice_client import ListeningVoiceClient
from bot.errors import LimitReachedError, UserFacingError
from bot.services.speech.audio import ffmpeg_exe
from bot.services.tenancy.language import ServerLanguages
from bot.services.tenancy.settings import TTS_ENGINE, TTS_VOICE, ServerSettings
from bot.services.voice.clips import SpokenAudio
from bot.services.voice.player import PlaybackQueue
from bot.services.voice.reading import Mentions
from bot.services.voice.spoken_text import clean_for_speech
from bot.services.voice.synthesis import SynthesisService

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 15.0
MENTION = re.compile(r"<(@!?|@&|#)(\d+)>")


class NotConnected(Exception):
    """The bot has no working voice connection in that server."""


def voice_channel_of(
    user: discord.abc.User,
) -> discord.VoiceChannel | discord.StageChannel | None:
    """The voice channel a member is in, or None."""
    state = getattr(user, "voice", None)
    return state.channel if state is not None else None


def mentions_in(client: discord.Client, guild: discord.Guild, text: str) -> Mentions:
    """Names for the mentions in `text`, so they are spoken as names."""
    users: dict[int, str] = {}
    roles: dict[int, str] = {}
    channels: dict[int, str] = {}
    for kind, raw_id in MENTION.findall(text):
        found_id = int(raw_id)
        if kind == "@&" and (role := guild.get_role(found_id)):
            roles[found_id] = role.name
        elif kind == "#" and (chan := guild.get_channel(found_id)):
            channels[found_id] = chan.name
        elif kind.startswith("@") and kind != "@&":
            user = guild.get_member(found_id) or client.get_user(found_id)
            if user is not None:
                users[found_id] = user.display_name
    return Mentions(users, roles, channels)


class Speaker:
    def __init__(
        self,
        client: discord.Client,
        settings: Settings,
        synthesis: SynthesisService,
        stored: ServerSettings,
        languages: ServerLanguages,
    ) -> None:
        self.client = client
        self.settings = settings
        self.synthesis = synthesis
        self.stored = stored
        self.languages = languages
        self.queue = PlaybackQueue(self._play, on_error=self._playback_failed)
        self._connect_locks: dict[int, asyncio.Lock] = {}

    async def close(self) -> None:
        await self.queue.close()

    def channel(self, guild: discord.Guild) -> discord.VoiceChannel | discord.StageChannel | None:
        """The voice channel the bot is connected to in `guild`, or None."""
        client = guild.voice_client
        if isinstance(client, discord.VoiceClient) and client.is_connected():
            return client.channel
        return None

    async def _play(self, guild_id: int, path: Path) -> None:
        """Play one clip; return when it has finished. Cancelled: stop playing."""
        guild = self.client.get_guild(guild_id)
        client = guild.voice_client if guild else None
        if not isinstance(client, discord.VoiceClient) or not client.is_connected():
            raise NotConnected(f"no voice connection in guild {guild_id}")
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[Exception | None] = loop.create_future()

        def after(error: Exception | None) -> None:
            loop.call_soon_threadsafe(lambda: finished.done() or finished.set_result(error))

        source = discord.FFmpegOpusAudio(
            str(path), executable=ffmpeg_exe(), options="-loglevel error"
        )
        client.play(source, after=after)
        try:
            error = await finished
        except asyncio.CancelledError:
            client.stop()
            raise
        if error is not None:
            raise error

    async def _playback_failed(self, guild_id: int, error: Exception) -> None:
        log.warning("speaking in guild %s failed: %s", guild_id, error)

    async def connect_to(self, channel: discord.VoiceChannel | discord.StageChannel) -> None:
        """Join `channel`, or move there; one attempt at a time per server."""
        lock = self._connect_locks.setdefault(channel.guild.id, asyncio.Lock())
        async with lock:
            client = channel.guild.voice_client
            if isinstance(client, discord.VoiceClient) and client.is_connected():
                if client.channel != channel:
                    await client.move_to(channel)
                return
            if client is not None:
                await client.disconnect(force=True)
            try:
                await channel.connect(
                    timeout=CONNECT_TIMEOUT, self_deaf=True, cls=ListeningVoiceClient
                )
            except (TimeoutError, discord.ClientException) as exc:
                reason = str(exc) or "Discord did not answer (check my Connect permission)"
                raise UserFacingError(f"I couldn't join **{channel.name}**: {reason}") from exc
            self.queue.touch(channel.guild.id)

    async def speak(
        self,
        guild: discord.Guild,
        channel: discord.VoiceChannel | discord.StageChannel,
        text: str,
        *,
        max_queue: int | None = None,
    ) -> bool:
        """Queue `text` for speech in `channel`; False when there is nothing to speak.

        With `max_queue`, raise LimitReachedError rather than queue behind that many items.
        """
        language = await self.languages.speaking(guild.id)
        mentions = mentions_in(self.client, guild, text)
        cleaned = clean_for_speech(
            text,
            prefix=self.settings.command_prefix,
            max_chars=self.settings.max_spoken_chars,
            language=language,
            users=mentions.users,
            roles=mentions.roles,
            channels=mentions.channels,
        )
        if cleaned is None:
            return False
        engine, voice = await self.stored.many(guild.id, TTS_ENGINE, TTS_VOICE)
        await self.connect_to(channel)
        if max_queue is not None:
            self.check_queue_room(guild.id, max_queue)  # no await from here to enqueue
        stream = self.synthesis.synthesize_stream(
            cleaned,
            language,
            voice=voice,
            engine=engine,
        )
        self.queue.enqueue(guild.id, stream)
        return True

    def play(self, guild_id: int, item: AsyncIterator[SpokenAudio]) -> None:
        """Queue a stream of clips made elsewhere (a turn of reading aloud)."""
        self.queue.enqueue(guild_id, item)

    def check_queue_room(self, guild_id: int, max_queue: int) -> None:
        if self.queue.size(guild_id) >= max_queue:
            prefix = self.settings.command_prefix
            raise LimitReachedError(
                f"The voice queue is full ({max_queue} items); try again when it has played, "
                f"or `{prefix}stop` it."
            )
