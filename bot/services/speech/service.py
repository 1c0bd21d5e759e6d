"""Speech to text: audio bytes in, a transcript out, through an ordered chain of engines.

    service = SpeechService.from_settings(settings)
    service.check_size(attachment.size)            # before downloading
    transcript = await service.transcribe(data, attachment.filename, language)
    # or in two steps, to learn the length before recognizing:
    segment = await service.decode(data, attachment.filename)
    transcript = await service.recognize(segment, language)
    await service.close()

`transcribe` decodes the input with ffmpeg, cuts it at pauses into chunks of at most 50 s,
and sends the chunks in order through the engines named in `STT_ENGINES`. An engine that
cannot run is skipped and rested by `EngineChain`. Every problem the user can fix or should
know about is raised as a `UserFacingError` with a message ready to show.

Engines are small blocking objects (`recognizers.SpeechEngine`). The service runs them off
the event loop: in a thread when they release the GIL (network waits, faster-whisper), in a
worker process when they hold it (pocketsphinx). The errors it raises are in `errors`.

This is the process that recognizes: the bot's `transcribe` task body (tasks/work.py) calls
it, in the bot or on a worker. The bot's cogs call `transcriber.Transcriber`, which sends
that task to the runner.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from bot import metrics
from bot.errors import EngineUnavailableError, InvalidInputError, TooLargeError, UserFacingError
from bot.memory import engine_call
from bot.services.common import languages
from bot.services.common.engines import (
    AllEnginesFailedError,
    EngineChain,
    EngineResult,
    Heard,
    NoEngineForLanguageError,
    text_of,
)
from bot.services.common.languages import EngineFit
from bot.services.speech import audio
from bot.services.speech.errors import (
    NO_SPEECH_MESSAGE,
    UNAVAILABLE_MESSAGE,
    LanguageNotServedError,
    NoSpeechError,
    PartialTranscriptError,
    SpeechUnavailableError,
)
from bot.services.speech.recognizers import SpeechEngine, build_engine
from bot.services.speech.transcript import Hearing, Progress, Transcript
from bot.services.tasks.jobs import JobRunner

if TYPE_CHECKING:
    from pydub import AudioSegment

    from bot.config import Settings

log = logging.getLogger(__name__)

MB = 1024 * 1024

# `auto`: audio shorter than this is not worth a detection (too little to tell); and a
# detection less sure than this is not trusted. Both fall back to the server's last language.
MIN_DETECT_SECONDS = 1.5
MIN_DETECT_PROBABILITY = 0.5


class SpeechService:
    """Turns uploaded audio into text with the configured engines."""

    def __init__(
        self,
        engines: Sequence[str | SpeechEngine] | EngineChain[SpeechEngine],
        *,
        google_api_key: str | None = None,
        google_endpoint: str | None = None,
        whisper_model: str | None = None,
        whisper_options: dict[str, Any] | None = None,
        max_bytes: int = 25 * MB,
        max_seconds: int = 900,
        chunk_seconds: int = 50,
        rest_seconds: float = 60.0,
        jobs: JobRunner | None = None,
    ) -> None:
        if isinstance(engines, EngineChain):
            self._chain = engines
        else:
            built = [
                build_engine(
                    e,
                    google_api_key=google_api_key,
                    google_endpoint=google_endpoint,
                    whisper_model=whisper_model,
                    whisper_options=whisper_options,
                )
                if isinstance(e, str)
                else e
                for e in engines
            ]
            self._chain = EngineChain([(e.name, e) for e in built], rest_seconds=rest_seconds)
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.chunk_seconds = chunk_seconds
        # Engines that hold the GIL (sphinx) run in the job runner's worker processes.
        self._jobs = jobs or JobRunner(max_workers=1)
        self._owns_jobs = jobs is None

    @classmethod
    def from_settings(cls, settings: Settings, jobs: JobRunner | None = None) -> SpeechService:
        return cls(
            list(settings.stt_engines),
            google_api_key=settings.google_speech_api_key,
            google_endpoint=settings.google_stt_endpoint,
            whisper_model=settings.whisper_model,
            whisper_options={
                "multilingual_model": settings.whisper_multilingual_model,
                "cache_dir": settings.data_dir / "cache" / "models",
                "unload_seconds": settings.whisper_unload_seconds,
                "warm_language": settings.language,
            },
            max_bytes=settings.max_audio_mb * MB,
            max_seconds=settings.max_audio_seconds,
            jobs=jobs,
        )

    @property
    def engines(self) -> list[str]:
        return self._chain.names

    def engine(self, name: str) -> SpeechEngine | None:
        return self._chain.get(name)

    def hearing(self, language: str) -> list[EngineFit]:
        """The installed engines that can recognize `language`, in order (for `!language`)."""
        return [
            EngineFit(name, bool(getattr(engine, "online", False)))
            for name, engine in self._chain.serving(language)
        ]

    def check_size(self, declared_bytes: int) -> None:
        """Refuse an empty or over-large file before it is downloaded."""
        if declared_bytes <= 0:
            raise InvalidInputError("That file is empty.")
        if declared_bytes > self.max_bytes:
            size = math.ceil(declared_bytes / MB * 10) / 10
            limit = f"{self.max_bytes / MB:g}"
            raise TooLargeError(f"That file is too large ({size:.1f} MB; the limit is {limit} MB).")

    async def warm_up(self) -> str | None:
        """Load the engine named first (if it has a model, like whisper) before any request
        (the runner calls it in the process that recognizes)."""
        return await self._chain.warm_up()

    async def transcribe(
        self, data: bytes, filename: str = "", language: str | Hearing = "en-US"
    ) -> Transcript:
        """Transcribe an uploaded file. Raises UserFacingError subclasses for every bad input."""
        return await self.recognize(await self.decode(data, filename), language)

    async def decode(self, data: bytes, filename: str = "") -> AudioSegment:
        """Decode an uploaded file; the first step of `transcribe`.

        The result's `duration_seconds` is the real length, known before any engine runs, so
        a caller can charge it (or refuse) before the costly part.
        """
        self.check_size(len(data))
        return await asyncio.to_thread(audio.decode, data, filename, self.max_seconds)

    async def decoded(self, wav: bytes) -> AudioSegment:
        """Audio the bot decoded already (its WAV, `audio.to_wav`): read back without ffmpeg."""
        self.check_size(len(wav))
        return await asyncio.to_thread(audio.from_wav, wav)

    async def recognize(
        self,
        segment: AudioSegment,
        language: str | Hearing = "en-US",
        on_progress: Callable[[Progress], Awaitable[None]] | None = None,
    ) -> Transcript:
        """Recognize decoded audio chunk by chunk; the second step of `transcribe`.

        `language` is a code, `auto`, or a `Hearing` (with the fallback and translation).
        With `auto` the first chunk with words decides the language for the rest.
        `on_progress` is awaited after each chunk with the text so far, so a caller can show
        a long transcript as it grows. When recognition fails after some text was made, the
        error is a `PartialTranscriptError` that keeps that text and where it stopped.
        The recording is counted here (`metrics.TRANSCRIPTIONS`): where it is recognized.
        """
        hearing = _hearing(language)
        started = time.perf_counter()
        answered: list[str] = []
        try:
            transcript = await self._recognize_here(
                segment, hearing, on_progress, answered, started
            )
        except NoSpeechError:
            _count_recognition(hearing.language, answered, metrics.NO_SPEECH, segment)
            raise
        except (SpeechUnavailableError, LanguageNotServedError, PartialTranscriptError):
            _count_recognition(hearing.language, answered, metrics.UNAVAILABLE)
            raise
        except UserFacingError:  # the caller stopped it (a refusal in on_progress): no count
            raise
        except Exception:
            _count_recognition(hearing.language, answered, metrics.FAILED)
            raise
        language_label = transcript.language if hearing.language == languages.AUTO else None
        _count_recognition(language_label or hearing.language, answered, metrics.OK, segment)
        seconds = time.perf_counter() - started
        engine = answered[0] if answered else "none"
        metrics.RECOGNITION_SECONDS.labels(engine).observe(seconds)
        if segment.duration_seconds > 0:
            metrics.RECOGNITION_RTF.labels(engine).observe(seconds / segment.duration_seconds)
        return transcript

    async def _recognize_here(
        self,
        segment: AudioSegment,
        hearing: Hearing,
        on_progress: Callable[[Progress], Awaitable[None]] | None,
        answered: list[str],
        started: float,
    ) -> Transcript:
        """`recognize` in this process; `answered` gets the engines that answered, in order."""
        bounds = await asyncio.to_thread(
            audio.chunk_bounds, segment, self.chunk_seconds, audio.FIRST_PIECE_SECONDS
        )
        total = segment.duration_seconds
        texts: list[str] = []
        translations: list[str] = []
        first_choice = True
        heard: str | None = None if hearing.language == languages.AUTO else hearing.language
        for start, end in bounds:
            prefer = answered[-1] if answered else None
            piece = audio.cut(segment, start, end)
            try:
                result = None
                if (wav := await self._voiced_wav(piece)) is not None:
                    result = await self._transcribe_piece(
                        wav, piece, heard, hearing.fallback, prefer
                    )
                    if result.value.text and hearing.translate:
                        translations.append(await self._translate(wav, result.value.language))
            except SpeechUnavailableError as exc:
                if not texts:
                    raise
                raise PartialTranscriptError(" ".join(texts), start / 1000, total) from exc
            if result is not None:
                if result.engine not in answered:
                    answered.append(result.engine)
                first_choice = first_choice and result.engine == self._chain.names[0]
                if result.value.text:
                    heard = heard or result.value.language
                    if on_progress is not None and not texts:
                        metrics.FIRST_TEXT_SECONDS.observe(time.perf_counter() - started)
                    texts.append(self._in_script(result.value.text, hearing, heard))
            if on_progress is not None:
                await on_progress(Progress(" ".join(texts), end / 1000, total))
        if not texts:
            raise NoSpeechError(NO_SPEECH_MESSAGE)
        translation = " ".join(t for t in translations if t) or None
        return Transcript(
            text=" ".join(texts),
            engine=", ".join(answered),
            first_choice=first_choice,
            duration_seconds=segment.duration_seconds,
            chunks=len(bounds),
            language=heard,
            translation=None if heard is None or languages.is_english(heard) else translation,
        )

    @staticmethod
    def _in_script(text: str, hearing: Hearing, heard: str | None) -> str:
        """Chinese in the script the server asked for (simplified unless it says otherwise)."""
        for tag in (hearing.language, hearing.fallback):
            if languages.chinese_script(tag):
                return languages.in_script(text, tag)
        if heard is not None and languages.chinese_script(heard):
            return languages.in_script(text, "zh")
        return text

    async def _transcribe_piece(
        self,
        wav: bytes,
        piece: AudioSegment,
        language: str | None,
        fallback: str,
        prefer: str | None,
    ) -> EngineResult[Heard]:
        """One voiced chunk (`wav` of `piece`) through the chain.

        `language` None means "detect": whisper detects it, unless the chunk is too short to
        tell or the detection is unsure; then the chunk is heard in `fallback`.
        """
        if language is None and piece.duration_seconds < MIN_DETECT_SECONDS:
            log.info(
                "audio of %.1f s is too short to detect its language: using %s",
                piece.duration_seconds,
                fallback,
            )
            language = fallback
        result = await self._run_chain(wav, language or languages.AUTO, prefer)
        heard = result.value
        if language is None and (heard.probability or 0.0) < MIN_DETECT_PROBABILITY:
            log.info(
                "language detection unsure (%s at %.2f): hearing it in %s",
                heard.language,
                heard.probability or 0.0,
                fallback,
            )
            result = await self._run_chain(wav, fallback, prefer)
        return result

    async def _run_chain(
        self, wav: bytes, language: str, prefer: str | None
    ) -> EngineResult[Heard]:
        async def call(engine: SpeechEngine) -> Heard:
            return await self._run_engine(engine, wav, language)

        try:
            # Keep every chunk on the engine that answered the previous one.
            return await self._chain.run(call, prefer=prefer, language=language)
        except NoEngineForLanguageError as exc:
            raise LanguageNotServedError(
                f"I can't recognize speech in {languages.english_name(language)} with the "
                "engines installed here. An admin can choose another language with `!language`."
            ) from exc
        except AllEnginesFailedError as exc:
            log.warning("no speech engine could run: %s", exc)
            raise SpeechUnavailableError(UNAVAILABLE_MESSAGE) from exc

    @staticmethod
    async def _voiced_wav(piece: AudioSegment) -> bytes | None:
        """The chunk as WAV for the engines, once for recognition and translation; None for a
        silent chunk (no engine is asked)."""
        if await asyncio.to_thread(audio.is_silent, piece):
            return None
        return await asyncio.to_thread(audio.to_wav, piece)

    async def _translate(self, wav: bytes, language: str | None) -> str:
        """English for a chunk, by the first engine that can translate (whisper); "" when
        the speech is English already or no engine translates."""
        if language is not None and languages.is_english(language):
            return ""
        source = language or languages.AUTO
        for name, engine in self._chain.serving(source):
            translate = getattr(engine, "translate", None)
            if translate is None or self._chain.is_resting(name):
                continue
            try:
                return str(await asyncio.to_thread(engine_call, translate, wav, source)).strip()
            except EngineUnavailableError as exc:
                log.warning("translation by %s failed: %s", name, exc)
        return ""

    async def _run_engine(self, engine: SpeechEngine, wav: bytes, language: str) -> Heard:
        if not getattr(engine, "holds_gil", False):
            value = await asyncio.to_thread(engine_call, engine.transcribe, wav, language)
        else:
            try:
                value = await self._jobs.run(
                    "transcribe", engine.name, engine.transcribe, wav, language
                )
            except BrokenProcessPool as exc:
                raise EngineUnavailableError(f"{engine.name}: the worker process died") from exc
        if isinstance(value, Heard):
            return value
        return Heard(text_of(value), None if language == languages.AUTO else language)

    async def close(self) -> None:
        """Stop the worker processes this service started (none when it shares the bot's)."""
        if self._owns_jobs:
            await self._jobs.close()
        for name in self._chain.names:
            close = getattr(self._chain.get(name), "close", None)
            if close is not None:
                await asyncio.to_thread(close)


# A language label: a tag as servers store it ("fr", "en-US", "zh-Hant-TW") or `auto`.
_LANGUAGE_LABEL = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}|auto")


def _count_recognition(
    language: str, answered: list[str], outcome: str, segment: AudioSegment | None = None
) -> None:
    """Count one recording recognized here; `segment` when its audio was heard through."""
    label = language if _LANGUAGE_LABEL.fullmatch(language) else "other"
    engine = answered[0] if answered else "none"
    metrics.TRANSCRIPTIONS.labels(engine, label, outcome).inc()
    if segment is not None:
        metrics.AUDIO_SECONDS.inc(segment.duration_seconds)


def _hearing(language: str | Hearing) -> Hearing:
    return language if isinstance(language, Hearing) else Hearing(language, language)
