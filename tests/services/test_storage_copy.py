"""`python -m bot db copy`: an install's database moves into PostgreSQL (and back) whole."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.services.storage import SCHEMA_VERSION, Storage
from bot.services.storage.blobs import DatabaseBlobs
from bot.services.storage.transfer import TargetNotEmptyError, copied_tables, copy_database
from bot.services.tenancy.namespaces import namespace_for

REPO = Path(__file__).resolve().parents[2]
LEGACY_TAR = REPO / "tests" / "fixtures" / "legacy_data_v3.tar.gz"
GUILD = 1_100_000_000_000_000_001  # the one server the legacy fixture knows


def bot_db(data_dir: Path, *args: str, database_url: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "DATABASE_URL")}
    env.update(DATA_DIR=str(data_dir), DATABASE_URL=database_url)
    return subprocess.run(
        [sys.executable, "-m", "bot", "db", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def dump(location: str | Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary key order."""
    async with Storage(location) as storage, storage.transaction() as conn:
        return {
            table.name: [
                tuple(row)
                for row in await conn.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in copied_tables()
        }


async def test_an_older_install_moves_into_postgresql_whole(
    tmp_path: Path, postgres_url: str
) -> None:
    with tarfile.open(LEGACY_TAR) as tar:
        tar.extractall(tmp_path, filter="data")
    data = tmp_path / "data"

    done = await asyncio.to_thread(bot_db, data, "copy", "--to", postgres_url)
    assert done.returncode == 0, done.stderr
    assert "feedback: 2 rows" in done.stdout and "corrections: 3 rows" in done.stdout
    assert "postgres@" in done.stdout and "DATA_DIR/servers/" in done.stdout

    source = await dump(data / "bot.db")  # migrated to the latest schema by the copy
    assert source == await dump(postgres_url)
    assert sum(len(rows) for rows in source.values()) >= 9
    async with Storage(postgres_url) as storage:
        assert await storage.schema_version() == SCHEMA_VERSION
        assert await storage.get_meta("shared_files_namespace") == str(GUILD)
        assert await storage.get_guild_setting(GUILD, "dataset") == "weather"
        assert [f.text for f in await storage.list_feedback(str(GUILD))] == ["server feedback"]
        newest = max(row[0] for row in source["feedback"])
        assert (
            await storage.add_feedback(
                1, GUILD, 2, "after the move", namespace=namespace_for(GUILD, 1)
            )
            > newest
        )
        assert (
            await storage.add_correction(900, 1, GUILD, "a", "b", namespace=namespace_for(GUILD, 1))
            > 3
        )

    again = await asyncio.to_thread(bot_db, data, "copy", "--to", postgres_url)
    assert again.returncode == 1
    assert "Nothing was copied: the target database already holds data" in again.stderr
    assert "feedback: 3 rows" in again.stderr  # the two copied and the one added since


async def test_a_copy_from_postgresql_into_sqlite_keeps_every_row(
    tmp_path: Path, postgres_url: str
) -> None:
    async with Storage(postgres_url) as storage:
        await storage.set_guild_setting(5, "language", "fr-FR")
        await storage.set_channel_setting(6, "chat", True)
        for n in range(3):
            await storage.add_feedback(
                10 + n, 5, 6, f"note {n} \ud800", namespace=namespace_for(5, 10 + n)
            )
        await storage.log_reply(
            700,
            6,
            5,
            10,
            699,
            "q",
            "a",
            "chat",
            dataset="smalltalk",
            namespace=namespace_for(5, 10),
        )
        await storage.add_correction(
            700, 10, 5, "a", "b", dataset="smalltalk", user_text="q", namespace=namespace_for(5, 10)
        )
        await storage.forget_user(11)  # a gap in the ids
        for n in range(3):  # 3 x 7 MB: more than one batch of bytes
            await DatabaseBlobs(storage).put("5", f"models/m/v{n}.joblib", os.urandom(7 << 20))
    target = tmp_path / "copy" / "bot.db"
    async with Storage(postgres_url) as source, Storage(target) as into:
        copied = await copy_database(source, into)
    assert copied["feedback"] == 2 and copied["reply_log"] == 1 and copied["meta"] == 1
    assert copied["blobs"] == 3
    assert await dump(target) == await dump(postgres_url)
    async with Storage(target) as storage:
        assert await storage.add_feedback(1, 5, 6, "next", namespace=namespace_for(5, 1)) == 4
        assert len(await DatabaseBlobs(storage).get("5", "models/m/v2.joblib") or b"") == 7 << 20


async def test_a_failed_copy_leaves_the_target_as_it_was(tmp_path: Path, postgres_url: str) -> None:
    async with Storage(tmp_path / "a.db") as source, Storage(postgres_url) as target:
        await source.add_feedback(1, 2, 3, "from a", namespace=namespace_for(2, 1))
        await target.add_feedback(4, 2, 3, "already here", namespace=namespace_for(2, 4))
        with pytest.raises(TargetNotEmptyError, match="feedback: 1 row\\)"):
            await copy_database(source, target)
        assert [f.text for f in await target.list_feedback(None)] == ["already here"]


def test_bad_targets_are_refused_with_one_line(tmp_path: Path) -> None:
    wrong = bot_db(tmp_path, "copy", "--to", "mysql://u:secret@host/db")
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("Not a database the bot can use: unsupported database")
    assert "secret" not in wrong.stderr
    same = bot_db(tmp_path, "copy", "--to", str(tmp_path / "bot.db"))
    assert (same.returncode, same.stderr.strip()) == (
        2,
        "The source and the target are the same database.",
    )
    missing = bot_db(tmp_path, "copy")
    assert missing.returncode == 2 and "--to" in missing.stderr


async def test_from_picks_the_source_and_to_may_be_a_sqlite_file(
    tmp_path: Path, postgres_url: str
) -> None:
    async with Storage(postgres_url) as storage:
        await storage.add_feedback(1, 2, 3, "kept in postgresql", namespace=namespace_for(2, 1))
    backup = tmp_path / "backup" / "bot.db"
    done = await asyncio.to_thread(
        bot_db, tmp_path / "data", "copy", "--from", postgres_url, "--to", str(backup)
    )
    assert done.returncode == 0, done.stderr
    assert f"to {backup}:" in done.stdout and "feedback: 1 row\n" in done.stdout
    assert await dump(backup) == await dump(postgres_url)
    assert not (tmp_path / "data" / "bot.db").exists()  # the configured store was not used


def test_db_upgrade_migrates_the_configured_database(tmp_path: Path, postgres_url: str) -> None:
    done = bot_db(tmp_path, "upgrade", database_url=postgres_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"is at schema version {SCHEMA_VERSION}.")
    assert not (tmp_path / "bot.db").exists()
