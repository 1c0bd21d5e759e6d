"""`python -m bot db backup FILE` and `db restore FILE`: a snapshot of either backend in one
SQLite file, back into an empty database; and one clear line for everything else."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from bot.services.storage import SCHEMA_VERSION, Storage
from bot.services.storage.backup import (
    BackupExistsError,
    NotABackupError,
    backup_database,
    restore_database,
)
from bot.services.storage.blobs import DatabaseBlobs
from bot.services.storage.transfer import TargetNotEmptyError
from bot.services.tenancy.namespaces import namespace_for
from tests.services.test_storage_copy import bot_db, dump

MODEL_BYTES = os.urandom(3 << 20)


async def fill(location: str | Path) -> None:
    """A little of everything the bot keeps: settings, feedback, a correction, blobs."""
    async with Storage(location) as storage:
        await storage.set_guild_setting(5, "dataset", "menu")
        await storage.set_channel_setting(6, "chat", True)
        await storage.add_feedback(10, 5, 6, "more jokes please", namespace=namespace_for(5, 10))
        await storage.log_reply(
            700, 6, 5, 10, 699, "q", "a", "chat", dataset="menu", namespace=namespace_for(5, 10)
        )
        await storage.add_correction(
            700, 10, 5, "a", "b", dataset="menu", user_text="q", namespace=namespace_for(5, 10)
        )
        await DatabaseBlobs(storage).put("5", "datasets/menu.csv", b"text,label\nhi,greet\n")
        await DatabaseBlobs(storage).put("5", "models/menu/v1.npz", MODEL_BYTES)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path, *expected: str) -> list[str]:
    """Files in the folder besides the expected ones (temporary files of a backup)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in expected)


# ----- round trips -------------------------------------------------------------------------


async def test_a_live_sqlite_database_is_backed_up_and_restored_whole(tmp_path: Path) -> None:
    source = tmp_path / "data" / "bot.db"
    await fill(source)
    backup = tmp_path / "backups" / "monday.db"
    backup.parent.mkdir()
    async with Storage(source) as running:  # the bot still has it open, and writes after
        counts = await backup_database(source, backup)
        await running.add_feedback(11, 5, 6, "after the backup", namespace=namespace_for(5, 11))
    assert counts["feedback"] == 1 and counts["blobs"] == 2 and counts["guild_settings"] == 1
    assert leftovers(backup.parent, "monday.db") == []  # one file: no WAL, no temporary

    before = sha256(backup)
    restored = await restore_database(backup, tmp_path / "new" / "bot.db")
    assert restored == counts
    assert sha256(backup) == before  # a restore only ever reads the backup
    assert leftovers(backup.parent, "monday.db") == []
    async with Storage(tmp_path / "new" / "bot.db") as storage:
        assert await storage.get_guild_setting(5, "dataset") == "menu"
        assert [f.text for f in await storage.list_feedback(None)] == ["more jokes please"]
        assert await DatabaseBlobs(storage).get("5", "models/menu/v1.npz") == MODEL_BYTES
        assert await storage.schema_version() == SCHEMA_VERSION
        assert await storage.add_feedback(1, 5, 6, "next", namespace=namespace_for(5, 1)) == 2


async def test_postgresql_is_backed_up_and_restored_into_either_backend(
    tmp_path: Path, new_postgres_database: Callable[[], str]
) -> None:
    source = new_postgres_database()
    await fill(source)
    backup = tmp_path / "pg.db"
    counts = await backup_database(source, backup)
    assert counts["corrections"] == 1 and counts["blobs"] == 2
    assert leftovers(tmp_path, "pg.db") == []
    with closing(sqlite3.connect(backup)) as conn:  # an ordinary SQLite file
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"

    into_postgres = new_postgres_database()
    assert await restore_database(backup, into_postgres) == counts
    assert await dump(into_postgres) == await dump(source)
    async with Storage(into_postgres) as storage:  # its counters continue after the rows
        assert await storage.add_feedback(1, 5, 6, "next", namespace=namespace_for(5, 1)) == 2
    assert await restore_database(backup, tmp_path / "sqlite" / "bot.db") == counts
    assert await dump(tmp_path / "sqlite" / "bot.db") == await dump(source)


async def test_the_commands_back_up_and_restore_the_configured_database(
    tmp_path: Path, postgres_url: str
) -> None:
    await fill(postgres_url)
    backup = tmp_path / "pg.db"
    done = await asyncio.to_thread(
        bot_db, tmp_path / "a", "backup", str(backup), database_url=postgres_url
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Backed up postgresql://postgres@")
    assert f"to {backup}:\n" in done.stdout and "  blobs: 2 rows\n" in done.stdout
    done = await asyncio.to_thread(bot_db, tmp_path / "b", "restore", str(backup))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Restored {backup} into {tmp_path / 'b' / 'bot.db'}:\n")
    assert "  feedback: 1 row\n" in done.stdout
    assert await dump(tmp_path / "b" / "bot.db") == await dump(postgres_url)


# ----- refusals ----------------------------------------------------------------------------


async def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    await fill(tmp_path / "bot.db")
    backup = tmp_path / "backup.db"
    backup.write_bytes(b"precious")
    with pytest.raises(BackupExistsError, match="already exists"):
        await backup_database(tmp_path / "bot.db", backup)
    assert backup.read_bytes() == b"precious"
    done = await asyncio.to_thread(bot_db, tmp_path, "backup", str(backup))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"No backup was written: {backup} already exists; give the backup a new file name "
        "(it never overwrites one)\n"
    )


async def test_a_file_in_a_missing_folder_or_a_missing_database_is_refused(tmp_path: Path) -> None:
    missing_folder = tmp_path / "nowhere" / "backup.db"
    no_database = bot_db(tmp_path, "backup", str(tmp_path / "backup.db"))
    assert no_database.returncode == 1
    assert no_database.stderr == (
        f"No backup was written: there is no database at {tmp_path / 'bot.db'}\n"
    )
    assert leftovers(tmp_path) == []  # the database was not created by looking for it
    await fill(tmp_path / "bot.db")
    done = await asyncio.to_thread(bot_db, tmp_path, "backup", str(missing_folder))
    assert done.returncode == 1
    assert (
        done.stderr == f"No backup was written: the folder {missing_folder.parent} does not exist\n"
    )


async def test_a_failed_backup_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    await fill(postgres_url)

    async def broken(*_args: object) -> None:
        raise RuntimeError("the server went away")

    monkeypatch.setattr("bot.services.storage.backup.copy_database", broken)
    with pytest.raises(RuntimeError, match="went away"):
        await backup_database(postgres_url, tmp_path / "backup.db")
    assert leftovers(tmp_path) == []


async def test_a_target_with_data_is_refused_and_kept(tmp_path: Path) -> None:
    await fill(tmp_path / "old" / "bot.db")
    backup = tmp_path / "backup.db"
    await backup_database(tmp_path / "old" / "bot.db", backup)
    target = tmp_path / "data" / "bot.db"
    async with Storage(target) as storage:
        await storage.add_feedback(1, 2, 3, "already here", namespace=namespace_for(2, 1))
    with pytest.raises(TargetNotEmptyError):
        await restore_database(backup, target)
    done = await asyncio.to_thread(bot_db, tmp_path / "data", "restore", str(backup))
    assert done.returncode == 1
    assert done.stderr == (
        "Nothing was restored: the target database already holds data (feedback: 1 row); "
        "copy into a new, empty database\n"
    )
    async with Storage(target) as storage:
        assert [f.text for f in await storage.list_feedback(None)] == ["already here"]


def another_apps_database(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute("INSERT INTO alembic_version VALUES ('ae1027a6acf')")
        conn.commit()


def a_newer_bots_database(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute(f"INSERT INTO alembic_version VALUES ('{SCHEMA_VERSION + 1:04d}')")
        conn.commit()


NOT_BACKUPS: dict[str, tuple[Callable[[Path], object], str]] = {
    "random bytes": (
        lambda p: p.write_bytes(os.urandom(4096)),
        "is not a SQLite database, so not a backup of this bot",
    ),
    "json": (
        lambda p: p.write_text(json.dumps({"feedback": []})),
        "is not a SQLite database, so not a backup of this bot",
    ),
    "empty": (lambda p: p.write_bytes(b""), "is not a SQLite database"),
    "truncated": (
        lambda p: p.write_bytes(b"SQLite format 3\x00" + os.urandom(100)),
        "can't be read as a SQLite database",
    ),
    "another app's sqlite": (
        another_apps_database,
        "is a SQLite database, but not one of this bot",
    ),
    "a newer bot's": (
        a_newer_bots_database,
        f"comes from a newer release of the bot (schema version {SCHEMA_VERSION + 1}; this one "
        f"knows up to {SCHEMA_VERSION}): update the bot first",
    ),
    "missing": (lambda p: None, "there is no file"),
    "a folder": (lambda p: p.mkdir(), "is not a file"),
}


@pytest.mark.parametrize("kind", list(NOT_BACKUPS))
async def test_what_is_not_a_backup_gets_one_line(tmp_path: Path, kind: str) -> None:
    make, reason = NOT_BACKUPS[kind]
    file = tmp_path / "backup.db"
    make(file)
    with pytest.raises(NotABackupError, match=reason.split(" (")[0]):
        await restore_database(file, tmp_path / "data" / "bot.db")
    done = await asyncio.to_thread(bot_db, tmp_path / "data", "restore", str(file))
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("Nothing was restored: ") and reason in line, line
