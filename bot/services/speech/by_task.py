"""Recognition sent to a task runner: a `transcribe` task, run where the runner sends it (a
worker's, or this process with `LocalRunner`), its progress reported back and its failure
raised again as the error it was. `service.SpeechService` uses these when it has a runner.
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


async def recognize(
    tasks: Runner,
    segment: AudioSegment,
    hearing: Hearing,
    on_progress: Callable[[Progress], Awaitable[None]] | None,
    namespace: str | None,
) -> Transcript:
    """A `transcribe` task with the decoded audio as its input; progress per chunk."""
    job = _job(namespace)
    wav = await asyncio.to_thread(audio.to_wav, segment)

    async def report(meta: dict[str, Any]) -> None:
        if on_progress is not None:
            await on_progress(Progress(**meta))

    result = await tasks.run(
        "transcribe",
        {**hearing.payload(), "filename": "audio.wav"},
        job,
        inputs={"audio": wav},
        on_progress=report,
    )
    raise_failure(result)
    return Transcript(**result.value["transcript"])


async def transcribe_url(
    tasks: Runner,
    source: AudioSource,
    hearing: Hearing,
    on_length: LengthFn | None,
    on_progress: Callable[[Progress], Awaitable[None]] | None,
    namespace: str | None,
) -> Transcript:
    """A `transcribe` task with the audio's URL. The worker's first report (after it
    decoded) gives the length; a result that comes before any report gives it then."""
    job = _job(namespace)
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

    payload = {"url": source.url, "filename": source.filename, **hearing.payload()}
    result = await tasks.run("transcribe", payload, job, on_progress=report)
    raise_failure(result)
    transcript = Transcript(**result.value["transcript"])
    if not known:
        await length(transcript.duration_seconds)
    return transcript


def _job(namespace: str | None) -> Job:
    """The task's job, in the namespace whose audio it is (its bytes go there too)."""
    if namespace is None:
        raise ValueError("a transcribe task needs the namespace whose audio it is")
    return Job(new_job_id(), "transcribe", "", namespace=namespace, subject="audio")
