"""Namespaces: each server's data is its own, and older installs move into one at start."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table, func, select
from sqlalchemy import table as sa_table

from bot.config import SettingsError, load_settings
from bot.errors import InvalidInputError, NotFoundError
from bot.services.model.service import ModelService, NoModelError
from bot.services.storage import SCHEMA_VERSION, Storage, database_url, migrate
from bot.services.storage.blobs import DatabaseBlobs
from bot.services.storage.engine import create_engine, explicit_begin
from bot.services.tasks.job import Job
from bot.services.tasks.jobs import JobRunner
from bot.services.tasks.local import LocalRunner
from bot.services.tasks.work import WorkServices
from bot.services.tenancy.namespaces import (
    LEGACY,
    dm_namespace,
    known_namespaces,
    namespace_dir,
    namespace_for,
    parse_namespace,
)
from bot.services.tenancy.tenants import SAMPLES, Tenant, TenantLimits, Tenants, migrate_files
from bot.wiring import open_storage

REPO = Path(__file__).resolve().parents[2]
LEGACY_TAR = REPO / "tests" / "fixtures" / "legacy_data_v3.tar.gz"
GUILD = 1_100_000_000_000_000_001  # the one server the legacy fixture knows
CSV = b"text,label\nhello,hi\nhey,hi\nbye,bye\nsee you,bye\n"
LIMITS = TenantLimits(
    train_max_bytes=5 << 20, train_max_rows=1000, max_upload_bytes=10 << 20, min_confidence=0.35
)


# ----- names --------------------------------------------------------------------------------


def test_namespaces_are_server_ids_dm_users_or_legacy() -> None:
    assert namespace_for(42, 7) == "42"
    assert namespace_for(None, 7) == dm_namespace(7) == "dm-7"
    assert parse_namespace(" 1100000000000000001 ") == "1100000000000000001"
    assert parse_namespace("DM-5") == "dm-5"
    assert parse_namespace("legacy") == LEGACY


@pytest.mark.parametrize(
    "value", ["", "..", "../1", "1/..", "0", "01", "dm-", "dm-0", "servers", "1 2", "-1", "x" * 99]
)
def test_anything_else_is_not_a_namespace(value: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        parse_namespace(value)
    with pytest.raises(ValueError):
        namespace_dir(tmp_path, value)


def test_known_namespaces_lists_folders_servers_first(tmp_path: Path) -> None:
    for name in ("legacy", "dm-3", "200", "100", "not-a-namespace"):
        (tmp_path / "servers" / name).mkdir(parents=True)
    assert known_namespaces(tmp_path) == ["100", "200", "dm-3", "legacy"]


# ----- one namespace's services never see another's data ------------------------------------


@pytest.fixture
async def tenants(tmp_path: Path) -> Tenants:
    runner = JobRunner(1)
    yield Tenants(tmp_path, runner, LIMITS)
    await runner.close()


async def test_datasets_are_per_namespace_and_the_sample_is_shared(tenants: Tenants) -> None:
    a, b = tenants.get("100"), tenants.get("200")
    await a.datasets.save_async("mine", CSV, "mine.csv")
    assert [i.name for i in await a.datasets.list_async()] == ["mine", "smalltalk"]
    assert [i.name for i in await b.datasets.list_async()] == ["smalltalk"]
    with pytest.raises(NotFoundError):
        await b.datasets.info_async("mine")
    sample = await b.datasets.info_async("smalltalk")
    assert sample.sample and sample.rows > 100
    # A correction of the sample stays in the namespace; the shipped file never changes.
    shipped = (SAMPLES / "smalltalk.csv").read_bytes()
    await a.datasets.add_correction_async("smalltalk", "hello", "Howdy!")
    assert (SAMPLES / "smalltalk.csv").read_bytes() == shipped
    assert (await a.datasets.info_async("smalltalk")).corrections == 1
    assert (await b.datasets.info_async("smalltalk")).corrections == 0
    assert (tenants.data_dir / "servers" / "100" / "datasets" / "mine.csv").is_file()


async def test_models_and_jobs_are_per_namespace(tenants: Tenants) -> None:
    a, b = tenants.get("100"), tenants.get("200")
    await a.datasets.save_async("mine", CSV, "mine.csv")
    job = await a.models.wait(await a.models.start_training("mine"))
    assert job.status == "done", job.error
    assert (job.namespace, job.subject) == ("100", "mine")
    assert (await a.models.predict("mine", "hello")).label == "hi"
    # Server B has neither the dataset nor its model, even by name.
    with pytest.raises(NotFoundError):
        await b.models.start_training("mine")
    with pytest.raises(NoModelError):
        await b.models.predict("mine", "hello")
    assert await b.models.list_versions("mine") == []
    with pytest.raises(NotFoundError):
        await b.models.use_version("mine", "v1")


async def test_each_namespace_trains_its_own_copy_of_the_sample(tenants: Tenants) -> None:
    jobs = [await tenants.get(ns).models.start_training("smalltalk") for ns in ("100", "dm-7")]
    for ns, job in zip(("100", "dm-7"), jobs, strict=True):
        await tenants.get(ns).models.wait(job)
        assert job.status == "done", job.error
    for ns in ("100", "dm-7"):
        manifest = namespace_dir(tenants.data_dir, ns) / "models" / "smalltalk" / "manifest.json"
        assert json.loads(manifest.read_text())["active"] == "v1"
        assert (await tenants.get(ns).models.predict("smalltalk", "hello")).label == "greeting"


async def test_files_see_only_the_namespace_folder(tenants: Tenants) -> None:
    a, b = tenants.get("100"), tenants.get("200")
    await a.datasets.save_async("mine", CSV, "mine.csv")
    name, data = await a.files.read_for_upload("datasets/mine.csv")
    assert name == "mine.csv" and data.startswith(b"text,label,reply\nhello,hi,")
    for path in ("datasets/mine.csv", "../100/datasets/mine.csv", "../../bot.db", "/etc/passwd"):
        with pytest.raises((InvalidInputError, NotFoundError)):
            await b.files.read_for_upload(path)
    # !archive of a sample zips the shipped file (and the namespace's corrections).
    archive = await b.files.archive("smalltalk")
    assert archive.files == 1 and archive.path_relative.startswith("archives/smalltalk-")
    assert (namespace_dir(tenants.data_dir, "200") / archive.path_relative).is_file()


# ----- a bounded cache: least recently used idle namespaces are dropped ----------------------

TALK_V1 = (
    b"text,label,reply\nhello,greet,Hi there!\nhey,greet,Hi there!\n"
    b"bye,leave,Bye!\nsee you,leave,Bye!\n"
)
TALK_V2 = TALK_V1.replace(b"Hi there!", b"Hello again!")


@contextlib.asynccontextmanager
async def bounded(data_dir: Path, max_cached: int) -> AsyncIterator[Tenants]:
    """Tenants keeping at most `max_cached` namespaces, on a one-worker job runner."""
    runner = JobRunner(1)
    tenants = Tenants(data_dir, runner, LIMITS, max_cached=max_cached)
    try:
        yield tenants
    finally:
        await tenants.close()
        await runner.close()


def hold_until(flag: str) -> None:
    """A job that keeps the only worker busy until `flag` exists, so jobs after it queue."""
    deadline = time.monotonic() + 120
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.02)


async def until_idle(tenant: Tenant) -> None:
    """Wait until the tenant's last work has wound up (a finished task is forgotten by a
    callback that runs on the loop's next turns)."""
    for _ in range(1000):
        if not tenant.busy():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"namespace {tenant.namespace} stayed busy")


async def train_and_wait(tenant: Tenant, dataset: str) -> Job:
    job = await tenant.models.wait(await tenant.models.start_training(dataset))
    assert job.status == "done", job.error
    return job


async def test_only_the_most_recently_used_namespaces_are_kept(tmp_path: Path) -> None:
    async with bounded(tmp_path, 3) as tenants:
        got = {ns: tenants.get(ns) for ns in [str(100 + n) for n in range(9)] + ["dm-7"]}
        assert tenants.cached() == ["107", "108", "dm-7"]
        assert tenants.get("107") is got["107"]  # kept, and now the most recent
        tenants.get("200")
        assert tenants.cached() == ["dm-7", "107", "200"]
        # Each namespace's services are still confined to its own folder.
        for ns in tenants.cached():
            folder = namespace_dir(tmp_path, ns)
            tenant = tenants.get(ns)
            assert tenant.datasets.root == folder / "datasets"
            assert tenant.models.models_dir == folder / "models"
            assert tenant.files.data_dir == folder


async def test_a_look_across_namespaces_keeps_the_cache_as_it_was(tmp_path: Path) -> None:
    async with bounded(tmp_path, 2) as tenants:
        await tenants.get("300").datasets.save_async("talk", TALK_V1, "talk.csv")
        active = {ns: tenants.get(ns) for ns in ("100", "200")}
        looked = {ns: tenants.peek(ns) for ns in ("300", "400", "100")}
        assert tenants.cached() == ["100", "200"]  # as before the look
        assert looked["100"] is active["100"]  # a kept namespace's own services
        names = [info.name for info in await looked["300"].datasets.list_async()]
        assert "talk" in names  # an uncached one still shows its own data
        assert "talk" not in [i.name for i in await looked["400"].datasets.list_async()]
        assert looked["300"].datasets.root == namespace_dir(tmp_path, "300") / "datasets"


@pytest.mark.parametrize("blobs", [False, True], ids=["folder", "blobs"])
async def test_an_evicted_namespace_gets_its_data_back(tmp_path: Path, blobs: bool) -> None:
    runner = JobRunner(1, idle_seconds=None)
    async with Storage(tmp_path / "bot.db") as storage:
        shared = DatabaseBlobs(storage) if blobs else None
        tenants = Tenants(tmp_path / "data", runner, LIMITS, blobs=shared, max_cached=3)
        try:
            tenant = tenants.get("100")
            await tenant.datasets.save_async("talk", TALK_V1, "talk.csv")
            await train_and_wait(tenant, "talk")
            await tenant.datasets.save_async("talk", TALK_V2, "talk.csv")
            await train_and_wait(tenant, "talk")
            await tenant.models.use_version("talk", "v1")  # an admin rolled back
            before = await _what_users_see(tenant)
            assert before[1] == "v1" and before[2].reply == "Hi there!"
            old: weakref.ref[ModelService] = weakref.ref(tenant.models)
            del tenant

            for ns in ("200", "300", "dm-7"):
                tenants.get(ns)
            assert "100" not in tenants.cached()
            gc.collect()
            assert old() is None  # its model and services are gone from memory

            again = tenants.get("100")
            assert await _what_users_see(again) == before
        finally:
            await tenants.close()
            await runner.close()


async def _what_users_see(tenant: Tenant) -> tuple[object, ...]:
    datasets = [(d.name, d.rows, d.labels) for d in await tenant.datasets.list_async()]
    active = await tenant.models.active_version("talk")
    versions = [v.version for v in await tenant.models.list_versions("talk")]
    prediction = await tenant.models.predict("talk", "hello")
    return datasets, active and active.version, prediction, versions


async def test_a_namespace_with_a_training_in_progress_is_not_evicted(tmp_path: Path) -> None:
    runner = JobRunner(1, idle_seconds=None)
    tasks = LocalRunner(WorkServices(None, runner))  # the training waits for the only worker
    tenants = Tenants(tmp_path / "data", runner, LIMITS, tasks=tasks, max_cached=1)
    flag = tmp_path / "go"
    runner.submit("hold", "hold", hold_until, str(flag))  # the only worker is busy
    try:
        trainer = tenants.get("100")
        await trainer.datasets.save_async("talk", TALK_V1, "talk.csv")
        ended: asyncio.Queue[Job] = asyncio.Queue()
        await trainer.models.start_training("talk", on_done=ended.put)
        for n in range(10):
            tenants.get(str(200 + n))
        # Over the bound while the training is queued: the others are dropped, not it.
        assert tenants.cached() == ["100", "209"]

        flag.touch()
        job = await asyncio.wait_for(ended.get(), 120)
        assert job.status == "done", job.error
        await until_idle(trainer)
        tenants.get("300")
        assert tenants.cached() == ["300"]
        del trainer
        again = tenants.get("100")
        assert (await again.models.predict("talk", "hello")).reply == "Hi there!"
    finally:
        flag.touch()
        await tenants.close()
        await runner.close()


async def test_services_still_in_use_when_evicted_are_handed_back(tmp_path: Path) -> None:
    async with bounded(tmp_path, 1) as tenants:
        datasets = tenants.get("100").datasets  # a command awaiting a write holds these
        tenants.get("200")
        assert tenants.cached() == ["200"]
        again = tenants.get("100")
        assert again.datasets is datasets  # not a second writer of the same files
        assert again.models.datasets is datasets


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("0", "MAX_CACHED_SERVERS: must be between 1 and"),
        ("-1", "MAX_CACHED_SERVERS: must be between 1 and"),
        ("abc", "MAX_CACHED_SERVERS: is not a number"),
    ],
)
def test_a_bad_cache_size_is_refused_in_one_line(raw: str, problem: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"MAX_CACHED_SERVERS": raw}, env_file=None)
    [reported] = info.value.problems
    assert reported.startswith(problem), reported
    assert load_settings({}, env_file=None).max_cached_servers == 500
    assert load_settings({"MAX_CACHED_SERVERS": "1"}, env_file=None).max_cached_servers == 1


# ----- migration of an older install -------------------------------------------------------


def _unpack_legacy(tmp_path: Path) -> Path:
    with tarfile.open(LEGACY_TAR) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "data"


def _inventory(data: Path) -> dict[str, str]:
    """sha256 of every file under the data folder but the database, by relative path."""
    found = {}
    for path in sorted(data.rglob("*")):
        if path.is_file() and not path.name.startswith("bot.db"):
            found[path.relative_to(data).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


COUNTED_TABLES = ("feedback", "reply_log", "corrections", "guild_settings")


def _rows(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in COUNTED_TABLES
        }


async def _database_rows(location: str | Path) -> dict[str, int]:
    async with Storage(location) as storage, storage.transaction() as conn:
        return {
            table: await conn.scalar(select(func.count()).select_from(sa_table(table)))
            for table in COUNTED_TABLES
        }


async def _legacy_on_postgresql(data: Path, url: str) -> None:
    """Move the legacy install's database into PostgreSQL as it was (revision 0003, the
    same schema as its PRAGMA user_version 3) and delete its SQLite file."""
    with sqlite3.connect(data / "bot.db") as old:
        old.row_factory = sqlite3.Row
        tables = [r[0] for r in old.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {
            t: [dict(r) for r in old.execute(f"SELECT * FROM {t}")]
            for t in tables
            if t != "sqlite_sequence"
        }
    engine = create_engine(database_url(url))
    try:
        async with explicit_begin(engine).begin() as conn:
            await conn.run_sync(migrate.upgrade, target="0003")
            for name, values in rows.items():
                table = await conn.run_sync(lambda c, n=name: Table(n, MetaData(), autoload_with=c))
                if values:
                    await conn.execute(table.insert(), values)
    finally:
        await engine.dispose()
    for path in data.glob("bot.db*"):
        path.unlink()


async def _check_upgraded(
    data: Path, before_files: dict[str, str], before_rows: dict, database: str | None = None
) -> None:
    server = f"servers/{GUILD}"
    after = _inventory(data)
    # The sample's old copy is dropped (identical to the shipped file); all else moved as is.
    expected = {
        f"{server}/{path}": digest
        for path, digest in before_files.items()
        if path != "datasets/smalltalk.csv"
    }
    assert after == expected
    assert not (data / "datasets").exists() and not (data / "models").exists()
    location = database or data / "bot.db"
    assert await _database_rows(location) == before_rows
    assert database is None or not (data / "bot.db").exists()

    async with Storage(location) as storage:
        assert await storage.schema_version() == SCHEMA_VERSION
        assert [f.text for f in await storage.list_feedback(str(GUILD))] == ["server feedback"]
        assert [f.text for f in await storage.list_feedback("dm-203")] == ["dm feedback"]
        corrections = {c.bot_message_id: c for c in await storage.list_corrections(None, 10)}
        assert corrections[900].namespace == str(GUILD)
        assert corrections[901].namespace == "dm-203"
        assert corrections[777].namespace == LEGACY  # no server, no logged reply
        assert corrections[901].dataset_namespace == str(GUILD)  # where its lesson now lives
        assert (await storage.get_reply(900)).namespace == str(GUILD)
        # Every file of the install is now also a blob, byte for byte.
        stored = {
            f"servers/{namespace}/{info.path}": info.sha256
            for namespace in (str(GUILD), LEGACY, "dm-203")
            for info in await DatabaseBlobs(storage).list(namespace)
        }
        assert stored == {p: sha for p, sha in after.items() if "/." not in p}  # not locks
        await _check_served_from_blobs(storage, data.parent / "fresh")

    runner = JobRunner(1)
    try:
        tenant = Tenants(data, runner, LIMITS).get(str(GUILD))
        for dataset in ("smalltalk", "weather"):
            [version] = await tenant.models.list_versions(dataset)
            assert version.active  # the manifest and its sha256 came along
            await tenant.models.predict(dataset, "hello")  # loads only if the sha256 matches
        assert (await tenant.datasets.info_async("weather")).corrections == 1
        assert (await tenant.datasets.info_async("smalltalk")).corrections == 1
    finally:
        await runner.close()


async def _check_served_from_blobs(storage: Storage, fresh_dir: Path) -> None:
    """A process with an empty DATA_DIR on the same database has the upgraded data."""
    runner = JobRunner(1)
    try:
        tenant = Tenants(fresh_dir, runner, LIMITS, blobs=DatabaseBlobs(storage)).get(str(GUILD))
        assert {"smalltalk", "weather"} <= {d.name for d in await tenant.datasets.list_async()}
        assert (await tenant.datasets.info_async("weather")).corrections == 1
        [version] = await tenant.models.list_versions("weather")
        assert version.active
        assert (await tenant.models.predict("weather", "hello")).reply
    finally:
        await runner.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_an_older_install_is_upgraded_without_losing_anything(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    data = _unpack_legacy(tmp_path)
    files, rows = _inventory(data), _rows(data / "bot.db")
    assert "models/weather/v1.joblib" in files and "datasets/weather.corrections.csv" in files
    database = None
    if backend == "postgresql":
        database = request.getfixturevalue("postgres_url")
        await _legacy_on_postgresql(data, database)
        files = _inventory(data)

    storage = await open_storage_at(data, database)
    await storage.close()
    await _check_upgraded(data, files, rows, database)

    # Idempotent: a second start changes nothing.
    storage = await open_storage_at(data, database)
    await storage.close()
    await _check_upgraded(data, files, rows, database)


CRASHING_START = """
import asyncio, os, signal, sys
from pathlib import Path
from bot.config import load_settings
from bot.wiring import open_storage

real_rename, moves = os.rename, []
def rename(src, dst):
    real_rename(src, dst)
    moves.append(dst)
    if len(moves) == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)  # die in the middle of the move
os.rename = rename
settings = load_settings({"DATA_DIR": sys.argv[1]}, env_file=None)
asyncio.run(open_storage(settings))
"""


@pytest.mark.parametrize("kill_after", [1, 3])
async def test_a_crash_in_the_middle_is_finished_at_the_next_start(
    tmp_path: Path, kill_after: int
) -> None:
    data = _unpack_legacy(tmp_path)
    files, rows = _inventory(data), _rows(data / "bot.db")
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CRASHING_START, str(data), str(kill_after)],
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert (
        (data / "datasets").exists() or (data / "models").exists() or (data / "archives").exists()
    )

    storage = await open_storage_at(data)
    await storage.close()
    await _check_upgraded(data, files, rows)


async def test_rows_of_an_install_that_knew_several_servers_go_to_legacy(tmp_path: Path) -> None:
    data = _unpack_legacy(tmp_path)
    with sqlite3.connect(data / "bot.db") as conn:
        conn.execute("INSERT INTO guild_settings VALUES (300, 'language', '\"de\"')")
    storage = await open_storage_at(data)
    try:
        assert await storage.get_meta("shared_files_namespace") == LEGACY
        [feedback] = await storage.list_feedback(str(GUILD))
        assert feedback.text == "server feedback"  # rows of a known server stay its own
    finally:
        await storage.close()
    assert (data / "servers" / LEGACY / "models" / "weather" / "v1.joblib").is_file()
    assert not (data / "servers" / str(GUILD)).exists()


def test_migrate_files_keeps_both_when_a_name_is_taken(tmp_path: Path) -> None:
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "x.csv").write_text("old")
    taken = namespace_dir(tmp_path, "5") / "datasets"
    taken.mkdir(parents=True)
    (taken / "x.csv").write_text("new")
    assert migrate_files(tmp_path, "5") == 1
    assert (taken / "x.csv").read_text() == "new"
    assert (namespace_dir(tmp_path, LEGACY) / "datasets" / "x.csv").read_text() == "old"
    assert migrate_files(tmp_path, "5") == 0


async def open_storage_at(data: Path, database: str | None = None) -> Storage:
    from bot.config import load_settings

    environ = {"DATA_DIR": str(data), "DATABASE_URL": database or ""}
    return await open_storage(load_settings(environ, env_file=None))


def test_the_fixture_is_an_older_install() -> None:
    assert os.path.getsize(LEGACY_TAR) < 200_000
    with tarfile.open(LEGACY_TAR) as tar:
        names = tar.getnames()
    assert "data/models/weather/manifest.json" in names and "data/servers" not in names
