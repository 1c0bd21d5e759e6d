"""`LocalRunner`: task bodies run in this process, their CPU-bound parts in its job pool.

Inputs and outputs stay in memory; nothing goes through the blob store or a broker. It is the
reference the workers must match (the tests and the benchmarks run the task bodies with it).
A bot without `TASK_BROKER_URL` does not use it yet: its services run the work in their own
threads and job pool (making this the one in-process runner is the next step of the
redesign, see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bot.errors import InvalidInputError
from bot.services.tasks.base import ProgressFn, TaskResult
from bot.services.tasks.fetch import fetch_url
from bot.services.tasks.job import Job
from bot.services.tasks.jobstore import JobStore
from bot.services.tasks.work import WorkServices, run_body

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

    async def input(self, name: str) -> bytes:
        if name not in self._inputs:
            raise InvalidInputError(f"The job's input `{name[:40]}` is missing.")
        return self._inputs[name]

    async def output(self, name: str, data: bytes) -> None:
        self.outputs[name] = data

    async def progress(self, meta: dict[str, Any]) -> None:
        if self._on_progress is not None:
            await self._on_progress(meta)

    async def fetch(self, url: str, max_bytes: int) -> bytes:
        return await fetch_url(url, max_bytes)


async def record(jobstore: JobStore | None, job: Job) -> None:
    if jobstore is not None:
        await jobstore.record(job)


def finish(job: Job, value: dict[str, Any]) -> None:
    job.finished_at = datetime.now(UTC)
    job.status = "done" if value.get("ok") else "failed"
    job.error = None if value.get("ok") else str(value.get("error", "failed"))
    job.refused = bool(value.get("refused"))


class LocalRunner:
    remote = False

    def __init__(self, services: WorkServices, jobstore: JobStore | None = None) -> None:
        self.services = services
        self.jobstore = jobstore

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
        job.status, job.started_at = "running", datetime.now(UTC)
        await record(self.jobstore, job)
        value = await run_body(task, dict(payload), ctx)
        finish(job, value)
        await record(self.jobstore, job)
        return TaskResult(value, ctx.outputs)

    async def record(self, job: Job) -> None:
        """Save a job's state (for services that end a job after its task)."""
        await record(self.jobstore, job)

    async def close(self) -> None:
        """Nothing of its own to stop: the pool and engines belong to the services."""
