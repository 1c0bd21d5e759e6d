"""What a message is, decided in one place so no message is handled twice.

Commands go to discord.py's command processing; audio to the transcribe cog; text to the
model cog's chat. Each listener returns early unless `kind_of` names its kind.
"""

from __future__ import annotations

import enum

import discord
from discord import app_commands

from bot.errors import InvalidInputError
from bot.services.common.text import split_message
from bot.services.speech.audio import is_audio_attachment

# The `/` choices of commands that take on/off (`!` also takes yes/no, true/false).
ON_OFF = [app_commands.Choice(name="on", value="on"), app_commands.Choice(name="off", value="off")]


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


async def send_chunks(destination: discord.abc.Messageable, text: str) -> None:
    """Send text of any length as messages within Discord's limit."""
    for chunk in split_message(text):
        await destination.send(chunk)
