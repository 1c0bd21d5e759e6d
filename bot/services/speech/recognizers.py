"""The speech engines: what one engine is (`SpeechEngine`), Google's and pocketsphinx's, and
`build_engine`, which makes one by its name in `STT_ENGINES` (whisper's lives in `whisper`).

Each engine is a small blocking object; `service.SpeechService` runs them off the event loop.
"""

from __future__ import annotations

import http.client
import socket
from typing import Any, Protocol
from urllib.parse import urlsplit

from bot.errors import EngineUnavailableError
from bot.services.common import languages
from bot.services.common.engines import Heard
from bot.services.speech import audio
from bot.services.speech.whisper import WhisperEngine

SPHINX_LANGUAGE = "en-US"


class SpeechEngine(Protocol):
    """One speech-to-text engine.

    `transcribe` is blocking. It gets a 16 kHz mono 16-bit WAV file (as `audio.to_wav` makes)
    and a language tag such as "en-US", or `auto` when the engine's `supports("auto")`. It
    returns the text ("" when it understood nothing), or a `Heard` that also names the
    language heard, and raises `EngineUnavailableError` when it cannot run or be reached.
    When `holds_gil` is true the service calls `transcribe` in a worker process, so the
    engine must be picklable. Optional: `supports(language) -> bool` (the service skips an
    engine for the languages it can't serve), `online` (it needs the network), `load()`
    (warm-up), `translate(wav, language) -> str` (English from any language).
    """

    name: str
    holds_gil: bool

    def transcribe(self, wav: bytes, language: str) -> str | Heard: ...


def _pcm16(wav: bytes) -> tuple[bytes, int]:
    """(16-bit mono samples, sample rate) of a WAV file."""
    segment = audio.from_wav(wav).set_channels(1).set_sample_width(2)
    return segment.raw_data, segment.frame_rate


class GoogleEngine:
    """SpeechRecognition's `recognize_google` (Google's free v2 speech endpoint).

    Before each request the engine opens a plain TCP connection to the endpoint with
    `connect_timeout`, so an unreachable service is skipped within that time; the request
    itself may then take up to `read_timeout` to answer a long chunk.
    """

    name = "google"
    holds_gil = False
    online = True

    def __init__(
        self,
        api_key: str | None = None,
        endpoint: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
    ) -> None:
        self._api_key = api_key
        self._endpoint = endpoint
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout

    def transcribe(self, wav: bytes, language: str) -> str:
        try:
            import speech_recognition as sr
            from speech_recognition.recognizers import google
        except ImportError as exc:
            raise EngineUnavailableError("SpeechRecognition is not installed") from exc
        endpoint = self._endpoint or google.ENDPOINT
        self._probe(endpoint)
        recognizer = sr.Recognizer()
        recognizer.operation_timeout = self._read_timeout
        pcm, rate = _pcm16(wav)
        try:
            text = recognizer.recognize_google(
                sr.AudioData(pcm, rate, 2), key=self._api_key, language=language, endpoint=endpoint
            )
        except sr.UnknownValueError:
            return ""
        except (sr.RequestError, OSError, http.client.HTTPException, ValueError, KeyError) as exc:
            # OSError covers timeouts while reading; ValueError/KeyError a malformed answer.
            raise EngineUnavailableError(f"google: {type(exc).__name__}: {exc}") from exc
        return str(text).strip()

    def supports(self, language: str) -> bool:
        """Google needs to be told the language: it serves any code but `auto`."""
        return language != languages.AUTO

    def _probe(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname, port), timeout=self._connect_timeout):
                pass
        except OSError as exc:
            raise EngineUnavailableError(f"google endpoint unreachable: {exc}") from exc


class SphinxEngine:
    """pocketsphinx through SpeechRecognition. It holds the GIL, so it runs in a process."""

    name = "sphinx"
    holds_gil = True
    online = False

    def supports(self, language: str) -> bool:
        """pocketsphinx ships American English only; any English is heard with it."""
        return languages.is_english(language)

    def transcribe(self, wav: bytes, language: str) -> str:
        return sphinx_recognize(wav, SPHINX_LANGUAGE)


def sphinx_recognize(wav: bytes, language: str) -> str:
    """Recognize with pocketsphinx; blocking and CPU-bound (a module-level function for pools)."""
    try:
        import speech_recognition as sr
    except ImportError as exc:
        raise EngineUnavailableError("SpeechRecognition is not installed") from exc
    pcm, rate = _pcm16(wav)
    try:
        text = sr.Recognizer().recognize_sphinx(sr.AudioData(pcm, rate, 2), language=language)
    except sr.UnknownValueError:
        return ""
    except sr.RequestError as exc:  # pocketsphinx or its language data missing
        raise EngineUnavailableError(f"sphinx: {exc}") from exc
    return str(text).strip()


def build_engine(
    name: str,
    *,
    google_api_key: str | None = None,
    google_endpoint: str | None = None,
    whisper_model: str | None = None,
    whisper_options: dict[str, Any] | None = None,
) -> SpeechEngine:
    """The engine registered under `name` (google, whisper, sphinx); `whisper_options` are
    WhisperEngine's keyword arguments (the multilingual model, its cache and idle time)."""
    if name == "google":
        return GoogleEngine(google_api_key, google_endpoint)
    if name == "whisper":
        return WhisperEngine(whisper_model, **(whisper_options or {}))
    if name == "sphinx":
        return SphinxEngine()
    raise ValueError(f"unknown speech engine {name!r}")
