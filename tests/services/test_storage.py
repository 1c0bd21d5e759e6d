"""Storage: settings, feedback, reply log, corrections, privacy, concurrency, durability,
migrations."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.services import storage as storage_module
from bot.services.storage import SCHEMA_VERSION, Feedback, Storage

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    async with Storage(tmp_path / "data" / "bot.db") as opened:
        yield opened


def _pragma(db: Path, name: str) -> object:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


# Opening and the connection


async def test_open_creates_the_folder_in_wal_mode_at_the_latest_version(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "bot.db"
    async with Storage(db) as storage:
        assert db.is_file()
        assert await storage.schema_version() == SCHEMA_VERSION
        synchronous = await storage._run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        foreign_keys = await storage._run(lambda c: c.execute("PRAGMA foreign_keys").fetchone()[0])
        assert synchronous == 2  # FULL
        assert foreign_keys == 1
    assert _pragma(db, "journal_mode") == "wal"
    assert _pragma(db, "user_version") == SCHEMA_VERSION


async def test_queries_run_on_one_worker_thread_off_the_event_loop(storage: Storage) -> None:
    names = await asyncio.gather(
        *(storage._run(lambda _c: threading.current_thread().name) for _ in range(20))
    )
    assert len(set(names)) == 1
    assert names[0] != threading.current_thread().name
    assert names[0].startswith("storage")


async def test_closed_storage_refuses_work_and_close_is_idempotent(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "bot.db")
    with pytest.raises(RuntimeError):
        await storage.add_feedback(1, 2, 3, "too early")
    await storage.open()
    await storage.close()
    await storage.close()
    with pytest.raises(RuntimeError):
        await storage.list_feedback("2")


async def test_data_survives_reopening(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    async with Storage(db) as storage:
        feedback_id = await storage.add_feedback(1, 2, 3, "keep me")
        await storage.set_guild_setting(2, "dataset", "smalltalk")
    async with Storage(db) as storage:
        assert [f.id for f in await storage.list_feedback("2")] == [feedback_id]
        assert await storage.get_guild_setting(2, "dataset") == "smalltalk"


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
    first = await storage.add_feedback(1, 100, 7, "first")
    second = await storage.add_feedback(2, 100, 7, "second")
    await storage.add_feedback(3, 200, 8, "other server")
    in_dm = await storage.add_feedback(4, None, 9, "in a DM")

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
        *(storage.add_feedback(user, 100, 7, f"note {user}") for user in range(50))
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
        await storage.add_feedback(11, 100, 7, text)
    await storage.add_feedback(12, 200, 8, "other server")

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
    await storage.add_feedback(11, None, 7, "from a DM")
    rows = list(csv.reader(io.StringIO((await storage.feedback_csv("dm-11")).decode())))
    assert len(rows) == 2 and rows[1][3] == "" and rows[1][5] == "from a DM"
    assert rows[1][6] == "dm-11"
    only_header = (await storage.feedback_csv("999")).decode().splitlines()
    assert only_header == ["id,created_at,user_id,guild_id,channel_id,text,server"]


# Reply log and corrections


async def test_reply_log_round_trip_and_replace(storage: Storage) -> None:
    assert await storage.get_reply(500) is None
    await storage.log_reply(500, 7, 100, 11, 499, "hello bot", "hi there", "chat")
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
    await storage.log_reply(500, 7, 100, 11, None, "(voice)", "edited", "transcript")
    replaced = await storage.get_reply(500)
    assert replaced is not None
    assert (replaced.user_message_id, replaced.reply_text, replaced.kind) == (
        None,
        "edited",
        "transcript",
    )


async def test_corrections_are_listed_newest_first_per_server(storage: Storage) -> None:
    first = await storage.add_correction(500, 11, 100, "hi there", "hello friend")
    second = await storage.add_correction(501, 12, 100, "bye", "see you")
    await storage.add_correction(502, 13, 200, "x", "y")
    in_dm = await storage.add_correction(503, 14, None, "a", "b")

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
        await storage.add_feedback(11, 100, 7, f"mine {n}")
    await storage.add_feedback(12, 100, 7, "someone else's")
    await storage.add_correction(500, 11, 100, "a", "b")
    await storage.add_correction(501, 12, 100, "c", "d")
    for n in range(3):
        await storage.log_reply(600 + n, 7, 100, 11, 590 + n, "q", "a", "chat")
    await storage.log_reply(700, 7, 100, 12, 690, "q", "a", "chat")

    assert await storage.forget_user(11) == {"feedback": 2, "corrections": 1, "reply_log": 3}
    assert [f.user_id for f in await storage.list_feedback("100")] == [12]
    assert [c.user_id for c in await storage.list_corrections("100", 10)] == [12]
    assert await storage.get_reply(600) is None
    assert await storage.get_reply(700) is not None
    assert await storage.forget_user(11) == {"feedback": 0, "corrections": 0, "reply_log": 0}


# Durability


async def test_acknowledged_feedback_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.services.storage_writer",
        str(db),
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
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    async with Storage(db) as storage:
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


def _make_version_1_db(db: Path) -> None:
    """A database as the first release left it, with some rows in it."""
    conn = sqlite3.connect(db)
    try:
        conn.executescript(VERSION_1_SCHEMA)
        conn.execute(
            "INSERT INTO feedback (user_id, guild_id, channel_id, text, created_at) "
            "VALUES (11, 100, 7, 'old feedback', '2026-01-01T00:00:00+00:00')"
        )
        conn.execute(
            "INSERT INTO reply_log VALUES (500, 7, 100, 11, 499, 'hi', 'hello', 'chat', "
            "'2026-01-01T00:00:00+00:00')"
        )
        conn.execute(
            "INSERT INTO corrections (bot_message_id, user_id, original, correction, created_at) "
            "VALUES (500, 12, 'hello', 'hey there', '2026-01-01T00:00:01+00:00')"
        )
        conn.execute("INSERT INTO guild_settings VALUES (100, 'language', '\"fr-FR\"')")
        conn.commit()
    finally:
        conn.close()


def _schema(db: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        schema = {t: conn.execute(f"PRAGMA table_info({t})").fetchall() for t in tables}
        indexes = conn.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL ORDER BY name"
        )
        schema["indexes"] = indexes.fetchall()
    return schema


async def test_migrations_upgrade_an_older_schema_and_keep_its_rows(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    _make_version_1_db(old)
    assert _pragma(old, "user_version") == 1

    async with Storage(old) as storage:
        assert await storage.schema_version() == SCHEMA_VERSION
        assert [f.text for f in await storage.list_feedback("100")] == ["old feedback"]
        assert await storage.get_guild_setting(100, "language") == "fr-FR"
        assert (await storage.get_reply(500)).reply_text == "hello"  # type: ignore[union-attr]
        [correction] = await storage.list_corrections("100", 10)
        assert correction.guild_id == 100  # filled in from the reply log by migration 2
        assert (correction.original, correction.correction) == ("hello", "hey there")
        new_id = await storage.add_correction(501, 13, 100, "a", "b")
        assert new_id > correction.id

    fresh = tmp_path / "fresh.db"
    async with Storage(fresh):
        pass
    assert _schema(old) == _schema(fresh)
    assert ("corrections_by_guild",) in _schema(fresh)["indexes"]


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    storage = Storage(db)
    with pytest.raises(RuntimeError, match="update the bot"):
        await storage.open()
    with pytest.raises(RuntimeError):
        await storage.list_feedback("1")


async def test_a_failing_migration_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "bot.db"
    async with Storage(db) as storage:
        await storage.add_feedback(1, 2, 3, "before")

    broken = ("CREATE TABLE half_done (x INTEGER)", "INSERT INTO no_such_table VALUES (1)")
    monkeypatch.setattr(storage_module, "MIGRATIONS", (*storage_module.MIGRATIONS, broken))
    monkeypatch.setattr(storage_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(sqlite3.OperationalError):
        await Storage(db).open()

    assert _pragma(db, "user_version") == SCHEMA_VERSION
    assert "half_done" not in _schema(db)
    monkeypatch.undo()
    async with Storage(db) as storage:
        assert [f.text for f in await storage.list_feedback("2")] == ["before"]


async def test_reply_log_and_corrections_remember_the_dataset(storage: Storage) -> None:
    await storage.log_reply(10, 1, 2, 3, 4, "hello", "Hi!", "chat", dataset="smalltalk")
    assert (await storage.get_reply(10)).dataset == "smalltalk"
    await storage.add_correction(10, 5, 2, "Hi!", "Howdy!", dataset="smalltalk", user_text="hello")
    await storage.add_correction(11, 6, 2, "x", "y")
    [mine] = await storage.user_corrections(5)
    assert (mine.dataset, mine.user_text, mine.correction) == ("smalltalk", "hello", "Howdy!")
    assert (await storage.user_corrections(6))[0].dataset is None


async def test_text_with_a_lone_surrogate_is_stored_with_a_replacement(storage: Storage) -> None:
    """JSON can carry half a character (\\ud800); what a user sends must still be stored."""
    await storage.add_feedback(1, 100, 7, "hi \ud800 there \ud83d\ude00")
    await storage.log_reply(10, 7, 100, 1, 9, "q \udc00", "a", "chat")
    [entry] = await storage.list_feedback("100")
    assert entry.text == "hi \ufffd there \U0001f600"  # a proper pair stays one character
    assert (await storage.get_reply(10)).user_text == "q \ufffd"  # type: ignore[union-attr]
