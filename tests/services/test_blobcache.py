"""Past one machine: two processes of the bot (two DATA_DIRs, no shared disk) on one database
see the same datasets, models and archives, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.errors import InvalidInputError, NotFoundError
from bot.services.files.blobcache import BlobCache, blob_path
from bot.services.model.datasets.parse import Row
from bot.services.storage import Storage
from bot.services.storage.blobs import DatabaseBlobs
from bot.services.tasks.jobs import JobRunner
from bot.services.tenancy.tenants import Tenant, TenantLimits, Tenants
from tests.services.conftest import Location
from tests.services.hostile_paths import HOSTILE_PATHS, SECRET_MARKER, make_hostile_tree

ROOT = Path(__file__).resolve().parents[2]
THREE_LABELS = (ROOT / "tests" / "fixtures" / "three_labels.csv").read_bytes()
GUILD = "1100000000000000001"
LIMITS = TenantLimits(
    train_max_bytes=5 << 20, train_max_rows=1000, max_upload_bytes=10 << 20, min_confidence=0.35
)
ROWS = [Row("hello", "hi"), Row("hey there", "hi"), Row("bye", "bye"), Row("see you", "bye")]


@pytest.fixture
async def jobs() -> AsyncIterator[JobRunner]:
    runner = JobRunner(max_workers=1, idle_seconds=None)
    yield runner
    await runner.close()


@pytest.fixture
async def storage(location: Location) -> AsyncIterator[Storage]:
    async with Storage(location) as opened:
        yield opened


def process(storage: Storage, jobs: JobRunner, data_dir: Path) -> Tenant:
    """One namespace as one process of the bot sees it: its own DATA_DIR, the shared
    database."""
    return Tenants(data_dir, jobs, LIMITS, blobs=DatabaseBlobs(storage)).get(GUILD)


async def train(tenant: Tenant, jobs: JobRunner, dataset: str) -> str:
    job = await tenant.models.wait(await tenant.models.start_training(dataset))
    assert job.status == "done", job.error
    return job.result.version


async def active(tenant: Tenant, dataset: str) -> str | None:
    found = await tenant.models.active_version(dataset)
    return found.version if found else None


async def test_a_dataset_and_model_made_in_one_process_are_used_in_another(
    storage: Storage, jobs: JobRunner, tmp_path: Path
) -> None:
    one = process(storage, jobs, tmp_path / "one")
    two = process(storage, jobs, tmp_path / "two")
    await one.datasets.save_async("weather", THREE_LABELS, "weather.csv")
    assert [d.name for d in await two.datasets.list_async()] == ["smalltalk", "weather"]
    assert (await two.datasets.info_async("weather")).rows == 30

    assert await train(one, jobs, "weather") == "v1"
    assert [v.version for v in await two.models.list_versions("weather")] == ["v1"]
    assert (await two.models.predict("weather", "what is the weather like")).label == "weather"

    # A correction made in the second is learnt by a training in the first.
    await two.datasets.add_correction_async("weather", "is it sunny", "Look outside!")
    assert (await one.datasets.info_async("weather")).corrections == 1
    assert await train(one, jobs, "weather") == "v2"
    assert (await two.models.predict("weather", "is it sunny")).reply == "Look outside!"

    # A rollback in one process is what the other uses at its next message.
    await two.models.use_version("weather", "v1")
    assert await active(one, "weather") == "v1"
    assert (await one.models.predict("weather", "is it sunny")).reply != "Look outside!"


async def test_a_dataset_read_sees_the_latest_write_of_another_process(
    location: Location, jobs: JobRunner, tmp_path: Path
) -> None:
    """Two processes (two Storage objects on one database, two DATA_DIRs): the rows one reads,
    for itself or for a worker, are the other's latest, never its own folder's stale copy."""
    async with Storage(location) as first, Storage(location) as second:
        one = process(first, jobs, tmp_path / "one")
        two = process(second, jobs, tmp_path / "two")
        await one.datasets.save_async("mine", ROWS)
        assert await two.datasets.load_async("mine") == ROWS  # now cached in two's folder

        await one.datasets.save_async("mine", [*ROWS, Row("farewell", "bye")])
        await one.datasets.add_correction_async("mine", "hello", "Hi there!")
        rows = await two.datasets.load_async("mine")
        assert Row("farewell", "bye") in rows and rows[-1].reply == "Hi there!"
        files = await two.datasets.files_async("mine")  # what a training task is sent
        assert b"farewell" in files["mine.csv"] and b"Hi there!" in files["mine.corrections.csv"]
        with pytest.raises(RuntimeError):  # the folder may be behind the blobs: no blocking read
            two.datasets.load("mine")


async def test_trainings_in_two_processes_get_versions_of_their_own(
    storage: Storage, jobs: JobRunner, tmp_path: Path
) -> None:
    one = process(storage, jobs, tmp_path / "one")
    two = process(storage, jobs, tmp_path / "two")
    await one.datasets.save_async("weather", THREE_LABELS, "weather.csv")
    await two.datasets.exists_async("weather")  # the second caches the dataset
    first = await one.models.start_training("weather")
    second = await two.models.start_training("weather")
    ended = [await one.models.wait(first), await two.models.wait(second)]
    results = [job.result.version for job in ended]
    assert sorted(results) == ["v1", "v2"]
    versions = await one.models.list_versions("weather")
    assert [v.version for v in versions] == ["v1", "v2"]
    assert await active(two, "weather") == await active(one, "weather")


async def test_the_sample_model_installed_by_one_process_is_the_others(
    storage: Storage, jobs: JobRunner, tmp_path: Path
) -> None:
    one = process(storage, jobs, tmp_path / "one")
    two = process(storage, jobs, tmp_path / "two")
    assert (await one.models.predict("smalltalk", "hello")).reply
    assert (await two.models.predict("smalltalk", "hello")).reply
    assert [v.version for v in await two.models.list_versions("smalltalk")] == ["v1"]
    stored = [b.path for b in await DatabaseBlobs(storage).list(GUILD)]
    assert stored == ["models/smalltalk/manifest.json", "models/smalltalk/v1.npz"]


async def test_a_corrupt_cached_file_is_fetched_again(
    storage: Storage, jobs: JobRunner, tmp_path: Path
) -> None:
    one = process(storage, jobs, tmp_path / "one")
    await one.datasets.save_async("weather", THREE_LABELS, "weather.csv")
    await train(one, jobs, "weather")
    two = process(storage, jobs, tmp_path / "two")
    assert (await two.models.predict("weather", "is it raining")).label == "weather"
    assert (await two.datasets.info_async("weather")).rows == 30

    folder = tmp_path / "two" / "servers" / GUILD
    (folder / "datasets" / "weather.csv").write_bytes(b"text,label\nbroken,x\n")
    model = folder / "models" / "weather" / "v1.npz"
    model.write_bytes(b"\0" * model.stat().st_size)
    again = process(storage, jobs, tmp_path / "two")  # a restart with the damaged cache
    assert (await again.datasets.info_async("weather")).rows == 30
    assert (await again.models.predict("weather", "is it raining")).label == "weather"
    assert (folder / "datasets" / "weather.csv").read_bytes() == (
        tmp_path / "one" / "servers" / GUILD / "datasets" / "weather.csv"
    ).read_bytes()


async def test_replacing_a_dataset_deletes_its_other_format_everywhere(
    storage: Storage, jobs: JobRunner, tmp_path: Path
) -> None:
    one = process(storage, jobs, tmp_path / "one")
    two = process(storage, jobs, tmp_path / "two")
    jsonl = "".join(f'{{"text": "{r.text}", "label": "{r.label}"}}\n' for r in ROWS).encode()
    await DatabaseBlobs(storage).put(GUILD, "datasets/greet.jsonl", jsonl)
    assert (await two.datasets.info_async("greet")).rows == 4
    cached = tmp_path / "two" / "servers" / GUILD / "datasets"
    assert (cached / "greet.jsonl").exists()

    await one.datasets.save_async("greet", ROWS[:3] + [Row("later", "bye")])
    assert [b.path for b in await DatabaseBlobs(storage).list(GUILD, "datasets/")] == [
        "datasets/greet.csv"
    ]
    assert (await two.datasets.info_async("greet")).rows == 4
    assert sorted(p.name for p in cached.iterdir() if not p.name.startswith(".")) == ["greet.csv"]


async def test_an_archive_made_in_one_process_is_fetched_by_another(
    storage: Storage, jobs: JobRunner, tmp_path: Path
) -> None:
    one = process(storage, jobs, tmp_path / "one")
    two = process(storage, jobs, tmp_path / "two")
    await two.datasets.save_async("weather", THREE_LABELS, "weather.csv")
    archive = await one.files.archive("weather")
    assert archive.files == 1
    assert await two.files.suggest_paths("arch") == [archive.path_relative]
    name, data = await two.files.read_for_upload(archive.path_relative)
    assert (name, data) == (archive.path_relative.split("/")[-1], archive.data)


async def test_files_only_in_the_folder_are_uploaded_and_deleted_ones_go(
    storage: Storage, tmp_path: Path
) -> None:
    folder = tmp_path / "servers" / GUILD
    (folder / "datasets").mkdir(parents=True)
    (folder / "datasets" / "old.csv").write_bytes(b"text,label\n")
    (folder / "datasets" / ".old.csv.123.tmp").write_bytes(b"half")  # never uploaded
    cache = BlobCache(DatabaseBlobs(storage), GUILD, folder)
    assert await cache.adopt() == 1
    assert await cache.adopt() == 0
    assert [b.path for b in await DatabaseBlobs(storage).list(GUILD)] == ["datasets/old.csv"]

    # A file this process saw in the blobs and whose blob is gone was deleted elsewhere.
    await DatabaseBlobs(storage).delete(GUILD, "datasets/old.csv")
    async with cache.locked():
        assert await cache.refresh("datasets/") == []
    assert not (folder / "datasets" / "old.csv").exists()
    # One put there by hand is uploaded on first use.
    (folder / "datasets" / "hand.csv").write_bytes(b"text,label\n")
    async with cache.locked():
        assert await cache.fetch("datasets/hand.csv")
    assert [b.path for b in await DatabaseBlobs(storage).list(GUILD)] == ["datasets/hand.csv"]


@pytest.mark.parametrize("path", ["", ".", "bot.db", "datasets/.hidden", "../x", "/etc/passwd"])
def test_a_blob_path_follows_the_rules_of_a_file_path(path: str) -> None:
    with pytest.raises(InvalidInputError):
        blob_path(path)


async def test_hostile_blob_paths_are_never_cached_or_served(
    storage: Storage, jobs: JobRunner, tmp_path: Path
) -> None:
    """Blobs written into the database behind the bot's back, at every hostile path, with a
    folder full of symlinks out, into the database and to a FIFO: nothing leaks or hangs."""
    folder = tmp_path / "data" / "servers" / GUILD
    make_hostile_tree(folder)
    for path in HOSTILE_PATHS:
        await DatabaseBlobs(storage).put(GUILD, path, b"planted")
    tenant = process(storage, jobs, tmp_path / "data")
    served = {}
    for path in HOSTILE_PATHS:
        try:
            served[path] = (await tenant.files.read_for_upload(path))[1]
        except (InvalidInputError, NotFoundError):
            continue
    # Only plain names inside the namespace whose entry was a FIFO, a socket or a link to a
    # FIFO inside (the blob's file replaced it) are served, with the blob's own bytes.
    assert set(served.values()) <= {b"planted"}
    assert sorted(served) == ["datasets/pipe.csv", "link_pipe", "pipe", "sock"]
    async with tenant.cache.locked():
        await tenant.cache.refresh("")
    assert SECRET_MARKER in (tmp_path / "data" / "servers" / "outside" / "secret.txt").read_text()
    assert not [
        p
        for p in (tmp_path / "data" / "servers" / "outside").iterdir()
        if p.is_file() and p.read_bytes() == b"planted"
    ]


async def test_blobs_with_hostile_paths_never_leave_the_namespace_folder(
    storage: Storage, jobs: JobRunner, tmp_path: Path
) -> None:
    for path in ("../escaped.csv", "datasets/../../escaped.csv", "/tmp/escaped.csv", ".env"):
        await DatabaseBlobs(storage).put(GUILD, path, b"text,label\n")
    (tmp_path / "outside").mkdir()
    folder = tmp_path / "data" / "servers" / GUILD
    folder.mkdir(parents=True)
    (folder / "datasets").symlink_to(tmp_path / "outside")
    await DatabaseBlobs(storage).put(GUILD, "datasets/linked.csv", b"text,label\n")
    tenant = process(storage, jobs, tmp_path / "data")
    # The datasets folder is a symlink out: its blob is skipped, never written there.
    assert [d.name for d in await tenant.datasets.list_async()] == ["smalltalk"]
    with pytest.raises(InvalidInputError):
        await tenant.files.read_for_upload("../escaped.csv")
    with pytest.raises(NotFoundError):
        await tenant.files.read_for_upload("escaped.csv")
    assert [p.name for p in (tmp_path / "outside").iterdir()] == []
    assert not list(tmp_path.rglob("escaped.csv"))
