"""Namespaces: each server's data is its own.

Every server the bot is in, and every user who talks to it in DMs, has a *namespace*: a folder
`DATA_DIR/servers/<namespace>/` with its own datasets, models (versions, manifests, sha256)
and archives, and the rows of the database tagged with the same name. A namespace is

- a server's id (`"1100000000000000001"`),
- `"dm-<user id>"` for one user's direct messages, or
- `"legacy"` for what an older install kept that belongs to no known server.

`Tenants` hands out the services of one namespace (`tenants.get(ns).datasets`, `.models`,
`.files`), each confined to that namespace's folder. Given the database's blobs, the folder is
only a cache: the bytes live in the blobs, where every process of the bot reaches them
(services/files/blobcache.py), and `adopt_local_files` uploads an older install's files once.

`Tenants` keeps the services of at most `MAX_CACHED_SERVERS` namespaces, least recently used
first out, so that a bot in thousands of servers does not keep every model it ever loaded.
Only an idle tenant is dropped (`Tenant.busy`); everything it knew is on disk or in the
database, so the namespace's next message builds fresh services that read the same data
(and reload its model). A dropped tenant whose services are still in use somewhere (a command
that got them just before) is handed back rather than built twice (`Tenants._build`).

The one exception is the shipped sample datasets (`bot/samples/`), which every namespace can
read but none can change (never copied into the blobs); each namespace trains its own model
of them.

`migrate_files` moves an older install's shared `datasets/`, `models/` and `archives/` into
the namespace chosen by the database migration (the only server the install knew, else
`legacy`). Each entry moves with one atomic rename, so a crash in the middle leaves every
entry in one place or the other, and the next start finishes the move.
"""

from __future__ import annotations

import filecmp
import logging
import os
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import metrics
from bot.services.files.blobcache import BlobCache
from bot.services.files.service import FileService
from bot.services.model.datasets.store import DatasetStore
from bot.services.model.service import ModelService
from bot.services.storage.blobs import BlobStore
from bot.services.tasks.jobs import JobRunner
from bot.services.tenancy.namespaces import LEGACY, known_namespaces, namespace_dir

if TYPE_CHECKING:
    from bot.services.tasks.base import Runner

log = logging.getLogger(__name__)

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
# Folders of the shared layout that namespaces replace, in the order they are moved.
SHARED_FOLDERS = ("datasets", "models", "archives")
# A tenant's services by attribute: what an evicted tenant leaves behind while in use.
PARTS = ("models", "datasets", "files", "cache")


@dataclass
class Tenant:
    """The services of one namespace."""

    namespace: str
    datasets: DatasetStore
    models: ModelService
    files: FileService
    cache: BlobCache | None = None

    def busy(self) -> bool:
        """Whether work of the namespace is under way in these services: trainings queued,
        running or waiting for a worker, a model loading, a write holding its lock. Such
        work relies on this instance (its locks, its tasks), so it must not be dropped."""
        parts = (self.models, self.datasets, self.files, self.cache)
        return any(part is not None and part.busy() for part in parts)


@dataclass
class TenantLimits:
    train_max_bytes: int
    train_max_rows: int
    max_upload_bytes: int
    min_confidence: float


@dataclass
class Tenants:
    """Builds and keeps the services of each namespace (cheap until used).

    With `blobs` (the database's, `storage.blobs`), each namespace's folder caches its blobs;
    without, the folder is all there is (one process, one disk).

    At most `max_cached` tenants are kept (None: all), least recently used out first, and
    only idle ones (`Tenant.busy`): a busy tenant stays, past the bound if need be, until a
    later `get` finds it idle."""

    data_dir: Path
    jobs: JobRunner
    limits: TenantLimits
    samples_dir: Path = SAMPLES
    tasks: Runner | None = None  # the bot's task runner; None: each its own LocalRunner
    blobs: BlobStore | None = None
    max_cached: int | None = None
    _tenants: OrderedDict[str, Tenant] = field(default_factory=OrderedDict)
    # The services of evicted tenants, while something still uses them (see `_build`).
    _in_use: weakref.WeakValueDictionary[tuple[str, str], Any] = field(
        default_factory=weakref.WeakValueDictionary
    )

    def __post_init__(self) -> None:
        if self.max_cached is not None and self.max_cached < 1:
            raise ValueError("max_cached must be at least 1")

    def get(self, namespace: str) -> Tenant:
        """The services of `namespace`, now its most recently used."""
        tenant = self._tenants.get(namespace)
        if tenant is None:
            tenant = self._tenants[namespace] = self._build(namespace)
            metrics.CACHED_TENANTS.inc()
        else:
            self._tenants.move_to_end(namespace)
        self._evict_idle(keep=namespace)
        return tenant

    def peek(self, namespace: str) -> Tenant:
        """The services of `namespace` for a look across namespaces (an owner's `all` view):
        the kept ones if cached, else new ones that are not kept, so that one look at every
        server does not push the active servers out of the cache."""
        tenant = self._tenants.get(namespace)
        if tenant is None:
            tenant = self._build(namespace)
            self._remember(tenant)
        return tenant

    def cached(self) -> list[str]:
        """The namespaces whose services are kept, least recently used first."""
        return list(self._tenants)

    def _build(self, namespace: str) -> Tenant:
        """New services for `namespace`, confined to its folder (and its blobs).

        Services of an evicted tenant that are still in use (a coroutine that got them
        before the eviction and awaits a thread or the database) are taken back instead of
        built again: two instances of one namespace's services would each have their own
        locks, and two writers of one corrections file could lose a correction."""
        left = {role: self._in_use.pop((namespace, role), None) for role in PARTS}
        models, files = left["models"], left["files"]
        datasets = models.datasets if models is not None else left["datasets"]
        users = [part for part in (models, datasets, files) if part is not None]
        cache = users[0].cache if users else left["cache"]
        folder = namespace_dir(self.data_dir, namespace)
        if cache is None and self.blobs is not None:
            cache = BlobCache(self.blobs, namespace, folder)
        if datasets is None:
            datasets = DatasetStore(
                folder,
                self.limits.train_max_bytes,
                self.limits.train_max_rows,
                samples_dir=self.samples_dir,
                cache=cache,
            )
        if models is None:
            models = ModelService(
                folder,
                datasets,
                self.jobs,
                self.limits.min_confidence,
                namespace=namespace,
                tasks=self.tasks,
                cache=cache,
            )
        if files is None:
            files = FileService(
                folder, self.limits.max_upload_bytes, samples_dir=self.samples_dir, cache=cache
            )
        return Tenant(namespace, datasets, models, files, cache)

    def _evict_idle(self, keep: str) -> None:
        """Drop the least recently used idle tenants while more than `max_cached` are kept;
        never `keep` (the one just asked for) nor a busy one."""
        if self.max_cached is None:
            return
        excess = len(self._tenants) - self.max_cached
        idle: list[str] = []
        for namespace, tenant in self._tenants.items():
            if len(idle) >= excess:
                break
            if namespace != keep and not tenant.busy():
                idle.append(namespace)
        for namespace in idle:
            self._remember(self._tenants.pop(namespace))
            metrics.CACHED_TENANTS.dec()
            log.debug("evicted the idle services of namespace %s (least recently used)", namespace)

    def _remember(self, tenant: Tenant) -> None:
        """Keep an uncached tenant's services weakly: handed back while still in use."""
        for role in PARTS:
            part = getattr(tenant, role)
            if part is not None:
                self._in_use[(tenant.namespace, role)] = part

    async def close(self) -> None:
        """Stop what the namespaces' services wait for (trainings on workers), those of
        evicted tenants still in use too."""
        for tenant in self._tenants.values():
            await tenant.models.close()
        for (_, role), part in list(self._in_use.items()):
            if role == "models":
                await part.close()

    def namespaces(self) -> list[str]:
        """Every namespace with data, for an owner's bot-wide view."""
        return known_namespaces(self.data_dir)


async def adopt_local_files(blobs: BlobStore, data_dir: Path) -> int:
    """Upload the files of every namespace folder that have no blob yet (an install from
    before the blobs); once per folder (a marker file records it). Returns how many."""
    uploaded = 0
    for namespace in known_namespaces(data_dir):
        folder = namespace_dir(data_dir, namespace)
        uploaded += await BlobCache(blobs, namespace, folder).adopt()
    return uploaded


# -- moving an older install's shared folders into a namespace -----------------------------


def migrate_files(data_dir: Path, target: str, samples_dir: Path = SAMPLES) -> int:
    """Move `DATA_DIR/{datasets,models,archives}/*` into `servers/<target>/`; return how many
    entries moved. Idempotent: entries already moved are gone from the old folders.

    A dataset file identical to the shipped sample of the same name is the copy older
    versions installed: it is removed rather than moved (the sample stays readable). An entry
    whose name is taken in the target goes to `legacy` (or gets a `-migrated-N` suffix there).
    """
    data_dir = Path(data_dir)
    moved = 0
    for folder_name in SHARED_FOLDERS:
        old = data_dir / folder_name
        if not old.is_dir() or old.is_symlink():
            continue
        for entry in sorted(old.iterdir()):
            if entry.name.startswith("."):  # temp files of interrupted writes
                _remove(entry)
                continue
            if folder_name == "datasets" and _is_sample_copy(entry, samples_dir):
                entry.unlink()
                log.info("removed the old copy of sample dataset %s", entry.name)
                continue
            destination = _free_destination(data_dir, target, folder_name, entry.name)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.rename(entry, destination)
            moved += 1
            log.info("moved %s/%s to %s", folder_name, entry.name, destination.parent)
        _remove_if_empty(old)
    return moved


def _is_sample_copy(entry: Path, samples_dir: Path) -> bool:
    sample = samples_dir / entry.name
    return entry.is_file() and sample.is_file() and filecmp.cmp(entry, sample, shallow=False)


def _free_destination(data_dir: Path, target: str, folder_name: str, name: str) -> Path:
    candidate = namespace_dir(data_dir, target) / folder_name / name
    if not candidate.exists():
        return candidate
    legacy = namespace_dir(data_dir, LEGACY) / folder_name
    stem, dot, suffix = name.partition(".")
    n = 1
    candidate = legacy / name
    while candidate.exists():
        n += 1
        candidate = legacy / f"{stem}-migrated-{n}{dot}{suffix}"
    return candidate


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        for child in entry.iterdir():
            _remove(child)
        entry.rmdir()
    else:
        entry.unlink(missing_ok=True)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        log.warning("%s is not empty after the migration; left in place", folder)
