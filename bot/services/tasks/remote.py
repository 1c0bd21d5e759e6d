"""`TaskiqRunner`: tasks run on worker processes (`python -m bot worker`), through Redis.

- The queue is a Redis stream read by a consumer group (taskiq-redis `RedisStreamBroker`): a
  worker acknowledges a task only after its result is saved, and a task a worker took but
  never acknowledged (it was killed) is claimed by another worker after
  `WORKER_IDLE_TIMEOUT_SECONDS`. Delivery is at least once, so tasks are idempotent: the
  task id is the job id, and a worker that finds the job's result already in the blob store
  (`jobs/<id>/result.json`) returns it instead of working again.
- Results and progress are kept in Redis (taskiq-redis result backend, JSON, never pickle).
  The bot polls for them, never blocking its loop; it awaits one result per job, so a user
  gets exactly one answer however often the task was delivered.
- Bytes go by reference: inputs and outputs are blobs under `jobs/<job id>/` in the job's
  namespace, in the database every process reaches (DATABASE_URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from taskiq import AsyncBroker, TaskiqResult
from taskiq.depends.progress_tracker import TaskProgress, TaskState
from taskiq.kicker import AsyncKicker
from taskiq.receiver import Receiver
from taskiq.serializers import JSONSerializer
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from bot import metrics
from bot.services.storage.blobs import DatabaseBlobs
from bot.services.tasks.base import JOB_PREFIX, JobEndedError, ProgressFn, TaskResult, job_key
from bot.services.tasks.job import Job
from bot.services.tasks.jobstore import JobStore
from bot.services.tasks.local import abandon, finish, record

log = logging.getLogger(__name__)

TASK_NAME = "voicechat.run"
QUEUE = "voicechat:tasks"
GROUP = "voicechat-workers"
RESULT_PREFIX = "voicechat:result"
RESULT_SECONDS = 24 * 3600
POLL_SECONDS = 0.25  # progress is read this often, and the result at least this often
MIN_CHECK_SECONDS = 0.01
ROW_SECONDS = 1.0  # a worker writes a job's progress in its row at most this often
RETRY_FIRST = 1.0  # a worker whose Redis went away listens again after 1 s, 2, 4 ... 30
RETRY_MAX = 30.0
Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def make_broker(
    url: str, *, idle_timeout_seconds: float = 600, concurrency: int = 1
) -> RedisStreamBroker:
    """The broker the bot and the workers share (same stream, group and result keys)."""
    backend: RedisAsyncResultBackend[Any] = RedisAsyncResultBackend(
        url,
        keep_results=True,
        result_ex_time=RESULT_SECONDS,
        prefix_str=RESULT_PREFIX,
        serializer=JSONSerializer(),
    )
    broker = RedisStreamBroker(
        url,
        queue_name=QUEUE,
        consumer_group_name=GROUP,
        consumer_id="0",  # a group made late still sees tasks queued before it
        idle_timeout=int(idle_timeout_seconds * 1000),
        xread_count=concurrency,  # take no more than can run: the rest stay for other workers
        xread_block=1000,
    )
    return broker.with_result_backend(backend)


def patient_receiver(
    retry_first: float = RETRY_FIRST, retry_max: float = RETRY_MAX
) -> type[Receiver]:
    """A taskiq `Receiver` that pauses before listening again after the broker failed.

    taskiq's `run_receiver_task` makes a new receiver and listens again at once when listening
    raised: with Redis unreachable a worker would spin a core and log a traceback hundreds of
    times a second. This one waits `retry_first`, then twice as long each time, up to
    `retry_max`; a listen that lasted longer than `retry_max` (Redis was back) starts over.
    """
    delay = 0.0

    class PatientReceiver(Receiver):
        async def listen(self, finish_event: asyncio.Event) -> None:
            nonlocal delay
            if delay:
                log.warning("the task queue is unreachable; listening again in %.0f s", delay)
                await asyncio.sleep(delay)
            started = time.monotonic()
            try:
                await super().listen(finish_event)
            except Exception:
                lasted = time.monotonic() - started
                delay = retry_first if not delay or lasted > retry_max else delay * 2
                delay = min(delay, retry_max)
                raise

    return PatientReceiver


def register(broker: AsyncBroker, handler: Handler) -> None:
    broker.register_task(handler, task_name=TASK_NAME)


async def set_progress(broker: AsyncBroker, job_id: str, meta: dict[str, Any]) -> None:
    progress: TaskProgress[Any] = TaskProgress(state=TaskState.STARTED, meta=meta)
    await broker.result_backend.set_progress(job_id, progress)


class TaskiqRunner:
    def __init__(
        self,
        broker: AsyncBroker,
        blobs: DatabaseBlobs,
        jobstore: JobStore | None = None,
        *,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.broker = broker
        self.blobs = blobs
        self.jobstore = jobstore
        self.poll_seconds = poll_seconds
        self._started = False
        self._cleanups: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if not self._started:
            await self.broker.startup()
            self._started = True

    async def run(
        self,
        task: str,
        payload: Mapping[str, Any],
        job: Job,
        *,
        inputs: Mapping[str, bytes] | None = None,
        on_progress: ProgressFn | None = None,
    ) -> TaskResult:
        await self.start()
        namespace = job.namespace or ""
        await record(self.jobstore, job)
        try:
            for name, data in (inputs or {}).items():
                await self.blobs.put(namespace, job_key(job.id, name), data)
            message = {**payload, "job_id": job.id, "namespace": namespace}
            await self.kick(job.id, task, message)
            with _queued(task) as started:
                value = await self.wait(job.id, on_progress, on_start=started)
            outputs = {}
            for name in value.get("outputs", []):
                data = await self.blobs.get(namespace, job_key(job.id, str(name)))
                if data is not None:
                    outputs[str(name)] = data
        except BaseException as exc:
            await abandon(self.jobstore, job, exc)  # its worker stops at its next report
            raise
        finally:  # the job's blobs go after the answer: nobody waits for that
            self._spawn(self._forget(namespace, job.id))
        await self._started_at(job)
        finish(job, value)
        await record(self.jobstore, job)
        return TaskResult(value, outputs)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _started_at(self, job: Job) -> None:
        """When the worker started the job (it wrote it in the job's row)."""
        if self.jobstore is not None and job.started_at is None:
            stored = await self.jobstore.get(job.id)
            if stored is not None:
                job.started_at = stored.started_at

    def check_interval(self, waited: float) -> float:
        """How long to wait before asking for the result again: a tenth of the time waited
        so far, between MIN_CHECK_SECONDS and `poll_seconds`. A short task is seen done
        within milliseconds; a long one costs Redis a few reads a second."""
        return min(self.poll_seconds, max(MIN_CHECK_SECONDS, waited / 10))

    async def kick(self, job_id: str, task: str, payload: dict[str, Any]) -> None:
        kicker: AsyncKicker[Any, Any] = AsyncKicker(TASK_NAME, self.broker, {})
        await kicker.with_task_id(job_id).kiq(task, payload)

    async def wait(
        self,
        job_id: str,
        on_progress: ProgressFn | None = None,
        *,
        on_start: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """The task's result, once a worker saved it; progress reports meanwhile, and
        `on_start()` once a worker has taken the task (its first progress, even empty)."""
        backend = self.broker.result_backend
        seen: Any = None
        loop = asyncio.get_running_loop()
        started = next_progress = loop.time()
        while not await backend.is_result_ready(job_id):
            now = loop.time()
            if (on_progress is not None or on_start is not None) and now >= next_progress:
                next_progress = now + self.poll_seconds
                progress = await backend.get_progress(job_id)
                if progress is not None and on_start is not None:
                    on_start()
                    on_start = None
                if on_progress is not None and progress is not None and progress.meta:
                    if progress.meta != seen:
                        seen = progress.meta
                        await on_progress(dict(seen))
            await asyncio.sleep(self.check_interval(now - started))
        result: TaskiqResult[Any] = await backend.get_result(job_id)
        if result.is_err or not isinstance(result.return_value, dict):
            log.error("task %s failed in the worker: %s", job_id, result.error)
            return {"ok": False, "error": "The worker could not run the task.", "type": "Error"}
        return result.return_value

    async def _forget(self, namespace: str, job_id: str) -> None:
        """Drop the job's blobs: inputs, outputs, and the stored result."""
        try:
            for info in await self.blobs.list(namespace, f"{JOB_PREFIX}{job_id}/"):
                await self.blobs.delete(namespace, info.path)
        except Exception:  # noqa: BLE001 - left-overs cost space, not correctness
            log.warning("could not delete the blobs of job %s", job_id, exc_info=True)

    async def record(self, job: Job) -> None:
        """Save a job's state (for services that end a job after its task)."""
        await record(self.jobstore, job)

    async def warm_up(self) -> str | None:
        """Nothing here: the workers load their engines when they start."""
        return None

    async def close(self) -> None:
        await asyncio.gather(*self._cleanups, return_exceptions=True)
        if self._started:
            await self.broker.shutdown()
            self._started = False


@contextlib.contextmanager
def _queued(task: str) -> Iterator[Callable[[], None]]:
    """Count the task as queued until the function it gives is called (a worker took it)
    or the block ends (its result came, or the bot stopped waiting)."""
    from bot.services.tasks.work import task_label

    gauge = metrics.TASKS_QUEUED.labels(task_label(task))
    gauge.inc()
    waiting = True

    def started() -> None:
        nonlocal waiting
        if waiting:
            waiting = False
            gauge.dec()

    try:
        yield started
    finally:
        started()


# -- the worker's side -------------------------------------------------------------------------


class WorkerContext:
    """A task body's view from a worker: inputs and outputs are the job's blobs."""

    def __init__(
        self, broker: AsyncBroker, blobs: DatabaseBlobs, jobstore: JobStore, services: Any,
        job_id: str, namespace: str,
    ) -> None:  # fmt: skip
        self.broker, self.blobs, self.jobstore = broker, blobs, jobstore
        self.services = services
        self.job_id, self.namespace = job_id, namespace
        self.outputs: list[str] = []
        self._row_written = time.monotonic()  # the handler has just marked the job running

    async def input(self, name: str) -> bytes:
        from bot.errors import InvalidInputError

        data = await self.blobs.get(self.namespace, job_key(self.job_id, name))
        if data is None:
            raise InvalidInputError(f"The job's input `{name[:40]}` is missing.")
        return data

    async def output(self, name: str, data: bytes) -> None:
        await self.blobs.put(self.namespace, job_key(self.job_id, name), data)
        self.outputs.append(name)

    async def progress(self, meta: dict[str, Any]) -> None:
        done, total = meta.get("done_seconds"), meta.get("total_seconds")
        fraction = done / total if isinstance(done, float) and total else None
        # The row (and whether the job still lives) at most every ROW_SECONDS: a database
        # write per report would cost a short task more than its recognition.
        if time.monotonic() - self._row_written >= ROW_SECONDS:
            self._row_written = time.monotonic()
            if not await self.jobstore.running(self.job_id, fraction):
                raise JobEndedError(f"Job {self.job_id} has ended; its task stops.")
        await set_progress(self.broker, self.job_id, meta)

    async def fetch(self, url: str, max_bytes: int) -> bytes:
        from bot.services.tasks.fetch import fetch_url

        return await fetch_url(url, max_bytes)


def worker_handler(broker: AsyncBroker, blobs: DatabaseBlobs, services: Any) -> Handler:
    """The function workers run for every task: idempotent, keyed by the job id."""
    from bot.services.tasks.work import failure, run_body, task_label

    jobstore = JobStore(blobs.storage)

    async def handle(task: str, payload: dict[str, Any]) -> dict[str, Any]:
        job_id, namespace = str(payload.get("job_id", "")), str(payload.get("namespace", ""))
        saved = await blobs.get(namespace, job_key(job_id, "result.json")) if job_id else None
        if saved is not None:  # delivered again: the work is done, its result stands
            log.info("task %s was delivered again; returning its saved result", job_id)
            metrics.TASKS_REDELIVERED.labels(task_label(task)).inc()
            return json.loads(saved)
        job = await jobstore.get(job_id) if job_id else None
        if job is None or job.namespace != namespace:
            from bot.errors import NotFoundError

            return failure(NotFoundError(f"Job {job_id[:20]!r} is unknown."))
        if job.finished:  # its bot has its answer (and dropped the saved result)
            log.info("task %s was delivered after its job ended; skipped", job_id)
            return {"ok": False, "error": f"Job {job_id} has already ended.", "type": "Ended"}
        if job.status == "running":  # a worker started it and died: this one takes over
            log.info("task %s was delivered again; running it again", job_id)
            metrics.TASKS_REDELIVERED.labels(task_label(task)).inc()
        started = datetime.now(UTC)
        log.info("task %s (%s) started in namespace %s", job_id, task, namespace)
        await jobstore.running(job_id)
        await set_progress(broker, job_id, {})  # the bot's sign that a worker took it
        ctx = WorkerContext(broker, blobs, jobstore, services, job_id, namespace)
        value = await run_body(task, payload, ctx)
        value["outputs"] = ctx.outputs
        if value.get("type") != JobEndedError.__name__:  # nobody waits for it: keep nothing
            await blobs.put(namespace, job_key(job_id, "result.json"), json.dumps(value).encode())
        seconds = (datetime.now(UTC) - started).total_seconds()
        log.info("task %s (%s) %s after %.2f s", job_id, task, "done" if value["ok"] else "failed",
                 seconds)  # fmt: skip
        return value

    return handle
