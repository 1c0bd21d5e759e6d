"""Google Translate's voice through gTTS (online): any language in gTTS's table.

Its requests can go to another base URL (`GTTS_ENDPOINT`: a proxy, or the contract tests'
local server). Speed: normal, or gTTS's slow voice below `SLOW_BELOW`.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.errors import EngineUnavailableError, InvalidInputError
from bot.services.common import languages
from bot.services.voice.clips import SLOW_BELOW, language_parts, new_file, write_file

log = logging.getLogger(__name__)

# Seconds a network engine may wait to connect, and then for each read, before giving up.
GTTS_TIMEOUT_SECONDS = 2.5


@functools.cache
def _gtts_class() -> type:
    """gTTS subclass whose requests can go to another base URL (a proxy or a test server).

    gTTS builds its URL from the tld inside `_prepare_requests`; the subclass keeps that
    method and only re-bases the URLs it prepared, so the request bodies stay gTTS's own.
    """
    from gtts import gTTS

    class EndpointGtts(gTTS):  # type: ignore[misc]
        def __init__(self, *args: Any, endpoint: str | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.endpoint = endpoint

        def _prepare_requests(self) -> list[Any]:
            prepared = super()._prepare_requests()
            if self.endpoint:
                for request in prepared:
                    request.prepare_url(_rebase(request.url, self.endpoint), None)
            return prepared

    return EndpointGtts


def _rebase(url: str, endpoint: str) -> str:
    parts = urlsplit(url)
    rebased = endpoint.rstrip("/") + parts.path
    return f"{rebased}?{parts.query}" if parts.query else rebased


@functools.cache
def _gtts_languages() -> frozenset[str]:
    from gtts.lang import tts_langs  # a table shipped with gTTS; no network

    return frozenset(tts_langs())


def gtts_language(language: str) -> str:
    """The gTTS language for a tag: "en-US" -> "en", "zh-TW" -> "zh-TW", unknown -> "en"."""
    found = _gtts_match(language)
    if found is None:
        log.warning("gTTS does not speak %r; using English", language)
        return "en"
    return found


def _gtts_match(language: str) -> str | None:
    known = _gtts_codes()
    tag, primary = language_parts(language)
    return next((known[c] for c in (tag, primary) if c in known), None)


@functools.cache
def _gtts_codes() -> dict[str, str]:
    """gTTS's codes by their lower-case form and by the standard tag's ("he" for its "iw")."""
    codes = {}
    for code in _gtts_languages():
        codes[code.lower()] = code
        codes.setdefault(languages.standard_form(code).lower(), code)
    return codes


class GttsEngine:
    """Google Translate's voice through gTTS. Needs the network (or `endpoint`)."""

    name = "gtts"
    online = True

    def __init__(
        self,
        tld: str = "com",
        endpoint: str | None = None,
        timeout: float = GTTS_TIMEOUT_SECONDS,
    ) -> None:
        self.tld = tld
        self.endpoint = endpoint
        self.timeout = timeout

    def supports(self, language: str) -> bool:
        return _gtts_match(language) is not None

    def synthesize(
        self, text: str, language: str, voice: str | None, out_dir: Path, speed: float = 1.0
    ) -> Path:
        try:
            from gtts import gTTSError

            tts_class = _gtts_class()
        except ImportError as exc:
            raise EngineUnavailableError("gTTS is not installed") from exc
        tts = tts_class(
            text,
            tld=self.tld,
            lang=gtts_language(language),
            slow=speed < SLOW_BELOW,
            lang_check=False,
            timeout=(self.timeout, self.timeout),
            endpoint=self.endpoint,
        )
        path = new_file(out_dir, ".mp3")
        try:
            write_file(path, tts.save)
        except gTTSError as exc:
            raise EngineUnavailableError(f"gTTS request failed: {exc}") from exc
        except AssertionError as exc:  # gTTS asserts there is something left to say
            raise InvalidInputError("There is nothing to say in that text.") from exc
        return path
