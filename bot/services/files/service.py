"""Files under DATA_DIR that users may fetch or archive, and nothing else.

`FileService.resolve` is the one path check; `read_for_upload` and `archive` both go
through it. Every refusal gives the same message, so the reply never tells a user what
exists on the host or why exactly a path was refused.

Paths are checked twice: first as text (traversal, absolute and Windows forms, URL-encoded
and Unicode look-alike spellings, control characters, hidden names, the database), then
after resolving symlinks (the real target must still be inside DATA_DIR and pass the same
name rules). Files are opened with O_NOFOLLOW and O_NONBLOCK and checked with fstat, so a
symlink or a FIFO swapped in after the check is still refused and never blocks a thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from bot.errors import InvalidInputError, NotFoundError, TooLargeError
from bot.services.files.paths import (
    DEFAULT_PROTECTED,
    check_text,
    name_allowed,
    path_parts,
    refuse,
)

if TYPE_CHECKING:
    from bot.services.files.blobcache import BlobCache

log = logging.getLogger(__name__)

FILE_NOT_FOUND = "File not found."
IS_FOLDER = "That is a folder; use !archive to zip it."
NOTHING_TO_ARCHIVE = "There is no dataset, folder or file by that name to archive."
EMPTY_ARCHIVE = "There are no files there that can be archived."
ARCHIVES_REFUSED = "The archives folder can't be archived itself; pick a dataset or another folder."

ARCHIVES_DIR = "archives"
MIB = 1024 * 1024
SUGGEST_MAX_ENTRIES = 5000


@dataclass(frozen=True)
class Archive:
    path_relative: str  # e.g. "archives/smalltalk-20261125T232100Z.zip", always with "/"
    size: int
    uploadable: bool  # size <= the upload cap
    data: bytes | None  # the zip's bytes when uploadable
    files: int = 0  # number of files inside


def format_mb(size: int) -> str:
    """Bytes as MB (MiB) for messages: "12.3", or "10" for a whole number."""
    value = size / MIB
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_")[:80]
    return stem or "data"


class FileService:
    """Read and archive files under `data_dir` for users, refusing everything else.

    With a `cache` (blobcache.py) `data_dir` caches the namespace's blobs: a file is
    fetched before it is read or archived, suggestions list the blobs too, and an archive is
    stored as a blob before it is reported.
    """

    def __init__(
        self,
        data_dir: Path,
        max_upload_bytes: int,
        protected: Sequence[str] = DEFAULT_PROTECTED,
        *,
        samples_dir: Path | None = None,
        cache: BlobCache | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.cache = cache
        # Read-only sample datasets: `!archive NAME` of a sample zips the shipped file.
        self.samples_dir = Path(samples_dir) if samples_dir is not None else None
        self.max_upload_bytes = max_upload_bytes
        self._protected = frozenset(name.casefold() for name in protected)
        self._naming_lock = threading.Lock()

    def busy(self) -> bool:
        """Whether an archive is being named (two instances could pick the same name)."""
        return self._naming_lock.locked()

    @property
    def _root(self) -> Path:
        return self.data_dir.resolve()

    # The one path check.

    def resolve(self, user_path: str) -> Path:
        """The real path of an existing file or folder under data_dir that users may see.

        Raises InvalidInputError(PATH_REFUSED) for any refused path, NotFoundError for an
        allowed path that does not exist. Makes a few stat calls, no reads.
        """
        check_text(user_path)
        if user_path.startswith(("/", "\\")):
            raise refuse()
        parts = [p for p in re.split(r"[/\\]", user_path) if p not in ("", ".")]
        if not all(name_allowed(p, self._protected) for p in parts):
            raise refuse()
        return self._locate(parts)

    def _locate(self, parts: Sequence[str]) -> Path:
        root = self._root
        try:
            real = root.joinpath(*parts).resolve()
        except (OSError, RuntimeError):  # symlink loop
            raise refuse() from None
        if not real.is_relative_to(root):
            raise refuse()
        if not all(name_allowed(p, self._protected) for p in real.relative_to(root).parts):
            raise refuse()  # a symlink inside pointing at the database, .env, ...
        try:
            mode = real.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(FILE_NOT_FOUND) from None
        except OSError:
            raise refuse() from None
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise refuse()  # device, socket, FIFO
        return real

    def _open_regular(self, real: Path) -> tuple[BinaryIO, os.stat_result]:
        """Open a checked path for reading without following a symlink or blocking."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(real, flags)
        except FileNotFoundError:
            raise NotFoundError(FILE_NOT_FOUND) from None
        except OSError:
            raise refuse() from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise InvalidInputError(IS_FOLDER) if stat.S_ISDIR(info.st_mode) else refuse()
        return os.fdopen(fd, "rb"), info

    # !getfile

    async def read_for_upload(self, user_path: str) -> tuple[str, bytes]:
        """(file name, bytes) of a regular file under data_dir no larger than the cap."""
        if self.cache is not None:
            parts = path_parts(user_path, tuple(self._protected))
            async with self.cache.locked():
                await self.cache.fetch("/".join(parts))
        return await asyncio.to_thread(self._read_for_upload, user_path)

    def _read_for_upload(self, user_path: str) -> tuple[str, bytes]:
        real = self.resolve(user_path)
        handle, info = self._open_regular(real)
        with handle:
            self._check_size(info.st_size)
            data = handle.read(self.max_upload_bytes + 1)
        self._check_size(len(data))  # it grew while we read
        return real.name, data

    def _check_size(self, size: int) -> None:
        if size > self.max_upload_bytes:
            raise TooLargeError(
                f"That file is too large to send ({format_mb(size)} MB; "
                f"the limit is {format_mb(self.max_upload_bytes)} MB)."
            )

    # suggestions (`/getfile path:`, `/archive name:`)

    async def suggest_paths(
        self, typed: str, *, folders: bool = False, limit: int = 25
    ) -> list[str]:
        """Paths under data_dir that `read_for_upload` (or, with `folders`, `archive`) would
        accept and that contain `typed`: those starting with it first. Walks at most
        SUGGEST_MAX_ENTRIES entries, follows no symlink and shows no refused name. With a
        cache, the blobs' paths too (listed, not fetched)."""
        stored = await self._blob_paths() if self.cache is not None else []
        return await asyncio.to_thread(self._suggest_paths, typed, folders, limit, stored)

    async def _blob_paths(self) -> list[str]:
        assert self.cache is not None
        paths = []
        for info in await self.cache.blobs.list(self.cache.namespace):
            try:
                paths.append("/".join(path_parts(info.path, tuple(self._protected))))
            except InvalidInputError:
                continue
        return paths

    def _suggest_paths(
        self, typed: str, folders: bool, limit: int, stored: Sequence[str] = ()
    ) -> list[str]:
        needle = typed.strip().replace("\\", "/").lstrip("/").lower()
        found = self._local_paths(folders)
        for path in stored[:SUGGEST_MAX_ENTRIES]:
            parents = path.split("/")[:-1]
            if not folders:
                found.append(path)
            elif parents and parents[0] != ARCHIVES_DIR:
                found += ["/".join(parents[: i + 1]) for i in range(len(parents))]
        matches = sorted({p for p in found if needle in p.lower()})
        matches.sort(key=lambda p: (not p.lower().startswith(needle), p.count("/"), p))
        return matches[:limit]

    def _local_paths(self, folders: bool) -> list[str]:
        root = self._root
        if not root.is_dir():
            return []
        found: list[str] = []
        seen = 0
        queue = [root]
        while queue and seen < SUGGEST_MAX_ENTRIES:
            folder = queue.pop(0)
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                seen += 1
                if not name_allowed(entry.name, self._protected) or entry.is_symlink():
                    continue
                relative = Path(entry.path).relative_to(root).as_posix()
                if entry.is_dir(follow_symlinks=False):
                    queue.append(Path(entry.path))
                    if folders and relative.split("/")[0] != ARCHIVES_DIR:
                        found.append(relative)
                elif not folders and entry.is_file(follow_symlinks=False):
                    found.append(relative)
        return found

    # !archive

    async def archive(self, name: str, datasets_dir_name: str = "datasets") -> Archive:
        """Zip a dataset (datasets/NAME.*), or a folder or file under data_dir.

        The zip goes to data_dir/archives/<name>-<UTC time>.zip, written atomically; its
        bytes are returned too when it fits under the upload cap. With a cache, what it zips
        is fetched first and the zip is stored as a blob before this returns.
        """
        if self.cache is None:
            return await asyncio.to_thread(self._archive, name, datasets_dir_name)
        async with self.cache.locked():
            await self._fetch_for_archive(name, datasets_dir_name)
            archive = await asyncio.to_thread(self._archive, name, datasets_dir_name)
            await self.cache.push(archive.path_relative)
        return archive

    async def _fetch_for_archive(self, name: str, datasets_dir_name: str) -> None:
        """Bring what `_archive` may zip into the cache: the datasets, and the file or the
        folder that `name` names (the whole namespace for ".")."""
        assert self.cache is not None
        await self.cache.refresh(f"{datasets_dir_name}/")
        if name.strip().strip("/\\") in ("", "."):
            await self.cache.refresh("")
            return
        try:
            path = "/".join(path_parts(name, tuple(self._protected)))
        except InvalidInputError:
            return  # `_archive` refuses it with the usual message
        if path.split("/")[0] != ARCHIVES_DIR and not await self.cache.fetch(path):
            await self.cache.refresh(f"{path}/")

    def _archive(self, name: str, datasets_dir_name: str) -> Archive:
        members = self._dataset_members(name, datasets_dir_name)
        if not members:
            try:
                target = self.resolve(name)
            except NotFoundError:
                raise NotFoundError(NOTHING_TO_ARCHIVE) from None
            archives = self._root / ARCHIVES_DIR
            if target == archives or target.is_relative_to(archives):
                raise InvalidInputError(ARCHIVES_REFUSED)
            members = self._folder_members(target)
        if not members:
            raise InvalidInputError(EMPTY_ARCHIVE)
        path, count = self._write_zip(members, _safe_stem(name))
        size = path.stat().st_size
        uploadable = size <= self.max_upload_bytes
        return Archive(
            path_relative=f"{ARCHIVES_DIR}/{path.name}",
            size=size,
            uploadable=uploadable,
            data=path.read_bytes() if uploadable else None,
            files=count,
        )

    def _dataset_members(self, name: str, datasets_dir_name: str) -> list[tuple[Path, str]]:
        """Files datasets/NAME.* (data and corrections) when NAME is a plain name, and the
        shipped sample NAME.csv when there is no own data file of that name."""
        check_text(name)
        if re.search(r"[/\\]", name) or not name_allowed(name, self._protected):
            return []
        members = []
        try:
            folder = self.resolve(datasets_dir_name)
        except (InvalidInputError, NotFoundError):
            folder = None
        if folder is not None and folder.is_dir():
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                if entry.name.startswith(name + "."):
                    parts = folder.relative_to(self._root).parts + (entry.name,)
                    real = self._allowed_file(parts)
                    if real is not None:
                        members.append((real, entry.name))
        sample = self.samples_dir / f"{name}.csv" if self.samples_dir else None
        has_data = any(not arc.endswith(".corrections.csv") for _, arc in members)
        if sample is not None and sample.is_file() and not has_data:
            members.insert(0, (sample, sample.name))
        return members

    def _folder_members(self, target: Path) -> list[tuple[Path, str]]:
        """Every allowed regular file under target (a folder or one file), with its zip name.

        Skips hidden entries, the archives folder, the database and symlinks whose target is
        outside data_dir or refused; symlinked folders are not followed.
        """
        root = self._root
        if target.is_file():
            return [(target, target.name)]
        base = root if target == root else target.parent
        archives = root / ARCHIVES_DIR
        members = []
        for dirpath, dirnames, filenames in os.walk(target):
            here = Path(dirpath)
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and here / d != archives
            )
            for filename in sorted(filenames):
                path = here / filename
                real = self._allowed_file(path.relative_to(root).parts)
                if real is not None and not real.is_relative_to(archives):
                    members.append((real, path.relative_to(base).as_posix()))
        return members

    def _allowed_file(self, parts: Sequence[str]) -> Path | None:
        """The real path of a regular file the path rules allow, else None."""
        if not all(name_allowed(p, self._protected) for p in parts):
            return None
        try:
            real = self._locate(parts)
        except (InvalidInputError, NotFoundError):
            log.debug("Archive skips a refused entry")
            return None
        return real if real.is_file() else None

    def _write_zip(self, members: Sequence[tuple[Path, str]], stem: str) -> tuple[Path, int]:
        archives = self._root / ARCHIVES_DIR  # the operator may make it a symlink to another disk
        archives.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".", suffix=".zip.tmp", dir=archives)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                count = self._zip_into(out, members)
                out.flush()
                os.fsync(out.fileno())
            with self._naming_lock:
                final = self._free_name(archives, stem)
                os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        log.info("Archived %d files into %s", count, final.name)
        return final, count

    def _zip_into(self, out: BinaryIO, members: Sequence[tuple[Path, str]]) -> int:
        count = 0
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for real, arcname in members:
                try:
                    handle, _ = self._open_regular(real)
                except (InvalidInputError, NotFoundError):
                    log.debug("Archive skips an entry that changed since it was listed")
                    continue
                with handle:
                    info = zipfile.ZipInfo.from_file(real, arcname, strict_timestamps=False)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with zf.open(info, "w") as entry:
                        shutil.copyfileobj(handle, entry, 1024 * 1024)
                count += 1
        return count

    @staticmethod
    def _free_name(folder: Path, stem: str) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        candidate = folder / f"{stem}-{stamp}.zip"
        n = 2
        while candidate.exists():
            candidate = folder / f"{stem}-{stamp}-{n}.zip"
            n += 1
        return candidate
