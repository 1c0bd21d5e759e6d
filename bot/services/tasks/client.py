"""What the bot's services do with a runner: a task's failure raised again as the error it
was, transcription of decoded audio, and training of a dataset."""

from __future__ import annotations

from typing import Any

from bot.errors import InvalidInputError, NotFoundError, TooLargeError, UserFacingError
from bot.services.speech.errors import (
    NoSpeechError,
    PartialTranscriptError,
    SpeechUnavailableError,
)
from bot.services.tasks.base import TaskFailedError, TaskResult

_ERRORS: dict[str, type[UserFacingError]] = {
    "InvalidInputError": InvalidInputError,
    "NotFoundError": NotFoundError,
    "TooLargeError": TooLargeError,
}


def raise_failure(result: TaskResult) -> None:
    """Raise the error a failed task reported, as the type it was where that matters."""
    if result.ok:
        return
    value: dict[str, Any] = result.value
    message = str(value.get("error") or "The task failed.")
    kind = str(value.get("type", ""))
    partial = value.get("partial")
    if kind == "PartialTranscriptError" and isinstance(partial, dict):
        raise PartialTranscriptError(
            str(partial["text"]), float(partial["stopped_at"]), float(partial["total"])
        )
    known = {
        "NoSpeechError": NoSpeechError,
        "SpeechUnavailableError": SpeechUnavailableError,
        **_ERRORS,
    }
    raise known.get(kind, TaskFailedError)(message)
