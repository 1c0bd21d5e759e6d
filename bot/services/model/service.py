"""`ModelService`: train, store, select and use the chat models of one namespace's datasets.

What the cogs call: `start_training` (a `train` task on the runner: this process's job pool,
or a worker), `predict`, `evaluate` (`!test`; a test file is an `evaluate` task),
`list_versions` and `use_version` (a rollback). It keeps each dataset's manifest and loaded
model, reloading them when they change; with a blob cache it records new versions in the
shared manifest with a compare-and-swap (the class docstring, "Shared storage").
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import metrics
from bot.errors import InvalidInputError, NotFoundError, UserFacingError
from bot.services.common.fs import file_stamp
from bot.services.model import samples
from bot.services.model.datasets.parse import MAX_TEXT_CHARS, validate_name
from bot.services.model.datasets.store import DatasetStore
from bot.services.model.evaluation import TestItem
from bot.services.model.predictions import Evaluation, Prediction, _evaluate
from bot.services.model.shared import MODELS_DIR, SharedVersions
from bot.services.model.store import (
    MANIFEST_NAME,
    ModelVersion,
    _is_format_1,
    _load_model,
    _manifest_lock,
    _model_version,
    _read_manifest,
    _read_verified,
    _version_number,
    _write_manifest,
    format_1_as_arrays,
    store_version,
)
from bot.services.model.training_run import TrainResult
from bot.services.tasks.client import raise_failure
from bot.services.tasks.job import Job, new_job_id, short_reason
from bot.services.tasks.jobs import JobRunner
from bot.services.tasks.local import LocalRunner
from bot.services.tasks.work import WorkServices

if TYPE_CHECKING:
    from bot.services.files.blobcache import BlobCache
    from bot.services.model.scorer import _LoadedModel
    from bot.services.tasks.base import Runner

log = logging.getLogger(__name__)

STORE_FAILED = "The new model could not be stored, so the previous one stays active."


class NoModelError(UserFacingError):
    """The dataset has no trained model yet."""


def count_training(job: Job) -> None:
    """Count a finished training: ok (with how long it took), refused or failed."""
    if job.status == "done":
        metrics.TRAININGS.labels(metrics.OK).inc()
        if isinstance(job.result, TrainResult):
            metrics.TRAINING_SECONDS.observe(job.result.duration_seconds)
    else:
        metrics.TRAININGS.labels(metrics.REFUSED if job.refused else metrics.FAILED).inc()


def _forget_loaded(loaded: dict[str, Any]) -> None:
    metrics.LOADED_MODELS.dec(len(loaded))


class ModelService:
    """Train, store, select and use the chat models of the datasets.

    Shared storage: with a `cache` (services/files/blobcache.py), the namespace's blobs are where
    versions and manifests live, so every process of the bot sees the same models. Each use
    asks for the manifest's sha256 (one small query) and fetches it when another process
    changed it (a new version, a rollback); a version file is fetched when it is not cached
    with the sha256 that the manifest records. A training's task gives back the model's
    bytes; the bot then stores the version (a blob that only the first writer of a name
    gets) and records it in the manifest with a compare-and-swap, so trainings and rollbacks
    in several processes never lose each other's changes. Then the user hears of it.
    """

    def __init__(
        self,
        data_dir: Path,
        datasets: DatasetStore,
        jobs: JobRunner,
        min_confidence: float,
        *,
        namespace: str | None = None,
        tasks: Runner | None = None,
        cache: BlobCache | None = None,
    ) -> None:
        self.namespace = namespace
        # Where trainings and test files run: `train` and `evaluate` tasks on the bot's
        # runner (without one, this process's: the same bodies, in `jobs`' processes).
        self.tasks = tasks or LocalRunner(WorkServices(None, jobs))
        self.jobs = jobs  # a model of the first format is read in its processes
        # Trainings under way, by job id, and each dataset's latest (one dataset's trainings
        # run one at a time, each waiting for the one before).
        self._by_job: dict[str, asyncio.Task[None]] = {}
        self._trainings: dict[str, asyncio.Task[None]] = {}
        self._waiting: set[str] = set()  # ids of those that wait for the one before
        # With a cache, the blobs hold the versions and manifests and the folder caches them
        # ("Shared storage" in the class docstring).
        self.cache = cache
        self.models_dir = Path(data_dir) / "models"
        self.shared = SharedVersions(cache, self.models_dir, namespace) if cache else None
        self.datasets = datasets
        self.min_confidence = min_confidence
        self._manifests: dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]] = {}
        self._loaded: dict[str, _LoadedModel] = {}
        # Its models leave metrics.LOADED_MODELS with it (an evicted tenant's, once unused).
        weakref.finalize(self, _forget_loaded, self._loaded)
        self._load_locks: dict[str, asyncio.Lock] = {}

    # -- training --------------------------------------------------------------------------

    async def start_training(
        self, dataset: str, on_done: Callable[[Job], Awaitable[None]] | None = None
    ) -> Job:
        """Check the dataset, then queue its training; returns the job at once.

        Trainings of one dataset run one after another. `job.result` is a `TrainResult`.
        On success the new version becomes active; on failure the previous one stays. The
        dataset's files are the task's inputs, so a dataset that can't be trained (one
        label) fails the job with the reason.
        """
        try:
            validate_name(dataset)
            if not await self.datasets.exists_async(dataset):
                raise NotFoundError(f"Dataset '{dataset}' not found.")
        except UserFacingError:
            metrics.TRAININGS.labels(metrics.REFUSED).inc()
            raise
        files = await self.datasets.files_async(dataset)
        job = Job(new_job_id(), "train", f"train:{self.namespace}:{dataset}")
        job.namespace, job.subject = self.namespace, dataset
        payload = {
            "dataset": dataset,
            "files": list(files),
            "max_bytes": self.datasets.max_bytes,
            "max_rows": self.datasets.max_rows,
        }
        await self.tasks.record(job)
        before = self._trainings.get(dataset)
        if before is not None and before.done():
            before = None
        task = asyncio.get_running_loop().create_task(
            self._train(job, payload, files, on_done, before)
        )
        self._trainings[dataset] = task
        self._by_job[job.id] = task
        task.add_done_callback(lambda _: self._by_job.pop(job.id, None))
        if before is not None:
            self._waiting.add(job.id)
        return job

    def queued_behind(self, job: Job) -> bool:
        """Whether a new training waits for another training of its dataset."""
        return job.id in self._waiting

    async def wait(self, job: Job) -> Job:
        """`job` (a training this service started) once it has ended and its on_done ran."""
        task = self._by_job.get(job.id)
        if task is not None:
            await asyncio.wait([task])
        return job

    def busy(self) -> bool:
        """Whether work of this service is under way that a new instance could not take
        over: trainings (waiting for their turn, or for their model, which it then stores)
        and models being loaded or installed. Idle, everything it knows is on disk or in the
        blobs, so dropping it loses nothing (services/tenancy/tenants.py evicts idle ones)."""
        return bool(self._by_job) or any(lock.locked() for lock in self._load_locks.values())

    async def close(self) -> None:
        """Stop waiting for trainings (their rows end as interrupted)."""
        running = list(self._by_job.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def _train(
        self,
        job: Job,
        payload: dict[str, Any],
        files: dict[str, bytes],
        on_done: Callable[[Job], Awaitable[None]] | None,
        before: asyncio.Task[None] | None = None,
    ) -> None:
        if before is not None:  # the previous training of the dataset ends first
            await asyncio.gather(before, return_exceptions=True)
            self._waiting.discard(job.id)
        try:
            result = await self.tasks.run("train", payload, job, inputs=files)
        except Exception as exc:
            log.exception("training job %s failed", job.id)
            job.status, job.error = "failed", short_reason(exc)
            job.finished_at = datetime.now(UTC)
        else:
            if result.ok:
                await self._install(job, result)
        await self.tasks.record(job)
        count_training(job)
        if on_done is not None:
            try:
                await on_done(job)
            except Exception:
                log.exception("on_done callback of job %s failed", job.id)

    async def _install(self, job: Job, result: Any) -> None:
        """Store a trained model as the dataset's next version; the job fails if it can't."""
        try:
            job.result = await self._install_trained(job.subject, result)
            job.summary = job.result.summary()
        except Exception:
            log.exception("storing the model trained by job %s failed", job.id)
            job.status, job.error, job.result = "failed", STORE_FAILED, None

    async def _install_trained(self, dataset: str, result: Any) -> TrainResult:
        fields = dict(result.value["result"])
        data, entry = result.outputs["model"], dict(result.value["entry"])
        if self.shared is not None:
            version = await self._publish(dataset, data, entry)
            stored = (version, datetime.now(UTC)) if version is not None else None
        else:
            stored = await asyncio.to_thread(
                store_version, self.models_dir / dataset, dataset, data, entry
            )
        assert stored is not None
        fields["version"], fields["created_at"] = stored
        self._manifests.pop(dataset, None)
        return TrainResult(**fields)

    async def _publish(
        self, dataset: str, data: bytes, entry: dict[str, Any], *, first_only: bool = False
    ) -> str | None:
        """`SharedVersions.publish`, then the manifest is read again at its next use."""
        assert self.shared is not None
        try:
            return await self.shared.publish(dataset, data, entry, first_only=first_only)
        finally:
            self._manifests.pop(dataset, None)

    # -- answering -------------------------------------------------------------------------

    async def predict(self, dataset: str, text: str) -> Prediction:
        """The reply to one message. `sure` is False below the confidence threshold.

        Raises NoModelError when the dataset has no trained model.
        """
        text = text.strip()
        if not text:
            raise InvalidInputError("There is no text to answer.")
        model = await self._active_model(dataset)
        label, confidence, exact = model.predict(text[:MAX_TEXT_CHARS])
        sure = confidence >= self.min_confidence
        metrics.PREDICTIONS.labels(metrics.SURE if sure else metrics.NOT_SURE).inc()
        return Prediction(label, model.reply_for(label), confidence, sure, exact)

    async def evaluate(
        self, dataset: str, items: Sequence[TestItem], *, as_task: bool = False
    ) -> Evaluation:
        """Predictions for test items; with labels also accuracy, a report and a PNG.

        `as_task` (a test file, up to MAX_TEST_ITEMS): the scoring and the picture are an
        `evaluate` task on the runner (the job pool, or a worker); a few inline items, and a
        model of the first format, are scored here in a thread."""
        if not items:
            raise InvalidInputError("There is nothing to test.")
        model = await self._active_model(dataset)
        if as_task and model.version:
            folder = self.models_dir / dataset
            entry = (await self._manifest(dataset) or {}).get("versions", {}).get(model.version)
            if entry is not None and not _is_format_1(folder, model.version, entry):
                return await self._evaluate_as_task(dataset, model, entry, items)
        return await asyncio.to_thread(_evaluate, model, list(items), self.min_confidence)

    async def _evaluate_as_task(
        self, dataset: str, model: _LoadedModel, entry: dict[str, Any], items: Sequence[TestItem]
    ) -> Evaluation:
        """`!test` scored by a task: the model's bytes and the items go as the job's inputs;
        the task gives back the predictions, the report and the picture."""
        folder = self.models_dir / dataset
        if self.shared is not None:  # the folder is a cache of the blobs: have the file there
            async with self.shared.cache.locked():
                await self.shared.fetch_version(dataset, model.version, entry)
        data = await asyncio.to_thread(_read_verified, folder, dataset, model.version, entry)
        job = Job(new_job_id(), "test", f"test:{self.namespace}:{dataset}")
        job.namespace, job.subject = self.namespace, dataset
        rows = json.dumps([[item.text, item.label] for item in items]).encode()
        payload = {"sha256": model.sha256, "min_confidence": self.min_confidence}
        result = await self.tasks.run(
            "evaluate", payload, job, inputs={"model": data, "items.json": rows}
        )
        raise_failure(result)
        value = result.value
        return Evaluation(
            [Prediction(**p) for p in value["predictions"]],
            value["accuracy"],
            value["report"],
            result.outputs.get("confusion.png"),
            int(value["labeled"]),
        )

    # -- versions --------------------------------------------------------------------------

    async def list_versions(self, dataset: str) -> list[ModelVersion]:
        """Every version of the dataset's model, oldest first, with its metrics."""
        manifest = await self._manifest(dataset)
        if manifest is None:
            return []
        active = manifest.get("active")
        versions = sorted(manifest["versions"].items(), key=lambda kv: _version_number(kv[0]))
        return [_model_version(version, entry, active) for version, entry in versions]

    async def active_version(self, dataset: str) -> ModelVersion | None:
        return next((v for v in await self.list_versions(dataset) if v.active), None)

    async def use_version(self, dataset: str, version: str) -> ModelVersion:
        """Make an earlier (or later) version active: a rollback. Its file is verified first."""
        wanted = version.strip().lower()
        if wanted.isdigit():
            wanted = f"v{wanted}"
        manifest = await self._manifest(dataset)
        if manifest is None or wanted not in manifest["versions"]:
            raise NotFoundError(f"Model version {version.strip()} not found for dataset {dataset}.")
        folder = self.models_dir / dataset
        if self.shared is None:
            await asyncio.to_thread(self._activate, folder, dataset, wanted)
        else:
            await self.shared.activate(dataset, wanted, manifest["versions"][wanted])
        self._manifests.pop(dataset, None)
        log.info("dataset %s now uses model %s", dataset, wanted)
        return next(v for v in await self.list_versions(dataset) if v.version == wanted)

    @staticmethod
    def _activate(folder: Path, dataset: str, version: str) -> None:
        with _manifest_lock(folder):
            manifest = _read_manifest(folder)
            if manifest is None or version not in manifest["versions"]:
                raise NotFoundError(f"Model version {version} not found for dataset {dataset}.")
            _read_verified(folder, dataset, version, manifest["versions"][version])
            manifest["active"] = version
            _write_manifest(folder, manifest)

    # -- loading ---------------------------------------------------------------------------

    async def _manifest(self, dataset: str) -> dict[str, Any] | None:
        """The dataset's manifest, re-read only when the file changed (one stat per call;
        with a cache, one small query first: has another process changed it?)."""
        validate_name(dataset)
        folder = self.models_dir / dataset
        if self.cache is not None:
            async with self.cache.locked():
                await self.cache.fetch(f"{MODELS_DIR}/{dataset}/{MANIFEST_NAME}")
        key = file_stamp(folder / MANIFEST_NAME)
        cached = self._manifests.get(dataset)
        if cached is not None and cached[0] == key:
            return cached[1]
        manifest = await asyncio.to_thread(_read_manifest, folder) if key else None
        self._manifests[dataset] = (key, manifest)
        return manifest

    async def _active_model(self, dataset: str) -> _LoadedModel:
        manifest = await self._manifest(dataset)
        version = manifest.get("active") if manifest else None
        if (manifest is None or version is None) and await self._install_sample(dataset):
            manifest = await self._manifest(dataset)
            version = manifest.get("active") if manifest else None
        if manifest is None or version is None:
            raise NoModelError(
                f"No model is trained for dataset {dataset} yet. "
                f"An admin can run `!train {dataset}`."
            )
        entry = manifest["versions"][version]
        sha256 = entry["sha256"]
        model = self._loaded.get(dataset)
        if model is not None and model.version == version and model.sha256 == sha256:
            return model
        lock = self._load_locks.setdefault(dataset, asyncio.Lock())
        async with lock:
            model = self._loaded.get(dataset)
            if model is None or model.version != version or model.sha256 != sha256:
                folder = self.models_dir / dataset
                if self.shared is not None:
                    async with self.shared.cache.locked():
                        await self.shared.fetch_version(dataset, version, entry)
                converted = None
                if _is_format_1(folder, version, entry):  # unpickled in a worker, not here
                    converted = await self.jobs.run(
                        "load", f"load:{self.namespace}:{dataset}", format_1_as_arrays,
                        folder, dataset, version, entry,
                    )  # fmt: skip
                model = await asyncio.to_thread(
                    _load_model, folder, dataset, version, entry, converted
                )
                if dataset not in self._loaded:  # counted until this service goes
                    metrics.LOADED_MODELS.inc()
                self._loaded[dataset] = model
        return model

    async def _install_sample(self, dataset: str) -> bool:
        """A sample dataset without a model here gets its own copy of the shipped model
        (`samples.install`); True if it now has one."""
        if self.datasets.samples_dir is None:
            return False
        lock = self._load_locks.setdefault(dataset, asyncio.Lock())
        if self.cache is None:
            async with lock:
                return await asyncio.to_thread(
                    samples.install, self.datasets, self.models_dir, dataset
                )
        await self.datasets.refresh()  # its corrections may have been made elsewhere
        async with lock:
            shipped = await asyncio.to_thread(samples.shipped_version, self.datasets, dataset)
            if shipped is None:
                return False
            version = await self._publish(dataset, *shipped, first_only=True)
            if version is not None:
                log.info("installed the shipped model of sample %s as %s", dataset, version)
            return True
