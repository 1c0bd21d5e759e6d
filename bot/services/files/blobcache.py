"""One namespace's files, kept in the database's blobs and cached in its local folder.

The `blobs` table (storage/blobs.py) is the source of truth for the bytes of a namespace's
datasets, model versions, manifests and archives; `DATA_DIR/servers/<namespace>/` is a cache
of them, so every process of the bot, on any machine, sees the same files:

- A write goes to the blobs first and then to the cache (`put`, `push`), so what a user was
  told is saved survives the process dying right after, and is what the other processes read.
- A read first makes the cached copy match its blob (`fetch`, `refresh`): one small query for
  the blob's sha256, compared with the sha256 of the cached file (hashed in a thread, and again
  only when the file's size, time or inode change). A file that is missing or differs (changed
  by another process, or corrupt) is fetched again, its sha256 checked, and written atomically.
- A file in the folder without a blob is either one this process saw in the blobs (same
  sha256), so another process deleted it: it is deleted here too; or one that came from
  elsewhere (an install from before the blobs, a file an operator put there by hand): it is
  uploaded (`adopt` does that for the whole folder at start). A process that was down while
  another deleted a file it had cached uploads it again: the only deletion today is a dataset
  replaced in another format, whose CSV is read first anyway.

Blob paths are relative to the namespace folder ("datasets/smalltalk.csv") and pass the same
rules as a user's path (`paths.path_parts`); hidden names (temporary files, locks, a
training's private folder) are never uploaded. Callers hold one lock per namespace
(`locked()`) around what reads or writes the cache, so a refresh never sees a write of this
process half done.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.errors import InvalidInputError
from bot.services.common.fs import atomic_write, file_stamp
from bot.services.files.paths import PATH_REFUSED, path_parts
from bot.services.storage.blobs import BlobCorruptError, BlobInfo, BlobStore

log = logging.getLogger(__name__)


def blob_path(path: str) -> str:
    """The canonical form ("a/b.csv") of a path inside a namespace; InvalidInputError for a
    path that the file rules refuse (traversal, absolute, hidden, the database, ...)."""
    return "/".join(path_parts(path))


def _sha256_of(path: Path) -> str | None:
    """The sha256 of a regular file; None for anything else (opened without following a
    symlink or blocking on a FIFO)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _local_files(folder: Path, prefix: str) -> list[str]:
    """Relative paths of the regular, non-hidden files under folder/prefix (no symlinks)."""
    start = folder.joinpath(*prefix.split("/")) if prefix else folder
    found = []
    if not start.is_dir() or start.is_symlink():
        return found
    for dirpath, dirnames, filenames in os.walk(start):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        here = Path(dirpath)
        for name in filenames:
            path = here / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            relative = path.relative_to(folder).as_posix()
            if relative.startswith(prefix):
                found.append(relative)
    return sorted(found)


class BlobCache:
    """The files of `namespace` in `blobs`, cached in `folder`."""

    def __init__(self, blobs: BlobStore, namespace: str, folder: Path) -> None:
        self.blobs = blobs
        self.namespace = namespace
        self.folder = Path(folder)
        self._hashes: dict[str, tuple[tuple[Any, ...], str | None]] = {}
        self._lock = asyncio.Lock()
        self._adopted = False
        # path -> the sha256 that the blob and the cached file had when last seen equal
        self._synced: dict[str, str] = {}

    # -- paths and the local side ----------------------------------------------------------

    def local(self, path: str) -> Path:
        """The cache file of a blob path, checked to stay inside the namespace folder."""
        parts = path_parts(path)
        root = self.folder.resolve()
        target = self.folder.joinpath(*parts)
        try:
            real = target.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            raise InvalidInputError(PATH_REFUSED) from None
        if not real.is_relative_to(root) or real == root:
            raise InvalidInputError(PATH_REFUSED)
        path_parts(real.relative_to(root).as_posix())  # a symlink to the database, .env, ...
        return target

    def _allowed(self, path: str) -> bool:
        """Whether a file found in the folder may be a blob (the database file and anything
        the path rules refuse are never uploaded nor deleted)."""
        try:
            return blob_path(path) == path and self.local(path) is not None
        except InvalidInputError:
            return False

    async def local_sha256(self, path: str) -> str | None:
        """The sha256 of the cached file, None when there is none (hashed in a thread; kept
        until the file changes)."""
        target = self.local(path)
        stamp = await asyncio.to_thread(file_stamp, target)
        known = self._hashes.get(path)
        if known is not None and known[0] == stamp:
            return known[1]
        sha = await asyncio.to_thread(_sha256_of, target) if stamp else None
        self._hashes[path] = (stamp, sha)
        return sha

    async def _write_local(self, path: str, data: bytes) -> None:
        target = self.local(path)
        await asyncio.to_thread(atomic_write, target, data)
        self._hashes.pop(path, None)
        self._synced[path] = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())

    async def _remove_local(self, path: str) -> None:
        target = self.local(path)
        await asyncio.to_thread(target.unlink, missing_ok=True)
        self._hashes.pop(path, None)
        self._synced.pop(path, None)
        log.info("removed %s/%s from the cache: its blob is gone", self.namespace, path)

    async def _without_blob(self, path: str) -> bool:
        """A cached file has no blob: delete it if this process saw it in the blobs (deleted
        elsewhere), else upload it (it came from elsewhere). True if it was uploaded."""
        sha = await self.local_sha256(path)
        if sha is None:
            return False
        if self._synced.get(path) == sha:
            await self._remove_local(path)
            return False
        await self.push(path)
        log.info("uploaded %s/%s, found only in the folder", self.namespace, path)
        return True

    # -- the lock and adoption -------------------------------------------------------------

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Hold the namespace's cache lock (not re-entrant); adopts an older install first."""
        async with self._lock:
            await self._adopt()
            yield

    def busy(self) -> bool:
        """Whether someone holds the namespace's cache lock (a read or write of the cache is
        under way; another instance would have a lock of its own)."""
        return self._lock.locked()

    async def adopt(self) -> int:
        """Upload the local files that have no blob, once per folder; how many were."""
        async with self._lock:
            return await self._adopt()

    async def _adopt(self) -> int:
        if self._adopted:
            return 0
        stored = {info.path for info in await self.blobs.list(self.namespace)}
        uploaded = 0
        for path in await asyncio.to_thread(_local_files, self.folder, ""):
            if path not in stored and self._allowed(path):
                uploaded += await self._without_blob(path)
        self._adopted = True
        return uploaded

    # -- writes ----------------------------------------------------------------------------

    async def put(self, path: str, data: bytes) -> None:
        """Store `data` at `path`: the blob, then the cache. Call under `locked()`."""
        path = blob_path(path)
        await self.blobs.put(self.namespace, path, data)
        await self._write_local(path, data)

    async def put_if(self, path: str, data: bytes, expected_sha256: str | None) -> bool:
        """`put` only if the blob's sha256 is still `expected_sha256` (None: only if there is
        no blob yet); False, with nothing written, when another process got there first."""
        path = blob_path(path)
        if await self.blobs.put_if(self.namespace, path, data, expected_sha256) is None:
            return False
        await self._write_local(path, data)
        return True

    async def push(self, path: str) -> None:
        """Store the cached file at `path` (just written there) as its blob. Under `locked()`."""
        path = blob_path(path)
        data = await asyncio.to_thread(self.local(path).read_bytes)
        info = await self.blobs.put(self.namespace, path, data)
        self._synced[path] = info.sha256

    async def remove(self, path: str) -> None:
        """Delete the blob and the cached file. Under `locked()`."""
        path = blob_path(path)
        await self.blobs.delete(self.namespace, path)
        await asyncio.to_thread(self.local(path).unlink, missing_ok=True)
        self._hashes.pop(path, None)
        self._synced.pop(path, None)

    # -- reads -----------------------------------------------------------------------------

    async def read(self, path: str) -> tuple[bytes, str] | None:
        """The blob's bytes and sha256 (None if there is none), the cache made to match."""
        path = blob_path(path)
        data = await self.blobs.get(self.namespace, path)
        if data is None:
            return None
        sha = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        if await self.local_sha256(path) != sha:
            await self._write_local(path, data)
        self._synced[path] = sha
        return data, sha

    async def fetch(self, path: str, expected_sha256: str | None = None) -> bool:
        """Make the cached file match its blob (one small query when it already does); True
        if there is one. With `expected_sha256` (a manifest's record), a cached file with that
        sha256 is used without asking the database."""
        path = blob_path(path)
        if expected_sha256 is not None and await self.local_sha256(path) == expected_sha256:
            return True
        info = await self.blobs.info(self.namespace, path)
        if info is None:
            return self._allowed(path) and await self._without_blob(path)
        await self._match(info)
        return True

    async def refresh(self, prefix: str = "") -> list[BlobInfo]:
        """Make the cache under `prefix` ("datasets/") match the blobs: fetch what is missing
        or differs, delete what has no blob. Returns the blobs (one query for the listing)."""
        if prefix:
            blob_path(prefix.rstrip("/"))
        listed = await self.blobs.list(self.namespace, prefix)
        infos = []
        for info in listed:
            try:
                if info.path != blob_path(info.path):
                    raise InvalidInputError(PATH_REFUSED)
                self.local(info.path)
            except InvalidInputError:
                log.warning("ignoring blob %s/%r: not a valid path", self.namespace, info.path)
                continue
            infos.append(info)
            await self._match(info)
        stored = {info.path for info in infos}
        for path in await asyncio.to_thread(_local_files, self.folder, prefix):
            if path not in stored and self._allowed(path):
                await self._without_blob(path)
        return infos

    async def _match(self, info: BlobInfo) -> None:
        if await self.local_sha256(info.path) == info.sha256:
            self._synced[info.path] = info.sha256
            return
        try:
            data = await self.blobs.get(self.namespace, info.path)
        except BlobCorruptError:
            log.error("blob %s/%s does not match its sha256; not cached", self.namespace, info.path)
            return
        if data is None:
            return
        await self._write_local(info.path, data)
        log.info("fetched %s/%s into the cache", self.namespace, info.path)
