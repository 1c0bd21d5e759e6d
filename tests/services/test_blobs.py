"""Blobs: dataset and model bytes by namespace and path, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from sqlalchemy import update

from bot.services.storage import Storage
from bot.services.storage.blobs import BlobCorruptError, BlobStore, DatabaseBlobs
from bot.services.storage.schema import blobs
from tests.services.conftest import Location


async def test_bytes_round_trip_with_their_size_and_sha256(storage: Storage) -> None:
    store: BlobStore = DatabaseBlobs(storage)
    data = os.urandom(5 << 20)  # a model is a few MB
    info = await store.put("100", "models/smalltalk/v1.joblib", data)
    assert (info.size, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert await store.get("100", "models/smalltalk/v1.joblib") == data
    assert await store.info("100", "models/smalltalk/v1.joblib") == info
    assert await store.get("100", "models/smalltalk/v2.joblib") is None
    assert await store.get("200", "models/smalltalk/v1.joblib") is None  # another namespace
    assert await store.info("200", "models/smalltalk/v1.joblib") is None


async def test_put_replaces_and_delete_removes(storage: Storage) -> None:
    await DatabaseBlobs(storage).put("100", "datasets/x.csv", b"old")
    await DatabaseBlobs(storage).put("100", "datasets/x.csv", b"")  # empty is a value too
    assert await DatabaseBlobs(storage).get("100", "datasets/x.csv") == b""
    assert await DatabaseBlobs(storage).delete("100", "datasets/x.csv") is True
    assert await DatabaseBlobs(storage).delete("100", "datasets/x.csv") is False
    assert await DatabaseBlobs(storage).get("100", "datasets/x.csv") is None


async def test_list_by_prefix_takes_wildcards_literally(storage: Storage) -> None:
    for path in ("models/a_b/v1.joblib", "models/a_b/manifest.json", "models/axb/v1.joblib"):
        await DatabaseBlobs(storage).put("100", path, path.encode())
    await DatabaseBlobs(storage).put("200", "models/a_b/v9.joblib", b"theirs")
    listed = await DatabaseBlobs(storage).list("100", "models/a_b/")
    assert [b.path for b in listed] == ["models/a_b/manifest.json", "models/a_b/v1.joblib"]
    assert [b.path for b in await DatabaseBlobs(storage).list("100", "models/a%")] == []
    assert len(await DatabaseBlobs(storage).list("100")) == 3


async def test_bytes_that_changed_are_never_handed_out(storage: Storage) -> None:
    await DatabaseBlobs(storage).put("100", "models/m/v1.joblib", b"trusted pickle")
    async with storage.transaction() as conn:
        await conn.execute(update(blobs).values(data=b"tampered pickle"))
    with pytest.raises(BlobCorruptError):
        await DatabaseBlobs(storage).get("100", "models/m/v1.joblib")


async def test_writers_in_other_processes_see_each_others_blobs(location: Location) -> None:
    """Two Storage objects on one database stand for two processes of the bot."""
    async with Storage(location) as first, Storage(location) as second:
        await asyncio.gather(
            *(DatabaseBlobs(first).put("100", f"datasets/{n}.csv", b"x" * n) for n in range(10))
        )
        assert sorted(b.size for b in await DatabaseBlobs(second).list("100")) == list(range(10))
        assert await DatabaseBlobs(second).get("100", "datasets/3.csv") == b"xxx"


async def test_put_if_writes_only_over_the_expected_bytes(storage: Storage) -> None:
    store = DatabaseBlobs(storage)
    first = await store.put_if("100", "models/m/manifest.json", b"one", None)
    assert first is not None
    assert await store.put_if("100", "models/m/manifest.json", b"two", None) is None  # taken
    assert await store.put_if("100", "models/m/manifest.json", b"two", "0" * 64) is None
    assert await store.get("100", "models/m/manifest.json") == b"one"
    assert await store.put_if("100", "models/m/manifest.json", b"two", first.sha256)
    assert await store.get("100", "models/m/manifest.json") == b"two"
