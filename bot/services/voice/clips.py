"""What every voice engine shares: the clip it returns, its interface, and its files.

An engine turns text into an audio file (WAV or MP3) in a folder and returns its path. It is
blocking; `SynthesisService` runs it in a thread. Files belong to whoever receives them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.errors import UserFacingError

log = logging.getLogger(__name__)

FILE_PREFIX = "tts-"
# The speeds a voice may be asked for (1.0: the voice's own); engines that can't vary
# their speed smoothly round it (gtts: normal, or slow under SLOW_BELOW).
MIN_SPEED = 0.5
MAX_SPEED = 2.0
SLOW_BELOW = 0.8


class LanguageNotSpokenError(UserFacingError):
    """No installed voice speaks the language asked for."""


@dataclass(frozen=True)
class SpokenAudio:
    """A synthesised clip. The file is the receiver's to delete."""

    path: Path
    engine: str
    duration_seconds: float


class SynthesisEngine(Protocol):
    name: str

    def synthesize(
        self, text: str, language: str, voice: str | None, out_dir: Path, speed: float = 1.0
    ) -> Path:
        """Write `text` spoken in `language` to a new WAV or MP3 file in `out_dir`. Blocking.

        `speed` (MIN_SPEED..MAX_SPEED, 1.0 the voice's own) as the engine supports it.
        Raises EngineUnavailableError (within 3 s) when the engine is not installed or
        cannot be reached. An unknown language or voice falls back to the engine's default.
        """
        ...


def new_file(out_dir: Path, suffix: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=FILE_PREFIX, suffix=suffix, dir=out_dir)
    os.close(fd)
    return Path(name)


def remove_file(path: Path) -> None:
    """Delete a temporary audio file; a failure is logged, never raised."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove temporary audio %s: %s", path.name, exc)


def language_parts(language: str) -> tuple[str, str]:
    """("en-us", "en") from "en_US"."""
    tag = language.strip().replace("_", "-").lower()
    return tag, tag.split("-", 1)[0]


def write_file(path: Path, produce: Callable[[Path], None]) -> None:
    """Run `produce(path)`; delete the file if it fails."""
    try:
        produce(path)
    except BaseException:
        remove_file(path)
        raise
