"""Jobs in the database: what `!job ID` and `!jobs` show, from any process of the bot.

Whoever runs a job writes its row: the bot when it queues, starts and ends it; a worker while
it runs it (status and progress). `updated_at` is a heartbeat: the bot touches the rows of the
jobs it is waiting for every `heartbeat_seconds`, and a queued or running job whose row has
not been touched for `stale_seconds` belongs to a bot that stopped (a crash, a restart). Such a
job is shown, and saved, as "interrupted" with a reason, never as running forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from bot.services.storage.schema import jobs
from bot.services.storage.store import Storage, upsert
from bot.services.tasks.job import INTERRUPTED, Job

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 120.0
LIVE = ("queued", "running")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") if moment is not None else None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _now() -> datetime:
    return datetime.now(UTC)


def job_row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "namespace": job.namespace,
        "requested_by": job.requested_by,
        "kind": job.kind,
        "subject": job.subject,
        "status": job.status,
        "progress": job.progress,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "updated_at": _iso(_now()),
        "error": job.error,
        "result_key": None,
        "summary": job.summary or None,
    }


def _job(row: Any) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        key="",
        status=row["status"],
        created_at=_time(row["created_at"]) or _now(),
        started_at=_time(row["started_at"]),
        finished_at=_time(row["finished_at"]),
        error=row["error"],
        namespace=row["namespace"],
        subject=row["subject"],
        requested_by=row["requested_by"],
        progress=row["progress"],
        summary=row["summary"] or "",
    )


class JobStore:
    """The `jobs` table. `record` is a `JobRunner` recorder; `get` and `list` read back."""

    def __init__(
        self,
        storage: Storage,
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        stale_seconds: float = STALE_SECONDS,
    ) -> None:
        self.storage = storage
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_seconds = stale_seconds
        self._alive: set[str] = set()
        self._beat: asyncio.Task[None] | None = None

    async def record(self, job: Job) -> None:
        """Save the job's state (a new row, or the row updated)."""
        if job.finished:
            self._alive.discard(job.id)
        else:
            self._alive.add(job.id)
            self._start_heartbeat()
        async with self.storage.transaction() as conn:
            await conn.execute(upsert(conn, jobs, job_row(job)))

    async def running(self, job_id: str, progress: float | None = None) -> bool:
        """A worker says it runs the job (and how far it got); False when the job has ended
        (its bot stopped waiting for it): the worker should stop."""
        values: dict[str, Any] = {"status": "running", "updated_at": _iso(_now())}
        if progress is not None:
            values["progress"] = max(0.0, min(1.0, progress))
        async with self.storage.transaction() as conn:
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.started_at.is_(None))
                .values(started_at=_iso(_now()))
            )
            done = await conn.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.status.in_(LIVE)).values(values)
            )
        return bool(done.rowcount)

    async def get(self, job_id: str) -> Job | None:
        """The job with this id (case and a leading # ignored), None if unknown."""
        wanted = job_id.strip().lstrip("#").lower()
        rows = await self.storage._rows(select(jobs).where(jobs.c.id == wanted))
        return (await self._settled([rows[0]]))[0] if rows else None

    async def list(self, limit: int = 10, namespace: str | None = None) -> list[Job]:
        """The latest jobs, newest first; only `namespace`'s when given."""
        statement = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id).limit(limit)
        if namespace is not None:
            statement = statement.where(jobs.c.namespace == namespace)
        return await self._settled(await self.storage._rows(statement))

    async def _settled(self, rows: list[Any]) -> list[Job]:
        """Jobs as read, with a stale queued or running one marked (and saved) interrupted."""
        found = []
        cutoff = _now() - timedelta(seconds=self.stale_seconds)
        for row in rows:
            job = _job(row)
            updated = _time(row["updated_at"])
            if job.status in LIVE and job.id not in self._alive and updated and updated < cutoff:
                job.status, job.error, job.finished_at = "interrupted", INTERRUPTED, updated
                await self._interrupt(job)
            found.append(job)
        return found

    async def _interrupt(self, job: Job) -> None:
        async with self.storage.transaction() as conn:
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job.id, jobs.c.status.in_(LIVE))
                .values(status=job.status, error=job.error, finished_at=_iso(job.finished_at))
            )
        log.info("job %s was interrupted (no heartbeat since %s)", job.id, job.finished_at)

    # -- heartbeat ---------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        if self._beat is None or self._beat.done():
            self._beat = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        while self._alive:
            await asyncio.sleep(self.heartbeat_seconds)
            alive = list(self._alive)
            if not alive:
                break
            try:
                async with self.storage.transaction() as conn:
                    await conn.execute(
                        update(jobs)
                        .where(jobs.c.id.in_(alive), jobs.c.status.in_(LIVE))
                        .values(updated_at=_iso(_now()))
                    )
            except Exception:  # noqa: BLE001 - the next beat tries again
                log.warning("could not touch the rows of running jobs", exc_info=True)

    async def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
