"""What listening remembers: each server's settings and each user's consent.

A server's settings are guild settings (`listen_*` keys). A user's opt-out holds in every
server, so it is a user setting (`listen_optout`). Audio is never stored anywhere; only the
caption text the bot posts stays, in the caption channel.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import InvalidInputError
from bot.services.hearing.listening.wakewords import MAX_WAKE_WORDS, check_wake_phrase
from bot.services.tenancy import settings as declared
from bot.services.tenancy.settings import ServerSettings

# The settings listening keeps (declared with every other in tenancy/settings.py).
ON = declared.LISTEN_ON
VOICE_CHANNEL = declared.LISTEN_VOICE_CHANNEL
CAPTION_CHANNEL = declared.LISTEN_CAPTION_CHANNEL
WAKE_WORDS = declared.LISTEN_WAKE_WORDS
CONVERSATION = declared.LISTEN_CONVERSATION
OPT_OUT = declared.LISTEN_OPTOUT
DEFAULT_WAKE_WORDS = ("hey bot",)


@dataclass(frozen=True)
class ListenSettings:
    on: bool = False
    voice_channel_id: int | None = None  # where listening runs (and resumes after a restart)
    caption_channel_id: int | None = None
    wake_words: tuple[str, ...] = DEFAULT_WAKE_WORDS  # the bot's own name is always one too
    conversation: bool = False  # answer every utterance, not only those with a wake word


async def load_settings(settings: ServerSettings, guild_id: int) -> ListenSettings:
    on, voice, captions, words, conversation = await settings.many(
        guild_id, ON, VOICE_CHANNEL, CAPTION_CHANNEL, WAKE_WORDS, CONVERSATION
    )
    return ListenSettings(
        on=on,
        voice_channel_id=voice,
        caption_channel_id=captions,
        wake_words=tuple(words) if words is not None else DEFAULT_WAKE_WORDS,
        conversation=conversation,
    )


def parse_wake_words(text: str) -> list[str]:
    """Wake phrases from a command: comma-separated (`hey bot, ok computer`); each checked."""
    phrases: list[str] = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            phrase = check_wake_phrase(part)
        except ValueError as exc:
            raise InvalidInputError(f"`{part.strip()[:60]}`: {exc}") from exc
        if phrase not in phrases:
            phrases.append(phrase)
    if not phrases:
        raise InvalidInputError("Give one or more wake words, separated by commas.")
    return phrases


def check_wake_count(words: list[str]) -> None:
    if len(words) > MAX_WAKE_WORDS:
        raise InvalidInputError(
            f"That makes {len(words)} wake words; the limit is {MAX_WAKE_WORDS}. Remove some first."
        )
