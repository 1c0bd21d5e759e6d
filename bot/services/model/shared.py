"""A namespace's model versions in shared storage: the blobs, with the folder as their cache.

`SharedVersions` is `ModelService`'s side of the blobs ("Shared storage" in its docstring):
a new version is a blob that only the first writer of its name gets, recorded in the manifest
with a compare-and-swap (`publish`, `publish_staged`); a rollback swaps the manifest the same
way (`activate`); `fetch_version` has a version's file in the cache with the sha256 that the
manifest records. Other processes doing the same at the same time lose nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import NotFoundError
from bot.services.model.store import (
    MANIFEST_NAME,
    _manifest_bytes,
    _model_path,
    _new_manifest,
    _parse_manifest,
    _read_manifest,
    _read_verified,
    _version_entry,
    _version_number,
)
from bot.services.model.training_run import TrainResult

if TYPE_CHECKING:
    from bot.services.files.blobcache import BlobCache

log = logging.getLogger(__name__)

MODELS_DIR = "models"
# Writers of one manifest in other processes: how often to re-read it and try again.
MANIFEST_TRIES = 20


class SharedVersions:
    """The versions and manifests of one namespace's models in its blobs (`cache`), cached
    in `models_dir`. Callers drop what they remember of a manifest after a change."""

    def __init__(self, cache: BlobCache, models_dir: Path, namespace: str | None) -> None:
        self.cache = cache
        self.models_dir = models_dir
        self.namespace = namespace

    async def publish(
        self, dataset: str, data: bytes, entry: dict[str, Any], *, first_only: bool = False
    ) -> str | None:
        """Store `data` as the next version of the dataset's model in the blobs, record it in
        the manifest and make it active; the version, or None with `first_only` when the
        manifest already has one. Safe against other processes doing the same."""
        sha256 = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        folder = f"{MODELS_DIR}/{dataset}"
        taken: set[int] = set()
        async with self.cache.locked():
            for _ in range(MANIFEST_TRIES):
                manifest, manifest_sha = await self.manifest(dataset)
                if first_only and manifest["versions"]:
                    return None
                numbers = {_version_number(v) for v in manifest["versions"]} | taken
                version = f"v{max(numbers, default=0) + 1}"
                recorded = _version_entry(version, sha256, entry)
                if not await self.cache.put_if(f"{folder}/{recorded['file']}", data, None):
                    taken.add(_version_number(version))  # a file nobody recorded: skip it
                    continue
                manifest["versions"][version] = recorded
                manifest["active"] = version
                path = f"{folder}/{MANIFEST_NAME}"
                if await self.cache.put_if(path, _manifest_bytes(manifest), manifest_sha):
                    return version
                taken.add(_version_number(version))
        raise RuntimeError(f"the manifest of {dataset} kept changing; gave up")

    async def manifest(self, dataset: str) -> tuple[dict[str, Any], str | None]:
        """The manifest in the blobs (a new one if there is none) and its sha256, for a
        compare-and-swap. Under the cache's lock."""
        path = f"{MODELS_DIR}/{dataset}/{MANIFEST_NAME}"
        found = await self.cache.read(path)
        if found is None:
            return _new_manifest(dataset), None
        manifest = _parse_manifest(found[0], f"{self.namespace}/{path}")
        return manifest or _new_manifest(dataset), found[1]

    async def publish_staged(self, dataset: str, staged: Path, result: TrainResult) -> TrainResult:
        """Store the version a training wrote into its private folder `staged` (checked
        against the manifest there) as the next version in the blobs; the result renumbered."""
        folder = staged / dataset
        manifest = await asyncio.to_thread(_read_manifest, folder)
        if manifest is None or result.version not in manifest["versions"]:
            raise RuntimeError("the training left no model version")
        entry = manifest["versions"][result.version]
        data = await asyncio.to_thread(_read_verified, folder, dataset, result.version, entry)
        version = await self.publish(dataset, data, entry)
        assert version is not None
        log.info("dataset %s: stored trained model %s in the blobs", dataset, version)
        return dataclasses.replace(result, version=version)

    async def activate(self, dataset: str, version: str, entry: dict[str, Any]) -> None:
        """Verify the version's file (fetched if need be), then make it the active one in the
        manifest of the blobs, with a compare-and-swap."""
        folder = self.models_dir / dataset
        path = f"{MODELS_DIR}/{dataset}/{MANIFEST_NAME}"
        async with self.cache.locked():
            await self.fetch_version(dataset, version, entry)
            await asyncio.to_thread(_read_verified, folder, dataset, version, entry)
            for _ in range(MANIFEST_TRIES):
                manifest, manifest_sha = await self.manifest(dataset)
                if manifest["versions"].get(version, {}).get("sha256") != entry["sha256"]:
                    raise NotFoundError(f"Model version {version} not found for dataset {dataset}.")
                manifest["active"] = version
                if await self.cache.put_if(path, _manifest_bytes(manifest), manifest_sha):
                    return
        raise RuntimeError(f"the manifest of {dataset} kept changing; gave up")

    async def fetch_version(self, dataset: str, version: str, entry: dict[str, Any]) -> None:
        """Have the version's file in the cache with the sha256 the manifest records (a
        missing or corrupt copy is fetched again). Under the cache's lock."""
        name = _model_path(self.models_dir / dataset, version, entry).name
        await self.cache.fetch(f"{MODELS_DIR}/{dataset}/{name}", str(entry["sha256"]))
