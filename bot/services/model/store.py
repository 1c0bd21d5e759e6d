"""The versioned model store in a folder: the manifest, its versions, and reading one back.

Store: `<data_dir>/models/<dataset>/v1.npz, v2.npz, ...` and `manifest.json`, which records
for each version its file, format, the dataset hash, metrics, creation time, row and label
counts, duration and the sha256 of the file, and which version is active. Files and the
manifest are written atomically; the manifest's read-modify-write is guarded by a file lock
because the worker (new versions) and the bot (`use_version`) both write it.

A model file is loaded only when the sha256 of its bytes equals the one recorded when this
service wrote it, and the bytes that were hashed are the bytes that are loaded. Format-2 files
are read with `allow_pickle=False`, so reading one never runs code. Versions made before
format 2 are `vN.joblib` pickles of vocabularies (format 1): they still load, through the
same sha256 check, and are turned into arrays by a worker process when they load.

In shared storage (the blobs of services/files/blobcache.py) `ModelService` (service.py) records
versions in the manifest of the blobs with a compare-and-swap; the folder is then their cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import UserFacingError
from bot.services.common.fs import atomic_write
from bot.services.model.artifact import MODEL_FORMAT, _hashed, artifact_bytes, read_artifact

try:
    import fcntl
except ImportError:  # not on Windows: the manifest lock is then a no-op
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from bot.services.model.scorer import _LoadedModel

log = logging.getLogger(__name__)

MODEL_SUFFIX = ".npz"
MANIFEST_NAME = "manifest.json"
_VERSION = re.compile(r"v([1-9][0-9]{0,5})")
_MODEL_FILE = re.compile(r"v([1-9][0-9]{0,5})\.(?:npz|joblib)")


class ModelIntegrityError(UserFacingError):
    """A model file does not match the manifest (tampered, truncated or foreign)."""


@dataclass(frozen=True)
class ModelVersion:
    version: str
    active: bool
    created_at: datetime
    rows: int
    labels: int
    accuracy: float | None
    macro_f1: float | None
    folds: int
    duration_seconds: float
    dataset_hash: str
    sha256: str


def store_version(
    folder: Path, dataset: str, data: bytes, entry: dict[str, Any], *, first_only: bool = False
) -> tuple[str, datetime] | None:
    """Write `data` as the next version of the model in `folder`, record it (its file, format,
    sha256 and creation time, with `entry`) in the manifest and make it active; returns
    (version, creation time). With `first_only`, only when there is no version yet (else
    None: another training or install came first)."""
    with _manifest_lock(folder):
        manifest = _read_manifest(folder) or _new_manifest(dataset)
        if first_only and manifest["versions"]:
            return None
        version = _next_version(manifest, folder)
        recorded = _version_entry(version, hashlib.sha256(data).hexdigest(), entry)
        atomic_write(folder / recorded["file"], data)
        manifest["versions"][version] = recorded
        manifest["active"] = version
        _write_manifest(folder, manifest)
    return version, datetime.fromisoformat(recorded["created_at"])


# What `_version_entry` records itself; the rest of an entry comes from the training.
_OWN_FIELDS = ("file", "format", "sha256", "created_at")


def _version_entry(version: str, sha256: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A manifest entry: the version's file, format, sha256 and creation time, then `entry`."""
    return {
        "file": f"{version}{MODEL_SUFFIX}",
        "format": MODEL_FORMAT,
        "sha256": sha256,
        "created_at": datetime.now(UTC).isoformat(),
        **{key: value for key, value in entry.items() if key not in _OWN_FIELDS},
    }


# -- manifest ------------------------------------------------------------------------------


def _new_manifest(dataset: str) -> dict[str, Any]:
    return {"format": MODEL_FORMAT, "dataset": dataset, "active": None, "versions": {}}


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest, or None if there is none; an unreadable one is logged and ignored."""
    path = folder / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("ignoring unreadable model manifest %s: %s", path, exc)
        return None
    return _parse_manifest(data, path)


def _parse_manifest(data: bytes, where: object) -> dict[str, Any] | None:
    """A manifest from its bytes; None (logged) when they are not one."""
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        log.warning("ignoring unreadable model manifest %s: %s", where, exc)
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("versions"), dict):
        log.warning("ignoring malformed model manifest %s", where)
        return None
    manifest["versions"] = {
        version: entry
        for version, entry in manifest["versions"].items()
        if _VERSION.fullmatch(str(version)) and isinstance(entry, dict) and entry.get("sha256")
    }
    if manifest.get("active") not in manifest["versions"]:
        manifest["active"] = None
    return manifest


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2).encode("utf-8")


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write(folder / MANIFEST_NAME, _manifest_bytes(manifest))


@contextmanager
def _manifest_lock(folder: Path) -> Iterator[None]:
    """Serialise manifest updates between the bot and worker processes."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".manifest.lock", "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _version_number(version: str) -> int:
    match = _VERSION.fullmatch(version)
    return int(match.group(1)) if match else 0


def _next_version(manifest: dict[str, Any], folder: Path) -> str:
    """One more than any version recorded or on disk (a crash may leave an unrecorded file)."""
    numbers = [_version_number(v) for v in manifest["versions"]]
    numbers += [int(m.group(1)) for p in folder.iterdir() if (m := _MODEL_FILE.fullmatch(p.name))]
    return f"v{max(numbers, default=0) + 1}"


def _model_version(version: str, entry: dict[str, Any], active: str | None) -> ModelVersion:
    metrics = entry.get("metrics") or {}
    return ModelVersion(
        version=version,
        active=version == active,
        created_at=datetime.fromisoformat(entry["created_at"]),
        rows=int(entry.get("rows", 0)),
        labels=int(entry.get("labels", 0)),
        accuracy=metrics.get("accuracy"),
        macro_f1=metrics.get("macro_f1"),
        folds=int(metrics.get("folds", 0)),
        duration_seconds=float(entry.get("duration_seconds", 0.0)),
        dataset_hash=str(entry.get("dataset_hash", "")),
        sha256=str(entry["sha256"]),
    )


# -- reading a version ---------------------------------------------------------------------


def _model_path(folder: Path, version: str, entry: dict[str, Any]) -> Path:
    """The file of a manifest entry: `vN.npz`, or `vN.joblib` (format 1, older versions)."""
    name = str(entry.get("file") or f"{version}.joblib")
    match = _MODEL_FILE.fullmatch(name)
    if match is None or f"v{match.group(1)}" != version:
        raise ModelIntegrityError(f"The model file of {version} is not named as it should be.")
    return folder / name


def _read_verified(folder: Path, dataset: str, version: str, entry: dict[str, Any]) -> bytes:
    path = _model_path(folder, version, entry)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        log.warning("model file %s is missing", path)
        raise ModelIntegrityError(
            f"The model file of dataset {dataset} ({version}) is missing. "
            f"An admin can run `!train {dataset}` to train a new one."
        ) from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        log.warning("refusing to load %s: its sha256 does not match the manifest", path)
        raise ModelIntegrityError(
            f"The model file of dataset {dataset} ({version}) does not match its record, so it "
            f"was not loaded. An admin can run `!train {dataset}` to train a new one."
        )
    return data


def _is_format_1(folder: Path, version: str, entry: dict[str, Any]) -> bool:
    return _model_path(folder, version, entry).suffix == ".joblib"


def _load_model(
    folder: Path, dataset: str, version: str, entry: dict[str, Any], data: bytes | None = None
) -> _LoadedModel:
    """Read, verify and load one version (format 2), or load `data`, the format-2 bytes a
    worker made of a format-1 version (`format_1_as_arrays`). Blocking; the bytes that were
    hashed are the bytes that are loaded."""
    if data is None:
        data = _read_verified(folder, dataset, version, entry)
    started = time.perf_counter()
    try:
        model = read_artifact(data)
    except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile) as exc:
        log.warning("model %s %s can't be read: %s", dataset, version, exc)
        raise _unusable(dataset, version) from None
    model.version, model.sha256 = version, entry["sha256"]
    log.info("loaded model %s %s in %.3f s", dataset, version, time.perf_counter() - started)
    return model


def format_1_as_arrays(folder: Path, dataset: str, version: str, entry: dict[str, Any]) -> bytes:
    """A format-1 version (a joblib pickle of vocabularies that an older version of the bot
    wrote) read, verified and turned into the bytes of a format-2 file. Meant for a worker
    process: unpickling a large vocabulary holds the GIL for tens of milliseconds."""
    import joblib

    data = _read_verified(folder, dataset, version, entry)
    try:
        artifact = joblib.load(io.BytesIO(data))
        if not isinstance(artifact, dict) or artifact.get("format") != 1:
            raise ValueError("not a model file of format 1")
        meta = {
            "dataset": dataset,
            "replies": artifact["replies"],
            "exact": artifact["exact"],
            "sklearn_version": artifact.get("sklearn_version"),
        }
        return artifact_bytes(_hashed(artifact["model"]), meta)
    except (KeyError, TypeError, ValueError, EOFError) as exc:
        log.warning("model %s %s can't be read: %s", dataset, version, exc)
        raise _unusable(dataset, version) from None


def _unusable(dataset: str, version: str) -> ModelIntegrityError:
    return ModelIntegrityError(
        f"The model of dataset {dataset} ({version}) can't be used (it was made by another "
        f"version of the bot). An admin can run `!train {dataset}` to train a new one."
    )
