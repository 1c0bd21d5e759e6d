"""`python -m bot worker`: a process that runs tasks (transcription, training) for the bot.

Needs the bot's settings: TASK_BROKER_URL (Redis, the queue) and DATABASE_URL (the database
where the tasks' bytes and the jobs' rows are; PostgreSQL when workers run on other
machines), plus the engine settings (STT_ENGINES, WHISPER_MODEL, ...). Start as many as you
like, on this machine or others; each runs WORKER_CONCURRENCY tasks at a time. The speech
engine named first is loaded at start, and once per process.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from bot.config import Settings, SettingsError, load_settings
from bot.logs import setup_logging

log = logging.getLogger("bot.worker")


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    from taskiq.api import run_receiver_task

    from bot.services.speech.service import SpeechService
    from bot.services.storage.blobs import DatabaseBlobs
    from bot.services.tasks.jobs import JobRunner, best_start_method
    from bot.services.tasks.remote import (
        make_broker,
        patient_receiver,
        register,
        worker_handler,
    )
    from bot.services.tasks.work import WorkServices
    from bot.wiring import WORKER_PRELOAD, observed_storage

    if settings.task_broker_url is None:
        raise SettingsError(["TASK_BROKER_URL: must be set for a worker"])
    stop = stop or asyncio.Event()
    observer, storage = await observed_storage(settings)
    pool = JobRunner(
        max_workers=settings.worker_concurrency,
        start_method=best_start_method(),
        preload=WORKER_PRELOAD,
    )
    pool.warm_up()
    speech = SpeechService.from_settings(settings, pool)
    if settings.warm_up:
        await speech.warm_up()
    broker = make_broker(
        settings.task_broker_url,
        idle_timeout_seconds=settings.worker_idle_timeout_seconds,
        concurrency=settings.worker_concurrency,
    )
    register(broker, worker_handler(broker, DatabaseBlobs(storage), WorkServices(speech, pool)))
    broker.is_worker_process = True
    await broker.startup()
    receiver = asyncio.create_task(
        run_receiver_task(
            broker,
            receiver_cls=patient_receiver(),
            max_async_tasks=settings.worker_concurrency,
            max_prefetch=0,
        )
    )
    if observer is not None:
        await observer.start()
    log.info("worker ready: %d task(s) at a time", settings.worker_concurrency)
    print("worker ready", flush=True)
    try:
        await stop.wait()
    finally:
        if observer is not None:
            await observer.stop()
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
        await broker.shutdown()
        await speech.close()
        await pool.close()
        await storage.close()


def worker_main() -> int:
    try:
        settings = load_settings()
        if settings.task_broker_url is None:
            raise SettingsError(["TASK_BROKER_URL: must be set for a worker (redis://...)"])
    except SettingsError as exc:
        print("The worker cannot start: fix these settings:", *exc.problems, sep="\n  ",
              file=sys.stderr)  # fmt: skip
        return 2
    setup_logging(settings.log_level, settings.data_dir / "logs", console=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    from bot.services.ops.observe import PortInUseError

    try:
        asyncio.run(main())
    except PortInUseError as exc:
        print(f"The worker cannot start: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a database or Redis that can't be reached: one clear line
        log.error("the worker stopped: %s", exc, exc_info=exc)
        print(f"The worker stopped: {exc}", file=sys.stderr)
        return 1
    return 0
