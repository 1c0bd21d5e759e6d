"""What a transcription is asked with and what it answers: `Hearing` (the language, its
fallback, translation), `AudioSource` (audio by reference), `Progress` and `Transcript`.

Plain values that cross processes as payloads; the service, the task bodies and the servers'
languages share them without importing the service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    """How far a transcription has come: the text so far and the seconds of audio done."""

    text: str
    done_seconds: float
    total_seconds: float


@dataclass(frozen=True)
class Transcript:
    text: str
    engine: str  # the engine that answered; "google, whisper" if chunks needed both
    first_choice: bool  # False when a fallback engine answered (the reply should say which)
    duration_seconds: float
    chunks: int
    # The language the words were recognized in: the server's code, or with `auto` the
    # code whisper detected ("fr"); None when no engine said.
    language: str | None = None
    # With translation asked for and speech not in English: the English translation.
    translation: str | None = None


@dataclass(frozen=True)
class Hearing:
    """How to recognize one recording: the server's language (a code or `auto`), the
    language to fall back on when detection can't tell, and whether to translate."""

    language: str = "en-US"
    fallback: str = "en-US"
    translate: bool = False

    def payload(self) -> dict[str, Any]:
        return {"language": self.language, "fallback": self.fallback, "translate": self.translate}

    @classmethod
    def of(cls, payload: dict[str, Any]) -> Hearing:
        language = str(payload.get("language", "en-US"))
        return cls(language, str(payload.get("fallback", language)), bool(payload.get("translate")))


@dataclass(frozen=True)
class AudioSource:
    """Audio not yet downloaded: where it is (an attachment's URL) and its file name. The
    process that runs the `transcribe` task downloads it (the bot, or a worker)."""

    url: str
    filename: str


LengthFn = Callable[[float], Awaitable[None]]
