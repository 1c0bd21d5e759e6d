"""What goes wrong in speech recognition that the user should hear about, with its message.

These cross processes: a worker reports one by its type's name and `tasks.client.raise_failure`
raises it again in the bot, so this module imports nothing of the speech service.
"""

from __future__ import annotations

from bot.errors import UserFacingError
from bot.services.speech import audio

NO_SPEECH_MESSAGE = "I couldn't hear any words in that audio."
UNAVAILABLE_MESSAGE = "Speech recognition is unavailable right now. Please try again later."


class NoSpeechError(UserFacingError):
    """The audio was silent or no engine understood any words in it."""


class SpeechUnavailableError(UserFacingError):
    """Every speech engine is down or missing."""


class LanguageNotServedError(UserFacingError):
    """No installed speech engine recognizes the language asked for."""


class PartialTranscriptError(UserFacingError):
    """Recognition failed partway: `text` is what was transcribed before `stopped_at`."""

    def __init__(self, text: str, stopped_at: float, total: float) -> None:
        where = f"{audio.format_clock(stopped_at)} of {audio.format_clock(total)}"
        super().__init__(
            f"Speech recognition stopped at {where}: it is unavailable right now. "
            "The text up to there is kept; try the rest again later."
        )
        self.text = text
        self.stopped_at = stopped_at
        self.total = total
