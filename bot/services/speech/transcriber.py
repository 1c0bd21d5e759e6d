"""`Transcriber`: what the bot calls to turn audio into text. Every recognition is a
`transcribe` task on the bot's runner, which runs it in this process (`LocalRunner`, the
default) or on a worker (`TaskiqRunner`, with TASK_BROKER_URL); the task body
(tasks/work.py) calls `SpeechService`, the engines. Progress comes back as it goes, and a
failure is raised again as the error it was.

    transcriber = Transcriber(runner)
    transcript = await transcriber.transcribe_source(source, hearing, namespace=ns)
    transcript = await transcriber.recognize(segment, hearing, namespace=ns)  # decoded audio
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bot.services.speech import audio
from bot.services.speech.transcript import AudioSource, Hearing, LengthFn, Progress, Transcript
from bot.services.tasks.client import raise_failure
from bot.services.tasks.job import Job, new_job_id

if TYPE_CHECKING:
    from pydub import AudioSegment

    from bot.services.tasks.base import Runner

ProgressCallback = Callable[[Progress], Awaitable[None]]


class Transcriber:
    """Audio to text through the runner, in the namespace whose audio it is."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def transcribe_source(
        self,
        source: AudioSource,
        language: str | Hearing,
        *,
        on_length: LengthFn | None = None,
        on_progress: ProgressCallback | None = None,
        namespace: str | None = None,
    ) -> Transcript:
        """Download, decode and recognize audio by its URL (the process that runs the task
        downloads it: the bot never holds a worker's audio).

        `on_length` is awaited with the real length once the audio is decoded, before
        recognition: a caller charges it there, or refuses by raising (the work stops). A
        result that comes before any report gives the length then."""
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

        hearing = _hearing(language)
        payload = {"url": source.url, "filename": source.filename, **hearing.payload()}
        result = await self.runner.run("transcribe", payload, _job(namespace), on_progress=report)
        raise_failure(result)
        transcript = Transcript(**result.value["transcript"])
        if not known:
            await length(transcript.duration_seconds)
        return transcript

    async def recognize(
        self,
        segment: AudioSegment,
        language: str | Hearing,
        on_progress: ProgressCallback | None = None,
        *,
        namespace: str | None = None,
    ) -> Transcript:
        """Recognize audio decoded here (an utterance heard in voice): its WAV is the task's
        input; progress per chunk."""
        wav = await asyncio.to_thread(audio.to_wav, segment)

        async def report(meta: dict[str, Any]) -> None:
            progress = Progress(**meta)
            if progress.done_seconds > 0 and on_progress is not None:
                await on_progress(progress)

        payload = {**_hearing(language).payload(), "filename": "audio.wav", "decoded": True}
        result = await self.runner.run(
            "transcribe", payload, _job(namespace), inputs={"audio": wav}, on_progress=report
        )
        raise_failure(result)
        return Transcript(**result.value["transcript"])


def _job(namespace: str | None) -> Job:
    """The task's job, in the namespace whose audio it is (its bytes go there too). Nobody
    is shown its id, so it has a row only where a worker needs one."""
    if namespace is None:
        raise ValueError("a transcription needs the namespace whose audio it is")
    return Job(new_job_id(), "transcribe", "", namespace=namespace, subject="audio", shown=False)


def _hearing(language: str | Hearing) -> Hearing:
    return language if isinstance(language, Hearing) else Hearing(language, language)
