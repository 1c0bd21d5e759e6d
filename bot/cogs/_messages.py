"""What a message is, decided in one place so no message is handled twice.

Commands go to discord.py's command processing; audio to the transcribe cog; text to the
model cog's chat. Each listener returns early unless `kind_of` names its kind.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import discord
from discord.ext import commands

from bot.errors import InvalidInputError
from bot.services.audio import is_audio_attachment
from bot.services.text import split_message


class Kind(enum.Enum):
    IGNORE = "ignore"
    COMMAND = "command"
    AUDIO = "audio"
    CHAT = "chat"


def audio_attachments(message: discord.Message) -> list[discord.Attachment]:
    """Audio files, videos with sound, and Discord voice messages attached to `message`."""
    if message.flags.voice:
        return list(message.attachments[:1])
    return [a for a in message.attachments if is_audio_attachment(a.filename, a.content_type)]


def kind_of(message: discord.Message, prefix: str) -> Kind:
    if message.author.bot or message.webhook_id is not None:
        return Kind.IGNORE
    if message.content.startswith(prefix):
        return Kind.COMMAND
    if audio_attachments(message):
        return Kind.AUDIO
    if message.content.strip():
        return Kind.CHAT
    return Kind.IGNORE


def parse_on_off(value: str) -> bool:
    """`on`/`off` (and yes/no, true/false) from a command argument."""
    lowered = value.lower()
    if lowered in ("on", "yes", "true", "enable"):
        return True
    if lowered in ("off", "no", "false", "disable"):
        return False
    raise InvalidInputError(f"Say `on` or `off`, not `{value}`.")


def setting_cooldown(
    setting: str,
) -> Callable[[commands.Context[Any]], commands.Cooldown | None]:
    """A per-user cooldown whose length is the named setting (0 turns it off)."""

    def cooldown(ctx: commands.Context[Any]) -> commands.Cooldown | None:
        seconds = getattr(ctx.bot.settings, setting)
        return commands.Cooldown(1, seconds) if seconds > 0 else None

    return cooldown


async def send_chunks(destination: discord.abc.Messageable, text: str) -> None:
    """Send text of any length as messages within Discord's limit."""
    for chunk in split_message(text):
        await destination.send(chunk)


class UserCooldown:
    """A per-user cooldown for work started by a listener rather than a command."""

    def __init__(self, seconds: float) -> None:
        self._mapping = commands.CooldownMapping.from_cooldown(1, seconds, commands.BucketType.user)
        self.seconds = seconds

    def retry_after(self, message: discord.Message) -> float:
        """0 when the user may go ahead (and the use is counted), else seconds to wait."""
        if self.seconds <= 0:
            return 0.0
        bucket = self._mapping.get_bucket(message)
        return (bucket.update_rate_limit() if bucket else None) or 0.0

    def reset(self, message: discord.Message) -> None:
        """Give back the use counted by `retry_after` (the work was refused)."""
        bucket = self._mapping.get_bucket(message)
        if bucket is not None:
            bucket.reset()
