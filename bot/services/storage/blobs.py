"""Blobs: the bytes of datasets and models, kept where every process of the bot reaches them.

One small interface, `BlobStore`: put, get, info, list and delete bytes by (namespace, path),
each with its size and sha256. `DatabaseBlobs` keeps them in the `blobs` table of the bot's
own database (BLOB on SQLite, bytea on PostgreSQL); docs/SCALING.md says why a table rather
than an object store, and what would make an object store worth it.

Reading checks the sha256 that was stored with the bytes: a model (a pickle) whose bytes
changed is never handed out.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.services.storage.schema import blobs
from bot.services.storage.store import Storage, upsert


class BlobCorruptError(RuntimeError):
    """Stored bytes no longer match their sha256."""


@dataclass(frozen=True)
class BlobInfo:
    namespace: str
    path: str
    size: int
    sha256: str
    updated_at: str  # ISO 8601, UTC


class BlobStore(Protocol):
    async def put(self, namespace: str, path: str, data: bytes) -> BlobInfo:
        """Store `data` (replacing what was at the path); atomic: readers see the old bytes or
        the new ones."""
        ...

    async def get(self, namespace: str, path: str) -> bytes | None:
        """The bytes at the path, None if there are none; BlobCorruptError if they no longer
        match their sha256."""
        ...

    async def put_if(
        self, namespace: str, path: str, data: bytes, expected_sha256: str | None
    ) -> BlobInfo | None:
        """Store `data` only if the blob's sha256 is still `expected_sha256` (None: only if
        there is no blob there yet); None when another writer got there first."""
        ...

    async def info(self, namespace: str, path: str) -> BlobInfo | None: ...

    async def list(self, namespace: str, prefix: str = "") -> list[BlobInfo]:
        """The namespace's blobs whose path starts with `prefix`, by path."""
        ...

    async def delete(self, namespace: str, path: str) -> bool:
        """Remove the blob; False if there was none."""
        ...


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_INFO_COLUMNS = [blobs.c[name] for name in BlobInfo.__dataclass_fields__]


class DatabaseBlobs:
    """A BlobStore in the bot's database. Hashing runs in a thread (a few MB take a few ms)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def put(self, namespace: str, path: str, data: bytes) -> BlobInfo:
        info, row = await self._row(namespace, path, data)
        async with self.storage.transaction() as conn:
            await conn.execute(upsert(conn, blobs, row))
        return info

    async def put_if(
        self, namespace: str, path: str, data: bytes, expected_sha256: str | None
    ) -> BlobInfo | None:
        info, row = await self._row(namespace, path, data)
        async with self.storage.transaction() as conn:
            if expected_sha256 is None:
                dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
                statement: Any = dialect.insert(blobs).values(row).on_conflict_do_nothing()
            else:
                statement = (
                    update(blobs)
                    .where(
                        blobs.c.namespace == namespace,
                        blobs.c.path == path,
                        blobs.c.sha256 == expected_sha256,
                    )
                    .values(row)
                )
            result = await conn.execute(statement)
        return info if result.rowcount == 1 else None

    @staticmethod
    async def _row(namespace: str, path: str, data: bytes) -> tuple[BlobInfo, dict[str, Any]]:
        data = bytes(data)
        info = BlobInfo(
            namespace=namespace,
            path=path,
            size=len(data),
            sha256=await asyncio.to_thread(_sha256, data),
            updated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        return info, {**info.__dict__, "data": data}

    async def get(self, namespace: str, path: str) -> bytes | None:
        rows = await self.storage._rows(
            select(blobs.c.data, blobs.c.sha256).where(
                blobs.c.namespace == namespace, blobs.c.path == path
            )
        )
        if not rows:
            return None
        data = bytes(rows[0]["data"])
        if await asyncio.to_thread(_sha256, data) != rows[0]["sha256"]:
            raise BlobCorruptError(f"{namespace}/{path} does not match its sha256")
        return data

    async def info(self, namespace: str, path: str) -> BlobInfo | None:
        rows = await self.storage._rows(
            select(*_INFO_COLUMNS).where(blobs.c.namespace == namespace, blobs.c.path == path)
        )
        return BlobInfo(**rows[0]) if rows else None

    async def list(self, namespace: str, prefix: str = "") -> list[BlobInfo]:
        rows = await self.storage._rows(
            select(*_INFO_COLUMNS)
            .where(blobs.c.namespace == namespace, blobs.c.path.startswith(prefix, autoescape=True))
            .order_by(blobs.c.path)
        )
        return [BlobInfo(**row) for row in rows]

    async def delete(self, namespace: str, path: str) -> bool:
        async with self.storage.transaction() as conn:
            result = await conn.execute(
                delete(blobs).where(blobs.c.namespace == namespace, blobs.c.path == path)
            )
        return result.rowcount > 0
