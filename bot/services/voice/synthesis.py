"""Text to speech: engines behind one interface, ordered fallback, sentence-by-sentence streaming.

The engines live beside this module (gtts, piper, espeak); each is blocking and this service
runs it in a thread. Engines that are not installed or cannot be reached raise
`EngineUnavailableError` quickly (within 3 s), and the shared `EngineChain` skips them and
rests them for a while.

Files the service returns belong to the caller (the playback queue deletes them after playing).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import wave
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import EngineUnavailableError, InvalidInputError
from bot.memory import engine_call
from bot.services.common import languages
from bot.services.common.engines import EngineChain, NoEngineForLanguageError
from bot.services.common.languages import EngineFit
from bot.services.speech.audio import audio_duration
from bot.services.voice.clips import (
    FILE_PREFIX,
    LanguageNotSpokenError,
    SpokenAudio,
    SynthesisEngine,
    remove_file,
)
from bot.services.voice.espeak import EspeakEngine, japanese_reading
from bot.services.voice.gtts import GTTS_TIMEOUT_SECONDS, GttsEngine, gtts_language
from bot.services.voice.piper import PiperEngine
from bot.services.voice.sentences import speakable, split_sentences, stream_pieces

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

ENGINE_NAMES = ("gtts", "piper", "espeak")
# Sentences synthesised ahead of the one being consumed by `synthesize_stream`.
STREAM_PREFETCH = 2
DEFAULT_ENGINE_REST_SECONDS = 60.0


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

    async def voices_line(self, language: str) -> str:
        """ "piper: en_US-joe-medium; espeak: en-gb, en-us, …; gtts (online)"."""
        parts = []
        for fit in self.speaking(language):
            voices = await self.voices(fit.name, language)
            shown = ", ".join(voices[:12]) + (", …" if len(voices) > 12 else "")
            online = " (online)" if fit.online else ""
            parts.append(f"{fit.name}{online}: {shown}" if shown else f"{fit.name}{online}")
        return "; ".join(parts) or "none installed"

    def speaking(self, language: str) -> list[EngineFit]:
        """The installed engines that can speak `language`, in order (for `!language`)."""
        return [
            EngineFit(name, bool(getattr(engine, "online", False)))
            for name, engine in self._chain.serving(language)
        ]

    async def synthesize(
        self,
        text: str,
        language: str,
        voice: str | None = None,
        engine: str | None = None,
        speed: float = 1.0,
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
            return await _in_thread(self._synthesize_with, candidate, text, language, voice, speed)

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
        self,
        engine: SynthesisEngine,
        text: str,
        language: str,
        voice: str | None,
        speed: float = 1.0,
    ) -> SpokenAudio:
        path = engine_call(engine.synthesize, text, language, voice, self.tmp_dir, speed)
        try:
            duration = audio_duration(path)
        except (OSError, ValueError, EOFError, wave.Error, subprocess.TimeoutExpired) as exc:
            remove_file(path)
            raise EngineUnavailableError(f"{engine.name} made audio that cannot be read") from exc
        return SpokenAudio(path=path, engine=engine.name, duration_seconds=duration)

    async def synthesize_stream(
        self,
        text: str,
        language: str,
        voice: str | None = None,
        engine: str | None = None,
        speed: float = 1.0,
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
        producer = asyncio.create_task(
            self._produce(sentences, language, voice, engine, speed, ready)
        )
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
        speed: float,
        ready: asyncio.Queue[SpokenAudio | BaseException | None],
    ) -> None:
        try:
            for sentence in sentences:
                audio = await self.synthesize(sentence, language, voice, engine, speed)
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
    "GTTS_TIMEOUT_SECONDS",
    "EspeakEngine",
    "GttsEngine",
    "LanguageNotSpokenError",
    "PiperEngine",
    "SpokenAudio",
    "SynthesisEngine",
    "SynthesisService",
    "audio_duration",
    "build_engine",
    "gtts_language",
    "japanese_reading",
    "remove_file",
    "split_sentences",
    "stream_pieces",
]
