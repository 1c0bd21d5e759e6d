"""espeak-ng (offline): robotic but instant, in most languages; Japanese through janome.

A per-call voice is an espeak voice or language name (`en-gb-x-rp`, `fr-fr`, `en-us+f3`);
speed scales its words per minute.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bot.errors import EngineUnavailableError
from bot.services.voice.clips import language_parts, new_file, write_file

log = logging.getLogger(__name__)

ESPEAK_TIMEOUT_SECONDS = 30.0
DEFAULT_WORDS_PER_MINUTE = 175  # espeak-ng's own


class EspeakEngine:
    """espeak-ng (or espeak) through its command line. Robotic, but instant and offline.

    A per-call `voice` is an espeak voice or language name (`en-gb-x-rp`, `fr-fr`, `en-us+f3`).
    """

    name = "espeak"
    online = False

    def __init__(self, executable: str | None = None) -> None:
        self._executable = executable
        self._languages: frozenset[str] | None = None

    def binary(self) -> str:
        names = [self._executable] if self._executable else ["espeak-ng", "espeak"]
        for name in names:
            found = shutil.which(name)
            if found:
                return found
        raise EngineUnavailableError("espeak-ng is not installed")

    def voices(self, language: str | None = None) -> list[str]:
        """espeak's voices (language names), or those that speak `language`."""
        names = self.languages()
        if language is None:
            return sorted(names)
        return sorted(
            name for name in names if language_parts(name)[1] == language_parts(language)[1]
        )

    def languages(self) -> frozenset[str]:
        """Language names of the installed (non-mbrola) voices, lower-case, with the other
        names each voice answers to ("zh" for Mandarin's "cmn")."""
        if self._languages is None:
            listing = self._run([self.binary(), "--voices"], None).stdout.decode(errors="replace")
            names = set()
            for line in listing.splitlines()[1:]:
                columns = line.split()
                if len(columns) >= 5 and not columns[4].startswith("mb/"):
                    names.add(columns[1].lower())
                    names.update(m.lower() for m in _OTHER_NAME.findall(" ".join(columns[5:])))
            self._languages = frozenset(names)
        return self._languages

    def supports(self, language: str) -> bool:
        try:
            return self._language_voice(language) is not None
        except EngineUnavailableError:
            return False

    def _language_voice(self, language: str) -> str | None:
        known = self.languages()
        tag, primary = language_parts(language)
        if primary in UNREADABLE or (primary == "ja" and not _installed("janome")):
            return None
        if tag in known:
            return tag
        if any(name == primary or name.startswith(primary + "-") for name in known):
            return primary
        return None

    def voice_for(self, language: str, voice: str | None) -> str:
        known = self.languages()
        if voice:
            base = voice.lower().split("+", 1)[0]
            same = language_parts(base)[1] == language_parts(language)[1]
            if base in known and same and re.fullmatch(r"[a-z0-9-]+(\+[a-z0-9]+)?", voice.lower()):
                return voice.lower()
            log.warning(
                "espeak voice %r not found for %s; using the language's voice", voice, language
            )
        found = self._language_voice(language)
        if found is None:
            raise EngineUnavailableError(f"espeak does not speak {language}")
        return found

    def synthesize(
        self, text: str, language: str, voice: str | None, out_dir: Path, speed: float = 1.0
    ) -> Path:
        command = [self.binary(), "-b", "1", "-v", self.voice_for(language, voice)]
        if speed != 1.0:
            command += ["-s", str(round(DEFAULT_WORDS_PER_MINUTE * speed))]
        if language_parts(language)[1] == "ja":
            text = japanese_reading(text)
        path = new_file(out_dir, ".wav")
        # Text goes on stdin so that a message starting with "-" is never read as an option.
        write_file(path, lambda p: self._run([*command, "-w", str(p), "--stdin"], text))
        return path

    def _run(self, command: list[str], text: str | None) -> subprocess.CompletedProcess[bytes]:
        try:
            done = subprocess.run(
                command,
                input=text.encode("utf-8") if text is not None else None,
                capture_output=True,
                timeout=ESPEAK_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EngineUnavailableError(f"espeak did not run: {exc}") from exc
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip()[:200]
            raise EngineUnavailableError(f"espeak failed (exit {done.returncode}): {reason}")
        return done


# Languages whose script espeak-ng can't read with Debian's espeak-ng-data: its Mandarin and
# Cantonese dictionaries are the small ones, which read Chinese characters as English digits
# (whisper base heard none of it back). Chinese is spoken by gtts (online) or not at all.
UNREADABLE = frozenset({"zh", "cmn", "yue"})


@functools.cache
def _japanese_tokenizer() -> Any:
    from janome.tokenizer import Tokenizer

    return Tokenizer()


def japanese_reading(text: str) -> str:
    """Japanese with its kanji replaced by their reading in katakana (janome), which
    espeak-ng's Japanese voice reads; espeak says "Chinese letter" for a kanji."""
    return "".join(
        token.reading if token.reading not in ("*", "") else token.surface
        for token in _japanese_tokenizer().tokenize(text)
    )


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


_OTHER_NAME = re.compile(r"\(([a-z]{2,3}(?:-[a-z0-9]+)*) \d+\)")
