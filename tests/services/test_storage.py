"""Storage: settings, feedback, reply log, corrections, privacy, concurrency, durability,
migrations. Every test that takes `location` or `storage` runs on SQLite and on a real
PostgreSQL server (tests/postgres.py)."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import signal
import socket
import sqlite3
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, func, inspect, select
from sqlalchemy import text as sql
from sqlalchemy.exc import DBAPIError

from bot.services.storage import (
    SCHEMA_VERSION,
    DatabaseUrlError,
    Feedback,
    Storage,
    StorageUnavailableError,
    database_url,
    migrate,
    shown_url,
)
from bot.services.storage.engine import create_engine, explicit_begin
from bot.services.storage.schema import metadata
from bot.services.tenancy.namespaces import namespace_for
from tests.services.conftest import Location

REPO = Path(__file__).resolve().parents[2]


async def _inspect(location: Location, look: Callable[[Connection], Any]) -> Any:
    """Run `look(connection)` on the database without Storage (and without migrating it)."""
    if isinstance(location, Path):
        location.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(database_url(location))
    try:
        async with explicit_begin(engine).begin() as conn:
            return await conn.run_sync(look)
    finally:
        await engine.dispose()


def _pragma(db: Path, name: str) -> object:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


# Opening and the connection


def test_locations_name_a_backend_and_urls_never_show_their_password(tmp_path: Path) -> None:
    assert database_url(tmp_path / "bot.db").drivername == "sqlite+aiosqlite"
    assert database_url("data/bot.db").database == str(Path("data/bot.db").absolute())
    for url in ("postgresql://u:secret@db/bot", "postgres://u:secret@db/bot"):
        assert database_url(url).drivername == "postgresql+asyncpg"
        assert "secret" not in shown_url(url) and "secret" not in repr(Storage(url))
    assert database_url("sqlite:///x/bot.db").database == "x/bot.db"
    for bad in ("mysql://u:p@h/db", "sqlite://", "postgresql+psycopg2://h/db"):
        with pytest.raises(DatabaseUrlError):
            database_url(bad)


async def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    storage = Storage(f"postgresql://bot:s3cret@127.0.0.1:{port}/bot")
    with pytest.raises(StorageUnavailableError, match=f"bot:\\*\\*\\*@127.0.0.1:{port}") as info:
        await storage.open()
    assert "s3cret" not in str(info.value)
    (tmp_path / "bot.db").mkdir()  # a folder where the file should be
    with pytest.raises(StorageUnavailableError, match="bot.db"):
        await Storage(tmp_path / "bot.db").open()


async def test_open_creates_the_database_at_the_latest_version(location: Location) -> None:
    async with Storage(location) as storage:
        assert await storage.schema_version() == SCHEMA_VERSION
        assert await storage.get_meta("shared_files_namespace") == "legacy"
    tables = await _inspect(location, lambda c: set(inspect(c).get_table_names()))
    assert tables == {*metadata.tables, "alembic_version"}


async def test_migrations_build_exactly_the_schema_the_queries_use(storage: Storage) -> None:
    def differences(conn: Connection) -> list[Any]:
        return compare_metadata(MigrationContext.configure(conn), metadata)

    async with storage.transaction() as conn:
        assert await conn.run_sync(differences) == []


async def test_sqlite_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "bot.db"
    async with Storage(db) as storage:
        assert db.is_file()
        async with storage.transaction() as conn:
            assert await conn.scalar(sql("PRAGMA synchronous")) == 2  # FULL
            assert await conn.scalar(sql("PRAGMA foreign_keys")) == 1
    assert _pragma(db, "journal_mode") == "wal"
    assert _pragma(db, "user_version") == SCHEMA_VERSION  # older releases read it


async def test_sqlite_queries_run_on_the_connections_own_thread(tmp_path: Path) -> None:
    async with Storage(tmp_path / "bot.db") as storage:
        async with storage.transaction() as conn:
            raw = await conn.get_raw_connection()
            await raw.driver_connection.create_function(
                "thread_name", 0, lambda: threading.current_thread().name
            )
        names = await asyncio.gather(
            *(storage._rows(select(func.thread_name().label("name"))) for _ in range(20))
        )
    threads = {rows[0]["name"] for rows in names}
    assert len(threads) == 1
    assert threads != {threading.current_thread().name}


async def test_closed_storage_refuses_work_and_close_is_idempotent(location: Location) -> None:
    storage = Storage(location)
    with pytest.raises(RuntimeError):
        await storage.add_feedback(1, 2, 3, "too early", namespace=namespace_for(2, 1))
    await storage.open()
    with pytest.raises(RuntimeError):
        await storage.open()
    await storage.close()
    await storage.close()
    with pytest.raises(RuntimeError):
        await storage.list_feedback("2")


async def test_close_waits_for_the_writes_under_way(location: Location) -> None:
    storage = Storage(location)
    await storage.open()
    writes = [
        asyncio.create_task(
            storage.add_feedback(u, 5, 6, "in flight", namespace=namespace_for(5, u))
        )
        for u in range(20)
    ]
    await asyncio.sleep(0)  # every write has started
    await storage.close()
    ids = await asyncio.gather(*writes)
    async with Storage(location) as reopened:
        assert sorted(f.id for f in await reopened.list_feedback("5", 100)) == sorted(ids)


async def test_data_survives_reopening(location: Location) -> None:
    async with Storage(location) as storage:
        feedback_id = await storage.add_feedback(1, 2, 3, "keep me", namespace=namespace_for(2, 1))
        await storage.set_guild_setting(2, "dataset", "smalltalk")
    async with Storage(location) as storage:
        assert [f.id for f in await storage.list_feedback("2")] == [feedback_id]
        assert await storage.get_guild_setting(2, "dataset") == "smalltalk"


async def test_discord_sized_ids_round_trip(storage: Storage) -> None:
    big = 1_100_000_000_000_000_001
    await storage.set_guild_setting(big, "language", "fr-FR")
    await storage.add_feedback(
        big + 1, big, big + 2, "big ids", namespace=namespace_for(big, big + 1)
    )
    await storage.log_reply(
        big + 3,
        big + 2,
        big,
        big + 1,
        big + 4,
        "q",
        "a",
        "chat",
        namespace=namespace_for(big, big + 1),
    )
    assert await storage.guild_settings(big) == {"language": "fr-FR"}
    [entry] = await storage.list_feedback(str(big))
    assert (entry.user_id, entry.guild_id, entry.channel_id) == (big + 1, big, big + 2)
    assert (await storage.get_reply(big + 3)).user_message_id == big + 4  # type: ignore[union-attr]


# Settings


async def test_guild_settings_round_trip_json_values(storage: Storage) -> None:
    assert await storage.get_guild_setting(1, "language") is None
    assert await storage.get_guild_setting(1, "language", "en-US") == "en-US"
    await storage.set_guild_setting(1, "language", "fr-FR")
    await storage.set_guild_setting(1, "chat_channels", [10, 11])
    await storage.set_guild_setting(1, "voice", {"engine": "piper", "speed": 1.25})
    await storage.set_guild_setting(1, "enabled", False)
    await storage.set_guild_setting(2, "language", "de-DE")
    await storage.set_guild_setting(1, "language", "es-ES")  # overwrite

    assert await storage.get_guild_setting(1, "language") == "es-ES"
    assert await storage.get_guild_setting(1, "enabled", True) is False
    assert await storage.guild_settings(1) == {
        "chat_channels": [10, 11],
        "enabled": False,
        "language": "es-ES",
        "voice": {"engine": "piper", "speed": 1.25},
    }
    assert await storage.guild_settings(2) == {"language": "de-DE"}
    assert await storage.guild_settings(3) == {}


async def test_setting_none_removes_the_key(storage: Storage) -> None:
    await storage.set_guild_setting(1, "language", "fr-FR")
    await storage.set_guild_setting(1, "language", None)
    assert await storage.get_guild_setting(1, "language", "en-US") == "en-US"
    assert await storage.guild_settings(1) == {}


async def test_channel_settings_are_separate_from_guild_settings(storage: Storage) -> None:
    await storage.set_channel_setting(5, "chat", True)
    await storage.set_guild_setting(5, "chat", False)
    assert await storage.get_channel_setting(5, "chat") is True
    assert await storage.get_channel_setting(6, "chat", "unset") == "unset"
    assert await storage.get_guild_setting(5, "chat") is False
    assert await storage.channel_settings(5) == {"chat": True}


# Feedback


async def test_feedback_is_listed_newest_first_per_server(storage: Storage) -> None:
    first = await storage.add_feedback(1, 100, 7, "first", namespace=namespace_for(100, 1))
    second = await storage.add_feedback(2, 100, 7, "second", namespace=namespace_for(100, 2))
    await storage.add_feedback(3, 200, 8, "other server", namespace=namespace_for(200, 3))
    in_dm = await storage.add_feedback(4, None, 9, "in a DM", namespace=namespace_for(None, 4))

    listed = await storage.list_feedback("100")
    assert [f.id for f in listed] == [second, first]
    assert listed[0] == Feedback(
        id=second,
        user_id=2,
        guild_id=100,
        channel_id=7,
        text="second",
        created_at=listed[0].created_at,
        namespace="100",
    )
    created = datetime.fromisoformat(listed[0].created_at)
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    assert [f.id for f in await storage.list_feedback("100", limit=1)] == [second]
    assert [f.text for f in await storage.list_feedback("dm-4")] == ["in a DM"]
    assert (await storage.list_feedback("dm-4"))[0].id == in_dm
    everywhere = await storage.list_feedback(None)  # an owner's bot-wide view
    assert [f.namespace for f in everywhere] == ["dm-4", "200", "100", "100"]


async def test_fifty_simultaneous_feedback_writes_give_fifty_rows(storage: Storage) -> None:
    ids = await asyncio.gather(
        *(
            storage.add_feedback(user, 100, 7, f"note {user}", namespace=namespace_for(100, user))
            for user in range(50)
        )
    )
    assert len(set(ids)) == 50
    rows = await storage.list_feedback("100", limit=1000)
    assert len(rows) == 50
    assert {f.text for f in rows} == {f"note {user}" for user in range(50)}
    assert sorted(f.id for f in rows) == sorted(ids)


async def test_feedback_csv_has_a_header_all_rows_and_defuses_formulas(storage: Storage) -> None:
    texts = [
        "plain words",
        '=HYPERLINK("http://example.invalid","x")',
        "+1 agree",
        "-5 for this",
        "@SUM(A1)",
        'commas, "quotes"\nand a new line',
        "héllo ✓",
    ]
    for text in texts:
        await storage.add_feedback(11, 100, 7, text, namespace=namespace_for(100, 11))
    await storage.add_feedback(12, 200, 8, "other server", namespace=namespace_for(200, 12))

    data = await storage.feedback_csv("100")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert rows[0] == ["id", "created_at", "user_id", "guild_id", "channel_id", "text", "server"]
    body = rows[1:]
    assert [r[5] for r in body] == [
        "plain words",
        '\'=HYPERLINK("http://example.invalid","x")',
        "'+1 agree",
        "'-5 for this",
        "'@SUM(A1)",
        'commas, "quotes"\nand a new line',
        "héllo ✓",
    ]
    assert all(r[2:5] == ["11", "100", "7"] for r in body)
    assert [int(r[0]) for r in body] == sorted(int(r[0]) for r in body)  # oldest first
    assert all(datetime.fromisoformat(r[1]) for r in body)


async def test_feedback_csv_of_direct_messages_leaves_guild_empty(storage: Storage) -> None:
    await storage.add_feedback(11, None, 7, "from a DM", namespace=namespace_for(None, 11))
    rows = list(csv.reader(io.StringIO((await storage.feedback_csv("dm-11")).decode())))
    assert len(rows) == 2 and rows[1][3] == "" and rows[1][5] == "from a DM"
    assert rows[1][6] == "dm-11"
    only_header = (await storage.feedback_csv("999")).decode().splitlines()
    assert only_header == ["id,created_at,user_id,guild_id,channel_id,text,server"]


# Reply log and corrections


async def test_reply_log_round_trip_and_replace(storage: Storage) -> None:
    assert await storage.get_reply(500) is None
    await storage.log_reply(
        500, 7, 100, 11, 499, "hello bot", "hi there", "chat", namespace=namespace_for(100, 11)
    )
    reply = await storage.get_reply(500)
    assert reply is not None
    assert (reply.bot_message_id, reply.channel_id, reply.guild_id, reply.user_id) == (
        500,
        7,
        100,
        11,
    )
    assert (reply.user_message_id, reply.user_text, reply.reply_text, reply.kind) == (
        499,
        "hello bot",
        "hi there",
        "chat",
    )
    await storage.log_reply(
        500, 7, 100, 11, None, "(voice)", "edited", "transcript", namespace=namespace_for(100, 11)
    )
    replaced = await storage.get_reply(500)
    assert replaced is not None
    assert (replaced.user_message_id, replaced.reply_text, replaced.kind) == (
        None,
        "edited",
        "transcript",
    )


async def test_corrections_are_listed_newest_first_per_server(storage: Storage) -> None:
    first = await storage.add_correction(
        500, 11, 100, "hi there", "hello friend", namespace=namespace_for(100, 11)
    )
    second = await storage.add_correction(
        501, 12, 100, "bye", "see you", namespace=namespace_for(100, 12)
    )
    await storage.add_correction(502, 13, 200, "x", "y", namespace=namespace_for(200, 13))
    in_dm = await storage.add_correction(503, 14, None, "a", "b", namespace=namespace_for(None, 14))

    listed = await storage.list_corrections("100", 10)
    assert [c.id for c in listed] == [second, first]
    assert (listed[1].bot_message_id, listed[1].user_id, listed[1].guild_id) == (500, 11, 100)
    assert (listed[1].original, listed[1].correction) == ("hi there", "hello friend")
    assert [c.id for c in await storage.list_corrections("100", 1)] == [second]
    assert [c.id for c in await storage.list_corrections("dm-14", 10)] == [in_dm]
    assert len(await storage.list_corrections(None, 10)) == 4


# Privacy


async def test_forget_user_deletes_only_that_users_rows_and_counts_them(storage: Storage) -> None:
    for n in range(2):
        await storage.add_feedback(11, 100, 7, f"mine {n}", namespace=namespace_for(100, 11))
    await storage.add_feedback(12, 100, 7, "someone else's", namespace=namespace_for(100, 12))
    await storage.add_correction(500, 11, 100, "a", "b", namespace=namespace_for(100, 11))
    await storage.add_correction(501, 12, 100, "c", "d", namespace=namespace_for(100, 12))
    for n in range(3):
        await storage.log_reply(
            600 + n, 7, 100, 11, 590 + n, "q", "a", "chat", namespace=namespace_for(100, 11)
        )
    await storage.log_reply(
        700, 7, 100, 12, 690, "q", "a", "chat", namespace=namespace_for(100, 12)
    )

    assert await storage.forget_user(11) == {"feedback": 2, "corrections": 1, "reply_log": 3}
    assert [f.user_id for f in await storage.list_feedback("100")] == [12]
    assert [c.user_id for c in await storage.list_corrections("100", 10)] == [12]
    assert await storage.get_reply(600) is None
    assert await storage.get_reply(700) is not None
    assert await storage.forget_user(11) == {"feedback": 0, "corrections": 0, "reply_log": 0}


# Durability


async def test_acknowledged_feedback_survives_sigkill(location: Location) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if isinstance(location, Path):
        location.parent.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.services.storage_writer",
        str(location),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    acked: dict[int, str] = {}

    def note(line: bytes) -> None:
        if line.startswith(b"ACK "):
            _, feedback_id, text = line.decode().rstrip("\n").split(" ", 2)
            acked[int(feedback_id)] = text

    try:
        while len(acked) < 100:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
            if not line:
                stderr = (await proc.stderr.read()).decode(errors="replace")
                pytest.fail(f"writer ended before 100 acknowledgements:\n{stderr}")
            note(line)
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of the stream of writes
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    for line in (await proc.stdout.read()).splitlines(keepends=True):
        note(line)  # acknowledged before the kill, still in the pipe

    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 100
    if isinstance(location, Path):
        with sqlite3.connect(location) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    async with Storage(location) as storage:
        stored = {f.id: f.text for f in await storage.list_feedback("42", limit=1_000_000)}
    missing = {i: t for i, t in acked.items() if stored.get(i) != t}
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {list(missing)[:5]}"


# Migrations

VERSION_1_SCHEMA = """
CREATE TABLE guild_settings (guild_id INTEGER NOT NULL, key TEXT NOT NULL,
    value TEXT NOT NULL, PRIMARY KEY (guild_id, key));
CREATE TABLE channel_settings (channel_id INTEGER NOT NULL, key TEXT NOT NULL,
    value TEXT NOT NULL, PRIMARY KEY (channel_id, key));
CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL,
    guild_id INTEGER, channel_id INTEGER NOT NULL, text TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE TABLE reply_log (bot_message_id INTEGER PRIMARY KEY, channel_id INTEGER NOT NULL,
    guild_id INTEGER, user_id INTEGER NOT NULL, user_message_id INTEGER,
    user_text TEXT NOT NULL, reply_text TEXT NOT NULL, kind TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE TABLE corrections (id INTEGER PRIMARY KEY AUTOINCREMENT,
    bot_message_id INTEGER NOT NULL, user_id INTEGER NOT NULL, original TEXT NOT NULL,
    correction TEXT NOT NULL, created_at TEXT NOT NULL);
PRAGMA user_version = 1;
"""
VERSION_1_ROWS = (
    "INSERT INTO feedback (user_id, guild_id, channel_id, text, created_at) "
    "VALUES (11, 100, 7, 'old feedback', '2026-01-01T00:00:00+00:00')",
    "INSERT INTO reply_log VALUES (500, 7, 100, 11, 499, 'hi', 'hello', 'chat', "
    "'2026-01-01T00:00:00+00:00')",
    "INSERT INTO corrections (bot_message_id, user_id, original, correction, created_at) "
    "VALUES (500, 12, 'hello', 'hey there', '2026-01-01T00:00:01+00:00')",
    "INSERT INTO guild_settings VALUES (100, 'language', '\"fr-FR\"')",
)


async def _make_version_1(location: Location) -> None:
    """A database at schema version 1 with some rows in it: on SQLite as the first release
    left it (no Alembic, PRAGMA user_version = 1); on PostgreSQL migrated to revision 0001."""
    if isinstance(location, Path):
        location.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(location)
        try:
            conn.executescript(VERSION_1_SCHEMA)
            for statement in VERSION_1_ROWS:
                conn.execute(statement)
            conn.commit()
        finally:
            conn.close()
        return

    def fill(conn: Connection) -> None:
        migrate.upgrade(conn, target="0001")
        for statement in VERSION_1_ROWS:
            conn.execute(sql(statement))

    await _inspect(location, fill)


def _describe(conn: Connection) -> dict[str, Any]:
    """Tables (columns with type and nullability, primary key) and indexes."""
    found: dict[str, Any] = {}
    schema = inspect(conn)
    for table in sorted(schema.get_table_names()):
        keys = schema.get_pk_constraint(table)["constrained_columns"]
        columns = [
            (c["name"], str(c["type"]), bool(c["nullable"]) and c["name"] not in keys)
            for c in schema.get_columns(table)
        ]
        indexes = sorted((i["name"], tuple(i["column_names"])) for i in schema.get_indexes(table))
        found[table] = (columns, keys, indexes)
    return found


async def test_migrations_upgrade_an_older_schema_and_keep_its_rows(
    location: Location, another_location: Location
) -> None:
    await _make_version_1(location)

    async with Storage(location) as storage:
        assert await storage.schema_version() == SCHEMA_VERSION
        assert [f.text for f in await storage.list_feedback("100")] == ["old feedback"]
        assert await storage.get_guild_setting(100, "language") == "fr-FR"
        assert (await storage.get_reply(500)).reply_text == "hello"  # type: ignore[union-attr]
        [correction] = await storage.list_corrections("100", 10)
        assert correction.guild_id == 100  # filled in from the reply log by migration 2
        assert correction.namespace == "100"  # and its namespace by migration 4
        assert (correction.original, correction.correction) == ("hello", "hey there")
        assert await storage.get_meta("shared_files_namespace") == "100"
        new_id = await storage.add_correction(
            501, 13, 100, "a", "b", namespace=namespace_for(100, 13)
        )
        assert new_id > correction.id

    async with Storage(another_location):
        pass
    upgraded = await _inspect(location, _describe)
    assert upgraded == await _inspect(another_location, _describe)
    assert ("corrections_by_guild", ("guild_id", "id")) in upgraded["corrections"][2]


async def test_an_older_sqlite_database_is_adopted_at_each_version(tmp_path: Path) -> None:
    """A database the bot made before Alembic, at any of its versions, is stamped and
    upgraded: the rows written at that version are all still there."""
    for version in range(1, migrate.LAST_PRE_ALEMBIC_VERSION + 1):
        db = tmp_path / f"v{version}.db"
        await _make_version_1(db)
        # The steps of the old bot after version 1 are the Alembic revisions: take the
        # database to `version` with them, then drop Alembic's record as the old bot had none.
        engine = create_engine(database_url(db))
        try:
            async with explicit_begin(engine).begin() as conn:
                await conn.run_sync(migrate.upgrade, target=migrate.revision_name(version))
                await conn.execute(sql("DROP TABLE alembic_version"))
        finally:
            await engine.dispose()
        assert _pragma(db, "user_version") == version
        async with Storage(db) as storage:
            assert await storage.schema_version() == SCHEMA_VERSION
            assert [f.text for f in await storage.list_feedback(None)] == ["old feedback"]
            assert (await storage.list_corrections(None))[0].guild_id == 100


async def test_a_newer_schema_is_refused(location: Location) -> None:
    if isinstance(location, Path):
        location.parent.mkdir(parents=True)
        with sqlite3.connect(location) as conn:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    else:

        def newer(conn: Connection) -> None:
            migrate.upgrade(conn)
            conn.execute(migrate.version_table.update().values(version_num="9999"))

        await _inspect(location, newer)
    storage = Storage(location)
    with pytest.raises(RuntimeError, match="update the bot"):
        await storage.open()
    with pytest.raises(RuntimeError):
        await storage.list_feedback("1")


async def test_another_applications_database_is_refused(location: Location) -> None:
    def foreign(conn: Connection) -> None:
        migrate.version_table.create(conn)
        conn.execute(migrate.version_table.insert().values(version_num="ae1027a6acf"))

    await _inspect(location, foreign)
    with pytest.raises(RuntimeError, match="a database of its own"):
        await Storage(location).open()


BROKEN_MIGRATION = """
import sqlalchemy as sa
from alembic import op

revision = "{next}"
down_revision = "{last}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_done", sa.Column("x", sa.Integer))
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("half_column", sa.Text))
    op.execute(sa.text("INSERT INTO no_such_table VALUES (1)"))
"""


async def test_a_failing_migration_is_rolled_back(
    location: Location, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Storage(location) as storage:
        await storage.add_feedback(1, 2, 3, "before", namespace=namespace_for(2, 1))

    broken = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, broken)
    last = migrate.revision_name(SCHEMA_VERSION)
    following = migrate.revision_name(SCHEMA_VERSION + 1)
    (broken / "versions" / f"{following}_broken.py").write_text(
        BROKEN_MIGRATION.format(next=following, last=last)
    )
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", broken)
    with pytest.raises(DBAPIError):
        await Storage(location).open()
    monkeypatch.undo()

    def state(conn: Connection) -> tuple[int | None, set[str], list[str]]:
        schema = inspect(conn)
        columns = [c["name"] for c in schema.get_columns("feedback")]
        return migrate.current_version(conn), set(schema.get_table_names()), columns

    version, tables, columns = await _inspect(location, state)
    assert version == SCHEMA_VERSION
    assert "half_done" not in tables and "half_column" not in columns
    if isinstance(location, Path):
        assert _pragma(location, "user_version") == SCHEMA_VERSION
    async with Storage(location) as storage:
        assert [f.text for f in await storage.list_feedback("2")] == ["before"]


async def test_storages_opened_together_migrate_once(location: Location) -> None:
    """Processes of the bot that start at once each run the migrations: one does the work,
    the others find it done."""
    storages = [Storage(location) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in storages))
    try:
        versions = await asyncio.gather(*(s.schema_version() for s in storages))
        assert versions == [SCHEMA_VERSION] * 3
    finally:
        for s in storages:
            await s.close()


async def test_reply_log_and_corrections_remember_the_dataset(storage: Storage) -> None:
    await storage.log_reply(
        10, 1, 2, 3, 4, "hello", "Hi!", "chat", dataset="smalltalk", namespace=namespace_for(2, 3)
    )
    assert (await storage.get_reply(10)).dataset == "smalltalk"
    await storage.add_correction(
        10,
        5,
        2,
        "Hi!",
        "Howdy!",
        dataset="smalltalk",
        user_text="hello",
        namespace=namespace_for(2, 5),
    )
    await storage.add_correction(11, 6, 2, "x", "y", namespace=namespace_for(2, 6))
    [mine] = await storage.user_corrections(5)
    assert (mine.dataset, mine.user_text, mine.correction) == ("smalltalk", "hello", "Howdy!")
    assert (await storage.user_corrections(6))[0].dataset is None


async def test_text_with_a_lone_surrogate_is_stored_with_a_replacement(storage: Storage) -> None:
    """JSON can carry half a character (\\ud800); what a user sends must still be stored."""
    await storage.add_feedback(
        1, 100, 7, "hi \ud800 there \ud83d\ude00", namespace=namespace_for(100, 1)
    )
    await storage.log_reply(
        10, 7, 100, 1, 9, "q \udc00", "a", "chat", namespace=namespace_for(100, 1)
    )
    [entry] = await storage.list_feedback("100")
    assert entry.text == "hi \ufffd there \U0001f600"  # a proper pair stays one character
    assert (await storage.get_reply(10)).user_text == "q \ufffd"  # type: ignore[union-attr]


async def test_text_with_nul_is_stored_with_a_replacement(storage: Storage) -> None:
    """PostgreSQL text cannot hold NUL; both backends store U+FFFD in its place."""
    await storage.add_feedback(1, 100, 7, "a\x00b", namespace=namespace_for(100, 1))
    assert [f.text for f in await storage.list_feedback("100")] == ["a\ufffdb"]
    await storage.set_guild_setting(100, "note", "c\x00d")  # JSON spells it \u0000: kept
    assert await storage.get_guild_setting(100, "note") == "c\x00d"


# A user's own settings (the listening opt-out): the same in every server


async def test_user_settings_hold_everywhere_and_are_forgotten_alone(storage: Storage) -> None:
    await storage.set_user_setting(11, "listen_optout", True)
    await storage.set_user_setting(12, "listen_optout", True)
    await storage.set_user_setting(11, "other", "x")
    await storage.set_guild_setting(100, "listen_optout", "a server's, not a user's")
    assert await storage.get_user_setting(11, "listen_optout") is True
    assert await storage.get_user_setting(13, "listen_optout", False) is False
    assert await storage.users_with_setting("listen_optout") == {11: True, 12: True}
    assert await storage.guild_settings(100) == {"listen_optout": "a server's, not a user's"}

    assert await storage.forget_user_settings(11) == 2
    assert await storage.users_with_setting("listen_optout") == {12: True}
    assert await storage.forget_user_settings(11) == 0
    await storage.set_user_setting(12, "listen_optout", None)
    assert await storage.users_with_setting("listen_optout") == {}
