"""`DatasetStore`: a namespace's datasets and their corrections, in its folder and its blobs.

A dataset lives in `<data_dir>/datasets/<name>.csv` (or `.json` / `.jsonl` when placed there by
hand); the corrections users made to the bot's replies live beside it in
`<name>.corrections.csv`. Reading and checking rows is parse.py.

`DatasetStore` methods do file I/O and parsing and are blocking; each has an `*_async` twin
that runs it in a thread. Call those from the event loop. With a blob cache, the twins are the
only way to read the rows (`load_async`, `files_async`): they refresh the folder from the blobs
first, so another process's writes are seen; the blocking `load` refuses there.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import InvalidInputError, NotFoundError, TooLargeError
from bot.services.common.fs import atomic_write, file_stamp
from bot.services.model.datasets.parse import (
    FORMATS,
    MAX_REPLY_CHARS,
    MAX_TEXT_CHARS,
    NAME_PATTERN,
    Row,
    _check_encodable,
    _check_labels,
    _make_row,
    _read_records,
    corrected_label,
    normalize_text,
    parse_dataset,
    rows_to_csv,
    validate_name,
)

if TYPE_CHECKING:
    from bot.services.files.blobcache import BlobCache

log = logging.getLogger(__name__)

DATASETS_DIR = "datasets"
CORRECTIONS_SUFFIX = ".corrections.csv"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    rows: int
    labels: int
    corrections: int
    sample: bool = False  # a shared sample (read-only), not the store's own dataset


class DatasetStore:
    """Datasets under `<data_dir>/datasets`. Methods are blocking; use the `*_async` twins.

    `samples_dir` holds read-only sample datasets (`<name>.csv`) that every store can read: a
    sample is used when the store has no dataset of that name, and `save` never writes there
    (its corrections go beside the store's own datasets).

    With a `cache` (services/files/blobcache.py) the folder is a cache of the namespace's blobs:
    the async twins bring it up to date first, and writes go to the blobs before they return.
    The blocking methods use the folder as it is (a training worker reads what the bot
    fetched for it); the rows of a store with a cache are read only through `load_async` or
    `files_async`, never from a folder that may be behind the blobs.
    """

    def __init__(
        self,
        data_dir: Path,
        max_bytes: int,
        max_rows: int,
        *,
        samples_dir: Path | None = None,
        cache: BlobCache | None = None,
    ) -> None:
        self.root = Path(data_dir) / DATASETS_DIR
        self.cache = cache
        self.samples_dir = Path(samples_dir) if samples_dir is not None else None
        self.max_bytes = max_bytes
        self.max_rows = max_rows
        self._write_lock = threading.Lock()
        self._info_cache: dict[str, tuple[tuple[Any, ...], DatasetInfo]] = {}

    def busy(self) -> bool:
        """Whether a write (a save, a correction's read-modify-write) is under way: its
        lock is this instance's, so another instance must not write the folder meanwhile."""
        return self._write_lock.locked()

    def path(self, name: str) -> Path:
        """The dataset's file; NotFoundError if there is none."""
        validate_name(name)
        for ext in FORMATS:
            candidate = self.root / f"{name}{ext}"
            if candidate.is_file():
                return candidate
        sample = self._sample_path(name)
        if sample is not None:
            return sample
        raise NotFoundError(f"Dataset '{name}' not found.")

    def _sample_path(self, name: str) -> Path | None:
        if self.samples_dir is None:
            return None
        candidate = self.samples_dir / f"{name}.csv"
        return candidate if candidate.is_file() else None

    def is_sample(self, name: str) -> bool:
        """True when `name` is read from the shared samples (the store has no own copy)."""
        return self.samples_dir is not None and self.path(name).parent == self.samples_dir

    def corrections_path(self, name: str) -> Path:
        return self.root / f"{validate_name(name)}{CORRECTIONS_SUFFIX}"

    def exists(self, name: str) -> bool:
        try:
            self.path(name)
        except NotFoundError:
            return False
        return True

    def names(self) -> list[str]:
        """Names of the stored datasets and the samples, sorted."""
        found = set()
        folders = [f for f in (self.root, self.samples_dir) if f is not None and f.is_dir()]
        entries = [entry for folder in folders for entry in folder.iterdir()]
        for entry in entries:
            name, ext = entry.name.rsplit(".", 1)[0], entry.suffix.lower()
            if ext in FORMATS and NAME_PATTERN.fullmatch(name) and entry.is_file():
                found.add(name)
        return sorted(found, key=str.lower)

    def list(self) -> list[DatasetInfo]:
        """Every readable dataset with its row, label and correction counts, by name."""
        infos = []
        for name in self.names():
            try:
                infos.append(self.info(name))
            except InvalidInputError as exc:
                log.warning("skipping dataset %s: %s", name, exc.message)
        return infos

    def info(self, name: str) -> DatasetInfo:
        path, corrections = self.path(name), self.corrections_path(name)
        key = (file_stamp(path), file_stamp(corrections))
        cached = self._info_cache.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        rows = self._read_dataset(name, path)
        info = DatasetInfo(
            name=name,
            rows=len(rows),
            labels=len({row.label for row in rows}),
            corrections=len(self.corrections(name)),
            sample=self.samples_dir is not None and path.parent == self.samples_dir,
        )
        self._info_cache[name] = (key, info)
        return info

    def save(
        self, name: str, rows: Sequence[Row] | bytes, filename: str | None = None
    ) -> DatasetInfo:
        """Validate and store a dataset (rows, or an upload's bytes and file name) as CSV.

        Replaces a dataset of the same name; its corrections are kept.
        """
        data = self._prepared(name, rows, filename)
        with self._write_lock:
            atomic_write(self.root / f"{name}.csv", data)
            for ext in FORMATS:
                if ext != ".csv":
                    (self.root / f"{name}{ext}").unlink(missing_ok=True)
        return self.info(name)

    def _prepared(
        self, name: str, rows: Sequence[Row] | bytes, filename: str | None = None
    ) -> bytes:
        """The CSV bytes `save` stores, after validating the name and the rows."""
        validate_name(name)
        if isinstance(rows, bytes | bytearray):
            if filename is None:
                raise ValueError("saving bytes needs the upload's filename")
            parsed = parse_dataset(
                bytes(rows), filename, max_rows=self.max_rows, max_bytes=self.max_bytes
            )
        else:
            if len(rows) > self.max_rows:
                raise TooLargeError(f"The dataset has more than {self.max_rows} rows (the limit).")
            records = [(i, _make_row(i, *row)) for i, row in enumerate(rows, start=1)]
            _check_labels(records)
            parsed = [row for _, row in records]
        log.info("saving dataset %s (%d rows)", name, len(parsed))
        return rows_to_csv(parsed)

    def load(self, name: str) -> list[Row]:
        """The rows to train on: the dataset's rows, then its corrections.

        A correction replaces every dataset row with the same text (compared by
        `normalize_text`); of several corrections for one text, the latest wins. Blocking,
        from the folder as it is: a store with a cache refuses (RuntimeError), as its folder
        may not have another process's latest write yet; `load_async` refreshes first.
        """
        if self.cache is not None:
            raise RuntimeError("a dataset store with a blob cache is read with load_async")
        return self._load(name)

    def sample_rows(self, name: str) -> list[Row]:
        """The rows of the shared sample `name` (read-only, shipped with the bot, never in
        the blobs), without this store's corrections; NotFoundError if there is no sample."""
        path = self._sample_path(validate_name(name))
        if path is None:
            raise NotFoundError(f"Dataset '{name}' not found.")
        return self._read_dataset(name, path)

    def _load(self, name: str) -> list[Row]:
        rows = self._read_dataset(name, self.path(name))
        overrides = {normalize_text(fix.text): fix for fix in self.corrections(name)}
        if not overrides:
            return rows
        kept = [row for row in rows if normalize_text(row.text) not in overrides]
        return kept + list(overrides.values())

    def corrections(self, name: str) -> list[Row]:
        """The dataset's corrections in the order they were made ([] if none)."""
        path = self.corrections_path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            return [row for _, row in _read_records(data, path.name, max_rows=self.max_rows)]
        except InvalidInputError as exc:
            raise InvalidInputError(f"The corrections of dataset '{name}': {exc.message}") from None

    def add_correction(self, name: str, user_text: str, reply: str) -> Row:
        """Record that `user_text` should be answered with `reply`; the next training learns it.

        The file is rewritten atomically with the new row at the end; returns that row.
        """
        self.path(name)
        user_text, reply = (user_text or "").strip(), (reply or "").strip()
        if not user_text:
            raise InvalidInputError("The corrected message has no text to learn from.")
        if not reply:
            raise InvalidInputError("The corrected reply is empty.")
        _check_encodable("", {"corrected message": user_text, "corrected reply": reply})
        if len(user_text) > MAX_TEXT_CHARS or len(reply) > MAX_REPLY_CHARS:
            raise InvalidInputError(
                f"That is too long to learn from (the limit is {MAX_TEXT_CHARS} characters)."
            )
        row = Row(user_text, corrected_label(reply), reply)
        with self._write_lock:
            existing = self.corrections(name)
            atomic_write(self.corrections_path(name), rows_to_csv([*existing, row]))
        log.info("added a correction to dataset %s (%s)", name, row.label)
        return row

    def remove_correction(self, name: str, user_text: str, reply: str) -> int:
        """Take back the corrections that taught `reply` for `user_text`; returns how many."""
        if not self.exists(name):
            return 0
        key = normalize_text(user_text)
        with self._write_lock:
            existing = self.corrections(name)
            kept = [r for r in existing if not (normalize_text(r.text) == key and r.reply == reply)]
            if len(kept) != len(existing):
                atomic_write(self.corrections_path(name), rows_to_csv(kept))
        return len(existing) - len(kept)

    def _read_dataset(self, name: str, path: Path) -> list[Row]:
        try:
            return parse_dataset(path.read_bytes(), path.name, max_rows=self.max_rows)
        except InvalidInputError as exc:
            raise type(exc)(f"Dataset '{name}': {exc.message}") from None

    # -- async twins -----------------------------------------------------------------------

    async def refresh(self) -> None:
        """Bring the folder up to date with the blobs (one query when nothing changed)."""
        if self.cache is not None:
            async with self.cache.locked():
                await self.cache.refresh(f"{DATASETS_DIR}/")

    async def list_async(self) -> list[DatasetInfo]:
        await self.refresh()
        return await asyncio.to_thread(self.list)

    async def names_async(self) -> list[str]:
        await self.refresh()
        return await asyncio.to_thread(self.names)

    async def info_async(self, name: str) -> DatasetInfo:
        await self.refresh()
        return await asyncio.to_thread(self.info, name)

    async def exists_async(self, name: str) -> bool:
        await self.refresh()
        return await asyncio.to_thread(self.exists, name)

    async def save_async(
        self, name: str, rows: Sequence[Row] | bytes, filename: str | None = None
    ) -> DatasetInfo:
        if self.cache is None:
            return await asyncio.to_thread(self.save, name, rows, filename)
        data = await asyncio.to_thread(self._prepared, name, rows, filename)
        async with self.cache.locked():
            await self.cache.put(f"{DATASETS_DIR}/{name}.csv", data)
            for ext in FORMATS:
                if ext != ".csv":
                    await self.cache.remove(f"{DATASETS_DIR}/{name}{ext}")
        return await asyncio.to_thread(self.info, name)

    async def load_async(self, name: str) -> list[Row]:
        """`load`, after bringing the folder up to date with the blobs."""
        if self.cache is None:
            return await asyncio.to_thread(self._load, name)
        async with self.cache.locked():
            await self.cache.refresh(f"{DATASETS_DIR}/")
            return await asyncio.to_thread(self._load, name)

    async def files_async(self, name: str) -> dict[str, bytes]:
        """The dataset's files as they are in the blobs (its rows, and its corrections when it
        has any), by file name: what a worker trains from. NotFoundError if there is none."""
        if self.cache is None:
            return await asyncio.to_thread(self._files, name)
        async with self.cache.locked():
            await self.cache.refresh(f"{DATASETS_DIR}/")
            return await asyncio.to_thread(self._files, name)

    def _files(self, name: str) -> dict[str, bytes]:
        path, corrections = self.path(name), self.corrections_path(name)
        files = {path.name: path.read_bytes()}
        if corrections.is_file():
            files[corrections.name] = corrections.read_bytes()
        return files

    async def add_correction_async(self, name: str, user_text: str, reply: str) -> Row:
        if self.cache is None:
            return await asyncio.to_thread(self.add_correction, name, user_text, reply)
        async with self.cache.locked():
            await self.cache.refresh(f"{DATASETS_DIR}/")
            row = await asyncio.to_thread(self.add_correction, name, user_text, reply)
            await self.cache.push(self._corrections_blob(name))
        return row

    async def remove_correction_async(self, name: str, user_text: str, reply: str) -> int:
        if self.cache is None:
            return await asyncio.to_thread(self.remove_correction, name, user_text, reply)
        async with self.cache.locked():
            await self.cache.refresh(f"{DATASETS_DIR}/")
            removed = await asyncio.to_thread(self.remove_correction, name, user_text, reply)
            if removed:
                await self.cache.push(self._corrections_blob(name))
        return removed

    @staticmethod
    def _corrections_blob(name: str) -> str:
        return f"{DATASETS_DIR}/{validate_name(name)}{CORRECTIONS_SUFFIX}"
