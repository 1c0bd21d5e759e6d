"""`LocalRunner`: the bot's runner without `TASK_BROKER_URL`. Task bodies run in this process,
their CPU-bound parts in its job pool (`JobRunner`).

Inputs and outputs stay in memory; nothing goes through the blob store or a broker. The
bodies are the ones workers run (work.py), so a bot with and without workers does the same
work. Its jobs are recorded in the jobs table like a worker's, except those nobody sees the
id of (`Job.shown` False: a transcription), which only a worker would need a row for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.errors import InvalidInputError
from bot.services.tasks.base import JobEndedError, ProgressFn, TaskResult
from bot.services.tasks.job import INTERRUPTED, Job, short_reason
from bot.services.tasks.work import BODIES, Body, WorkServices, run_body

if TYPE_CHECKING:
    from bot.services.tasks.jobstore import JobStore

log = logging.getLogger(__name__)


class _LocalContext:
    def __init__(
        self,
        job: Job,
        inputs: Mapping[str, bytes],
        on_progress: ProgressFn | None,
        services: WorkServices,
    ) -> None:
        self.job_id = job.id
        self.namespace = job.namespace or ""
        self._inputs = inputs
        self._on_progress = on_progress
        self.services = services
        self.outputs: dict[str, bytes] = {}
        # What the caller raised from on_progress (a refusal): the body stops, and the
        # caller gets it back as it was, as if it had stopped waiting for a worker.
        self.caller_error: BaseException | None = None

    async def input(self, name: str) -> bytes:
        if name not in self._inputs:
            raise InvalidInputError(f"The job's input `{name[:40]}` is missing.")
        return self._inputs[name]

    async def output(self, name: str, data: bytes) -> None:
        self.outputs[name] = data

    async def progress(self, meta: dict[str, Any]) -> None:
        if self._on_progress is None:
            return
        try:
            await self._on_progress(meta)
        except Exception as exc:
            self.caller_error = exc
            raise JobEndedError(f"Job {self.job_id} has ended; its task stops.") from exc

    async def fetch(self, url: str, max_bytes: int) -> bytes:
        from bot.services.tasks.fetch import fetch_url  # aiohttp: only once audio is fetched

        return await fetch_url(url, max_bytes)


async def record(jobstore: JobStore | None, job: Job) -> None:
    if jobstore is not None:
        await jobstore.record(job)


def finish(job: Job, value: dict[str, Any]) -> None:
    job.finished_at = datetime.now(UTC)
    job.status = "done" if value.get("ok") else "failed"
    job.error = None if value.get("ok") else str(value.get("error", "failed"))
    job.refused = bool(value.get("refused"))


async def abandon(jobstore: JobStore | None, job: Job, exc: BaseException) -> None:
    """The bot stops waiting for a job (a refusal in on_progress, a shutdown): it ends here,
    failed with the reason, or interrupted when the bot stops."""
    job.finished_at = datetime.now(UTC)
    if isinstance(exc, asyncio.CancelledError):
        job.status, job.error = "interrupted", INTERRUPTED
    else:
        job.status, job.error = "failed", short_reason(exc)
    try:
        await record(jobstore, job)
    except Exception:  # noqa: BLE001 - the row then ends as interrupted when it goes stale
        log.warning("could not record the end of job %s", job.id, exc_info=True)


class LocalRunner:
    """Runs task bodies in this process (`bodies`: work.BODIES; tests may give their own)."""

    def __init__(
        self,
        services: WorkServices,
        jobstore: JobStore | None = None,
        *,
        bodies: Mapping[str, Body] = BODIES,
    ) -> None:
        self.services = services
        self.jobstore = jobstore
        self.bodies = bodies

    async def run(
        self,
        task: str,
        payload: Mapping[str, Any],
        job: Job,
        *,
        inputs: Mapping[str, bytes] | None = None,
        on_progress: ProgressFn | None = None,
    ) -> TaskResult:
        ctx = _LocalContext(job, inputs or {}, on_progress, self.services)
        jobstore = self.jobstore if job.shown else None
        job.status, job.started_at = "running", datetime.now(UTC)
        try:
            await record(jobstore, job)
            value = await run_body(task, dict(payload), ctx, self.bodies)
        except BaseException as exc:  # cancelled while it ran (the bot stops)
            await abandon(jobstore, job, exc)
            raise
        if ctx.caller_error is not None:
            await abandon(jobstore, job, ctx.caller_error)
            raise ctx.caller_error
        finish(job, value)
        await record(jobstore, job)
        return TaskResult(value, ctx.outputs)

    async def record(self, job: Job) -> None:
        """Save a job's state (for services that end a job after its task)."""
        if job.shown:
            await record(self.jobstore, job)

    async def warm_up(self) -> str | None:
        """Load the speech engine named first here: this process recognizes."""
        speech = self.services.speech
        return await speech.warm_up() if speech is not None else None

    async def close(self) -> None:
        """Nothing of its own to stop: the pool and engines belong to the bot."""
