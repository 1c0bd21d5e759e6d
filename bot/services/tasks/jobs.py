"""The bot's one job runner: CPU-bound work in worker processes, with ids, status and callbacks.

Training a model, or recognising speech with an engine that holds the GIL, would stall the
event loop for seconds in a thread. `JobRunner` runs such work in a process pool instead and
gives each piece of work a short id that users can ask about (`!job a1b2c3`).

Rules:
- Jobs with the same `key` run one at a time, in submission order; the later ones stay
  "queued". Jobs with different keys run side by side, up to `max_workers`.
- Workers are started with "spawn" or "forkserver", never "fork": the bot process has
  threads, and forking a process with threads can deadlock the child. With "forkserver",
  the modules in `preload` are imported once by the fork server, so a new worker starts in
  milliseconds with them ready (scikit-learn alone takes a second to import); `warm_up`
  starts the fork server in the background when the bot starts.
- Nothing here blocks the event loop: starting a worker process happens in a thread.
- A worker that raises, or dies (killed, out of memory), fails its job with a short reason;
  the runner then starts a fresh pool for the next job.
- The pool is created on first use and shut down after `idle_seconds` without work, so an
  idle bot does not keep a worker (and the memory of its last job) around.

Everything here runs on the event loop; call `submit` from a coroutine or callback.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import wait as wait_for_futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, Literal

from bot.errors import NotFoundError, UserFacingError
from bot.services.tasks.job import Job, new_job_id, now, short_reason

log = logging.getLogger(__name__)

OnDone = Callable[["Job"], Awaitable[None]]
# Told of every change of a job's state (services/tasks/jobstore.py keeps them in the database).
Recorder = Callable[["Job"], Awaitable[None]]
SHUTTING_DOWN = "Cancelled: the bot is shutting down."
# Workers do background work: let the bot's own process win the CPU when both want it.
WORKER_NICENESS = 5


@dataclass
class _Entry:
    job: Job
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    on_done: OnDone | None
    ended: asyncio.Event
    keep_exception: bool = False


def _init_worker(preload: tuple[str, ...] = ()) -> None:
    """Runs once in each worker: ignore Ctrl+C (the bot shuts workers down), lower priority
    and import `preload` (already imported by a fork server, so then free)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "nice"):
        try:
            os.nice(WORKER_NICENESS)
        except OSError as exc:
            log.debug("could not lower the worker's priority: %s", exc)
    for module in preload:
        importlib.import_module(module)


def best_start_method() -> Literal["spawn", "forkserver"]:
    """The "forkserver" start method where the platform has it (Linux, macOS), else "spawn"."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _start_workers(pool: ProcessPoolExecutor, count: int) -> None:
    """Make the pool start `count` workers now and wait until they are ready. Blocking."""
    wait_for_futures([pool.submit(os.getpid) for _ in range(count)])


class JobRunner:
    """Runs functions in worker processes as jobs with ids, per-key queues and callbacks.

    `fn` and its arguments are pickled to the worker, so `fn` must be a module-level function
    and the arguments plain data. Its return value becomes `Job.result`.
    """

    def __init__(
        self,
        max_workers: int = 1,
        *,
        start_method: Literal["spawn", "forkserver"] = "spawn",
        preload: Sequence[str] = (),
        idle_seconds: float | None = 300.0,
        history: int = 100,
        recorder: Recorder | None = None,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if start_method not in ("spawn", "forkserver"):
            raise ValueError("start_method must be 'spawn' or 'forkserver'")
        self.max_workers = max_workers
        self._start_method = start_method
        self._preload = tuple(preload)
        self._idle_seconds = idle_seconds
        self._history = max(history, 1)
        self._pool: ProcessPoolExecutor | None = None
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._entries: dict[str, _Entry] = {}
        self._queue: list[_Entry] = []
        self._busy_keys: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._exceptions: dict[str, BaseException] = {}
        self._idle_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.recorder = recorder
        self._recorded: set[str] = set()  # jobs submitted as jobs (not `run` results)
        self._record_lock = asyncio.Lock()

    # -- public API --------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Get ready for the first job in the background: with "forkserver", start the fork
        server, which imports `preload` (a worker then starts in milliseconds); with "spawn",
        start the workers themselves. Call from a coroutine; returns at once."""
        if not self._closed:
            self._tasks_add(self._warm())

    async def _warm(self) -> None:
        started = time.monotonic()
        try:
            if self._start_method == "forkserver":
                self._context()  # sets the fork server's preload list
                await asyncio.to_thread(multiprocessing.forkserver.ensure_running)
            else:
                await asyncio.to_thread(_start_workers, self._ensure_pool(), self.max_workers)
                self._schedule_idle_shutdown()
        except Exception as exc:  # noqa: BLE001 - the first job will start what it needs
            log.warning("could not get the job workers ready ahead of time: %s", exc)
            return
        log.info("job workers ready to start (%.2f s)", time.monotonic() - started)

    def submit(
        self,
        kind: str,
        key: str,
        fn: Callable[..., Any],
        *args: Any,
        on_done: OnDone | None = None,
        namespace: str | None = None,
        subject: str = "",
    ) -> Job:
        """Queue `fn(*args)` for a worker and return its job at once.

        The job is "running" already when a worker and its key are free, else "queued".
        `namespace` and `subject` only label the job (`list` filters by namespace).

        `on_done(job)` is awaited once the job is done or failed; its exceptions are logged.
        """
        job = self._submit(kind, key, fn, args, on_done, keep_exception=False)
        job.namespace, job.subject = namespace, subject
        self._recorded.add(job.id)
        self._record(job)
        return job

    async def run(self, kind: str, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` as a job and return its result, or raise the worker's exception.

        For services that want a result rather than a job to report (e.g. a recognition
        engine). A dead worker raises `BrokenProcessPool`.
        """
        job = self._submit(kind, key, fn, args, None, keep_exception=True)
        try:
            await self.wait(job.id)
        finally:
            # A result wanted by a service is not a job for !jobs to list.
            self._jobs.pop(job.id, None)
            self._entries.pop(job.id, None)
        exc = self._exceptions.pop(job.id, None)
        if exc is not None:
            raise exc
        return job.result

    def get(self, job_id: str) -> Job | None:
        """The job with this id (case and a leading # ignored), or None if unknown or forgotten."""
        return self._jobs.get(job_id.strip().lstrip("#").lower())

    def list(self, limit: int = 10, namespace: str | None = None) -> list[Job]:
        """The latest jobs, newest first; only `namespace`'s when given."""
        jobs = [
            j
            for j in reversed(self._jobs.values())
            if namespace is None or j.namespace == namespace
        ]
        return jobs[: max(limit, 0)]

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job ended and its on_done callback ran; return it."""
        job = self.get(job_id)
        if job is None:
            raise NotFoundError(f"Job {job_id.strip()} not found.")
        entry = self._entries.get(job.id)
        if entry is not None:
            await asyncio.wait_for(entry.ended.wait(), timeout)
        return job

    def busy_for(self, namespace: str) -> bool:
        """Whether a job of `namespace` is queued, running, or still in its on_done callback
        (which may store what the job made)."""
        return any(
            entry.job.namespace == namespace and not entry.ended.is_set()
            for entry in self._entries.values()
        )

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return len(self._queue) + len(self._busy_keys)

    async def close(self, timeout: float = 30.0) -> None:
        """Fail queued jobs, give running ones `timeout` seconds, then stop the workers."""
        self._closed = True
        self._cancel_idle_timer()
        queued, self._queue = self._queue, []
        for entry in queued:
            entry.args = ()
            entry.job.status = "failed"
            entry.job.error = SHUTTING_DOWN
            entry.job.finished_at = now()
            self._tasks_add(self._finish(entry))
        running = [t for t in self._tasks if not t.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=timeout)
            if late:
                log.warning("stopping %d job(s) still running at shutdown", len(late))
                self._terminate_workers()
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- scheduling --------------------------------------------------------------------------

    def _submit(
        self,
        kind: str,
        key: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        on_done: OnDone | None,
        *,
        keep_exception: bool,
    ) -> Job:
        if self._closed:  # a task that waited for its turn while the bot stops
            raise UserFacingError(SHUTTING_DOWN)
        job = Job(id=self._new_id(), kind=kind, key=key)
        entry = _Entry(job, fn, args, on_done, asyncio.Event(), keep_exception)
        self._jobs[job.id] = job
        self._entries[job.id] = entry
        self._queue.append(entry)
        self._forget_old_jobs()
        log.info("job %s (%s, key %s) queued", job.id, kind, key)
        self._pump()
        return job

    def _new_id(self) -> str:
        while True:
            job_id = new_job_id()
            if job_id not in self._jobs:
                return job_id

    def _forget_old_jobs(self) -> None:
        """Keep the last `history` jobs; never forget one that has not ended."""
        excess = len(self._jobs) - self._history
        for job_id in list(self._jobs):
            if excess <= 0:
                break
            entry = self._entries.get(job_id)
            if entry is not None and not entry.ended.is_set():
                continue
            del self._jobs[job_id]
            self._entries.pop(job_id, None)
            self._exceptions.pop(job_id, None)
            self._recorded.discard(job_id)
            excess -= 1

    def _pump(self) -> None:
        """Start every queued job whose key is free, while workers are free."""
        for entry in list(self._queue):
            if len(self._busy_keys) >= self.max_workers:
                break
            if entry.job.key in self._busy_keys:
                continue
            self._queue.remove(entry)
            self._busy_keys.add(entry.job.key)
            self._cancel_idle_timer()
            entry.job.status = "running"
            entry.job.started_at = now()
            log.info("job %s (%s) started", entry.job.id, entry.job.kind)
            self._record(entry.job)
            self._tasks_add(self._run(entry))

    def _tasks_add(self, coro: Awaitable[None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, entry: _Entry) -> None:
        job = entry.job
        try:
            job.result = await self._execute(entry.fn, entry.args)
            job.status = "done"
            summary = getattr(job.result, "summary", None)
            job.summary = summary() if callable(summary) else ""
        except Exception as exc:
            job.status = "failed"
            job.error = short_reason(exc)
            job.refused = isinstance(exc, UserFacingError)
            if entry.keep_exception:
                self._exceptions[job.id] = exc
            if isinstance(exc, UserFacingError):
                log.info("job %s (%s) failed: %s", job.id, job.kind, job.error)
            else:
                log.error("job %s (%s) failed", job.id, job.kind, exc_info=exc)
        finally:
            job.finished_at = now()
            entry.args = ()  # a finished job's history must not pin its (possibly big) input
            self._busy_keys.discard(job.key)
            if not self._closed:
                self._pump()
                self._schedule_idle_shutdown()
        log.info("job %s (%s) %s after %.2f s", job.id, job.kind, job.status, job.duration or 0)
        await self._finish(entry)

    def _record(self, job: Job) -> None:
        """Tell the recorder of the job's state now, in the background (in order: one job's
        records are written by one task each, and a later one waits for the earlier)."""
        if self.recorder is not None and job.id in self._recorded:
            self._tasks_add(self._save(job, self.recorder, replace(job)))

    async def _save(self, job: Job, recorder: Recorder, state: Job) -> None:
        try:
            async with self._record_lock:  # first come, first written
                await recorder(state)
        except Exception:
            log.exception("could not record the state of job %s", job.id)

    async def _finish(self, entry: _Entry) -> None:
        recorded = entry.job.id in self._recorded and self.recorder is not None
        saved = replace(entry.job)
        if recorded:
            await self._save(entry.job, self.recorder, saved)
        try:
            if entry.on_done is not None:
                await entry.on_done(entry.job)
        except Exception:
            log.exception("on_done callback of job %s failed", entry.job.id)
        finally:
            if recorded and replace(entry.job) != saved:
                # on_done may finish the work (a trained model stored as its real version)
                await self._save(entry.job, self.recorder, replace(entry.job))
            entry.on_done = None
            entry.ended.set()
            self._recorded.discard(entry.job.id)

    # -- the pool ----------------------------------------------------------------------------

    async def _execute(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        for attempt in (1, 2):
            pool = self._ensure_pool()
            try:
                # In a thread: submit may start a worker process.
                future = await asyncio.to_thread(pool.submit, fn, *args)
            except BrokenProcessPool:
                # Broken by an earlier job's worker: this job is innocent, retry it once.
                self._discard_pool(pool)
                if attempt == 2:
                    raise
                continue
            try:
                return await asyncio.wrap_future(future)
            except BrokenProcessPool:
                self._discard_pool(pool)
                raise
        raise AssertionError("unreachable")

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.max_workers,
                mp_context=self._context(),
                initializer=_init_worker,
                initargs=(self._preload,),
            )
            log.debug(
                "started a %s process pool (%d workers)", self._start_method, self.max_workers
            )
        return self._pool

    def _context(self) -> multiprocessing.context.BaseContext:
        context = multiprocessing.get_context(self._start_method)
        if self._start_method == "forkserver" and self._preload:
            context.set_forkserver_preload(list(self._preload))  # type: ignore[attr-defined]
        return context

    def _discard_pool(self, pool: ProcessPoolExecutor) -> None:
        """Drop a broken pool; the next job gets a fresh one."""
        if self._pool is pool:
            self._pool = None
            log.warning("the job worker pool broke; a new one starts with the next job")
        pool.shutdown(wait=False, cancel_futures=True)

    def _terminate_workers(self) -> None:
        pool = self._pool
        if pool is None:
            return
        # ProcessPoolExecutor has no public way to stop a running task before Python 3.14.
        processes = getattr(pool, "_processes", None) or {}
        for process in list(processes.values()):
            process.terminate()

    def _schedule_idle_shutdown(self) -> None:
        if self._idle_seconds is None or self._pool is None or self.pending:
            return
        self._cancel_idle_timer()
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(self._idle_seconds, self._shutdown_idle_pool)

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _shutdown_idle_pool(self) -> None:
        self._idle_timer = None
        if self.pending or self._pool is None:
            return
        pool, self._pool = self._pool, None
        log.debug("shutting down the idle job worker pool")
        pool.shutdown(wait=False)
