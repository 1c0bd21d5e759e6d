"""What goes wrong in speech recognition that the user should hear about, with its message.

These cross processes (registered in `bot.errors`): a worker reports one and the bot raises
it again, so this module imports nothing of the speech service.
"""

from __future__ import annotations

from typing import Any

from bot.errors import UserFacingError, crosses_processes
from bot.services.speech import audio

NO_SPEECH_MESSAGE = "I couldn't hear any words in that audio."
UNAVAILABLE_MESSAGE = "Speech recognition is unavailable right now. Please try again later."


@crosses_processes
class NoSpeechError(UserFacingError):
    """The audio was silent or no engine understood any words in it."""


@crosses_processes
class SpeechUnavailableError(UserFacingError):
    """Every speech engine is down or missing."""


@crosses_processes
class LanguageNotServedError(UserFacingError):
    """No installed speech engine recognizes the language asked for."""


@crosses_processes
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

    def details(self) -> dict[str, Any]:
        return {"text": self.text, "stopped_at": self.stopped_at, "total": self.total}

    @classmethod
    def again(cls, message: str, details: dict[str, Any]) -> UserFacingError:
        return cls(str(details["text"]), float(details["stopped_at"]), float(details["total"]))
