"""The one place that builds the services from the settings."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from bot.core.gateway import LoginTurns
from bot.services.common.text import MB
from bot.services.hearing.listening.service import ListeningService
from bot.services.model.corrections import Corrections
from bot.services.model.policy import FirstTrainings
from bot.services.ops.observe import Observer, redis_answers
from bot.services.speech.service import SpeechService
from bot.services.speech.transcriber import Transcriber
from bot.services.storage import Storage
from bot.services.storage.blobs import DatabaseBlobs
from bot.services.tasks.base import Runner
from bot.services.tasks.jobs import JobRunner, best_start_method
from bot.services.tasks.jobstore import JobStore
from bot.services.tasks.local import LocalRunner
from bot.services.tasks.work import WorkServices
from bot.services.tenancy.language import ServerLanguages
from bot.services.tenancy.settings import ServerSettings
from bot.services.tenancy.tenants import TenantLimits, Tenants, adopt_local_files, migrate_files
from bot.services.voice.reading import ReadAloud
from bot.services.voice.synthesis import SynthesisService

log = logging.getLogger(__name__)

DB_FILE = "bot.db"
# Two worker processes: one training and one CPU-bound recognition can run side by side.
JOB_WORKERS = 2
# Imported once by the fork server, so a training starts with scikit-learn ready.
WORKER_PRELOAD = ("bot.services.model.training",)


@dataclass
class Services:
    """Everything the cogs use, built once; closed when the bot closes.

    Data that belongs to a server (datasets, models, files) is reached through
    `tenants.get(namespace)`, never directly.
    """

    settings: Settings
    storage: Storage
    synthesis: SynthesisService
    speech: SpeechService  # the engines (what they hear, size limits); tasks call them
    transcriber: Transcriber  # audio to text: a task on the runner
    jobs: JobRunner
    tenants: Tenants
    listening: ListeningService
    jobstore: JobStore
    languages: ServerLanguages
    server_settings: ServerSettings  # every server's, channel's and person's settings
    reading: ReadAloud
    first_trainings: FirstTrainings  # a chat message's first training of a dataset
    corrections: Corrections  # !correct and !forgetme's writes, in a crash-safe order
    # Where heavy work runs: this process (LocalRunner), or workers with TASK_BROKER_URL.
    tasks: Runner
    observer: Observer | None = None  # /metrics, /healthz, /readyz when METRICS_PORT is set

    async def warm_up(self) -> None:
        """Load the speech engine named first where tasks run (here, unless there are
        workers) and the voice engine named first (when they have a model), in threads:
        started in the background at start (WARM_UP), it never delays the gateway."""
        for service in (self.tasks, self.synthesis):
            try:
                await service.warm_up()
            except Exception:  # a broken engine must not stop the bot; its requests will say
                log.exception("warming up %s failed", type(service).__name__)

    async def close(self) -> None:
        if self.observer is not None:
            await self.observer.stop()
        await self.listening.close()
        await self.tenants.close()
        await self.speech.close()
        await self.synthesis.close()
        await self.jobs.close()
        await self.tasks.close()
        await self.jobstore.close()
        await self.storage.close()


def storage_location(settings: Settings) -> str | Path:
    """DATABASE_URL, else the SQLite file in DATA_DIR."""
    return settings.database_url or settings.data_dir / DB_FILE


async def open_storage(settings: Settings) -> Storage:
    """Open (and migrate) the database, finish moving an older install's shared files into
    their namespace, and upload the local files that have no blob yet; each step is
    idempotent, so a crash is finished next time."""
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    storage = Storage(storage_location(settings))
    await storage.open()
    target = await storage.get_meta("shared_files_namespace")
    if target is not None:
        moved = await asyncio.to_thread(migrate_files, data_dir, target)
        if moved:
            log.info("moved %d shared data entries into namespace %s", moved, target)
    uploaded = await adopt_local_files(DatabaseBlobs(storage), data_dir)
    if uploaded:
        log.info("uploaded %d local data files to the database", uploaded)
    return storage


def build_observer(settings: Settings) -> Observer | None:
    """The metrics and health server when METRICS_PORT is set, its port bound now (so a port
    in use stops the process before anything else starts); started by the bot or worker."""
    if settings.metrics_port is None:
        return None
    return Observer(settings.metrics_host, settings.metrics_port)


def watch_dependencies(observer: Observer | None, settings: Settings, storage: Storage) -> None:
    """Readiness of a bot or worker: its database answers, and Redis when there's a broker."""
    if observer is None:
        return
    observer.add_check("database", storage.ping)
    broker = settings.task_broker_url
    if broker is not None:
        observer.add_check("task broker", lambda: redis_answers(broker))


async def observed_storage(settings: Settings) -> tuple[Observer | None, Storage]:
    """The observer (its port bound first: a port in use stops the process at once) and the
    opened database, which the observer's readiness then watches; for the bot and workers."""
    observer = build_observer(settings)
    try:
        storage = await open_storage(settings)
    except BaseException:
        if observer is not None:
            await observer.stop()
        raise
    watch_dependencies(observer, settings, storage)
    return observer, storage


async def build_services(settings: Settings) -> Services:
    observer, storage = await observed_storage(settings)
    jobstore = JobStore(storage)
    jobs = JobRunner(
        max_workers=JOB_WORKERS,
        start_method=best_start_method(),
        preload=WORKER_PRELOAD,
        recorder=jobstore.record,
    )
    speech = SpeechService.from_settings(settings, jobs)
    tasks = task_runner(settings, storage, jobstore, WorkServices(speech, jobs))
    jobs.warm_up()
    limits = TenantLimits(
        train_max_bytes=settings.train_max_mb * MB,
        train_max_rows=settings.train_max_rows,
        max_upload_bytes=settings.max_upload_mb * MB,
        min_confidence=settings.chat_min_confidence,
    )
    transcriber = Transcriber(tasks)
    server_settings = ServerSettings(storage, settings)
    languages = ServerLanguages(server_settings)
    synthesis = SynthesisService.from_settings(settings)
    tenants = Tenants(
        settings.data_dir,
        jobs,
        limits,
        tasks=tasks,
        blobs=DatabaseBlobs(storage),
        max_cached=settings.max_cached_servers,
    )
    return Services(
        settings=settings,
        storage=storage,
        synthesis=synthesis,
        speech=speech,
        transcriber=transcriber,
        jobs=jobs,
        tenants=tenants,
        listening=ListeningService(
            transcriber, storage, settings=server_settings, languages=languages
        ),
        jobstore=jobstore,
        languages=languages,
        server_settings=server_settings,
        reading=ReadAloud(
            server_settings,
            synthesis,
            languages,
            prefix=settings.command_prefix,
            max_chars=settings.max_spoken_chars,
        ),
        first_trainings=FirstTrainings(),
        corrections=Corrections(storage, tenants, server_settings),
        tasks=tasks,
        observer=observer,
    )


def task_runner(
    settings: Settings, storage: Storage, jobstore: JobStore, here: WorkServices
) -> Runner:
    """Where transcription and training run: with TASK_BROKER_URL on workers through Redis,
    else in this process with `here` (its speech engines and job pool)."""
    if settings.task_broker_url is None:
        return LocalRunner(here, jobstore)
    from bot.services.tasks.remote import TaskiqRunner, make_broker

    broker = make_broker(
        settings.task_broker_url, idle_timeout_seconds=settings.worker_idle_timeout_seconds
    )
    return TaskiqRunner(broker, DatabaseBlobs(storage), jobstore)


def build_login_turns(settings: Settings) -> LoginTurns | None:
    """Login turns shared through Redis (REDIS_URL); None: discord.py paces this process."""
    return LoginTurns(settings.redis_url) if settings.redis_url else None
