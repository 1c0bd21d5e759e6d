"""Reading aloud: messages typed in a channel read for the people in the bot's voice channel.

This cog only listens: a new message is offered to the reading service (which decides if and
how it is read) and a turn is queued on the bot's speaker; an edit or a deletion of a message
not yet spoken updates or drops it; when someone who can be read joins voice and the server
wants it, the bot joins. The settings are `!voice read`, `!voice me` and `!voice nickname`
(the voice cog).
"""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.core.bot import VoiceChatBot
from bot.core.speaker import mentions_in, voice_channel_of
from bot.services.voice.reading import ReadAloud, Typed, attachment_kind

log = logging.getLogger(__name__)


class Reading(commands.Cog):
    def __init__(self, bot: VoiceChatBot, reading: ReadAloud) -> None:
        self.bot = bot
        self.reading = reading
        self.speaker = bot.speaker

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        guild = message.guild
        if guild is None or message.author == self.bot.user:
            return
        if message.channel.id not in (await self.reading.settings(guild.id)).channels:
            return
        here = self.speaker.channel(guild)
        typed = Typed(
            id=message.id,
            guild_id=guild.id,
            channel_id=message.channel.id,
            author_id=message.author.id,
            author_name=message.author.display_name,
            content=message.content,
            attachments=tuple(
                attachment_kind(a.filename, a.content_type, message.flags.voice)
                for a in message.attachments
            ),
            from_bot=message.author.bot or message.webhook_id is not None,
            author_in_voice=here is not None and voice_channel_of(message.author) == here,
            mentions=mentions_in(self.bot, guild, message.content),
        )
        if await self.reading.offer(typed):
            self.speaker.play(guild.id, self.reading.turn(guild.id))

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        guild = self.bot.get_guild(payload.guild_id) if payload.guild_id else None
        content = payload.data.get("content")
        if guild is None or not isinstance(content, str):
            return
        if payload.channel_id in (await self.reading.settings(guild.id)).channels:
            mentions = mentions_in(self.bot, guild, content)
            await self.reading.edit(guild.id, payload.message_id, content, mentions)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        if await self._read_here(payload.guild_id, payload.channel_id):
            self.reading.delete(payload.guild_id, payload.message_id)  # type: ignore[arg-type]

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        if await self._read_here(payload.guild_id, payload.channel_id):
            for message_id in payload.message_ids:
                self.reading.delete(payload.guild_id, message_id)  # type: ignore[arg-type]

    async def _read_here(self, guild_id: int | None, channel_id: int) -> bool:
        if guild_id is None:
            return False
        return channel_id in (await self.reading.settings(guild_id)).channels

    @commands.Cog.listener()
    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        """Auto-join: someone who can be read joins voice while the bot is in none."""
        joined = after.channel
        if member.bot or joined is None or joined == before.channel:
            return
        guild = member.guild
        if self.speaker.channel(guild) is not None or guild.voice_client is not None:
            return
        if not await self.reading.should_join(guild.id, member.id):
            return
        try:
            await self.speaker.connect_to(joined)
            log.info("joined voice in guild %s to read aloud", guild.id)
        except Exception:  # noqa: BLE001 - nobody asked; the log says why
            log.warning("auto-join in guild %s failed", guild.id, exc_info=True)


async def setup(bot: VoiceChatBot) -> None:
    await bot.add_cog(Reading(bot, bot.services.reading))
