"""Backups of the bot's database: `python -m bot db backup FILE` and `db restore FILE`.

A backup is always one SQLite file holding every table, the blobs (the bytes of datasets and
models) included, so it restores into either backend and can be opened with any SQLite tool.

- From SQLite, SQLite's online backup API copies the pages in one step under one read
  transaction: a consistent snapshot, made while the bot goes on running (WAL lets it write
  meanwhile).
- From PostgreSQL, `copy_database` copies every row into a new SQLite file, reading the
  source in one REPEATABLE READ snapshot.

The file is written next to its final name and moved there with `os.replace` once complete,
so a backup that fails leaves nothing behind, and an existing file is never overwritten.

A restore first checks that the file is a SQLite database of this bot, makes a working copy of
it in a temporary folder (the copy is migrated to the latest schema; the backup itself is only
ever read), and copies that into the configured database, which must be empty.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from bot.services.storage.engine import BUSY_TIMEOUT_SECONDS
from bot.services.storage.migrate import SCHEMA_VERSION, VERSION_TABLE
from bot.services.storage.store import Storage
from bot.services.storage.transfer import copied_tables, copy_database

log = logging.getLogger(__name__)

SQLITE_HEADER = b"SQLite format 3\x00"
# Files SQLite may keep next to a database while it is open.
_COMPANIONS = ("-wal", "-shm", "-journal")


class BackupError(Exception):
    """A backup or restore that can't be made; the message is one line for the operator."""


class BackupExistsError(BackupError):
    """The backup's file already exists (a backup never overwrites one)."""


class NotABackupError(BackupError):
    """The file is not a SQLite database of this bot (or can't be read as one)."""


async def backup_database(source: str | os.PathLike[str], file: Path) -> dict[str, int]:
    """Write a consistent snapshot of the database at `source` (a SQLite path or a database
    URL) into the new SQLite file `file`; return the rows it holds per table."""
    file = await asyncio.to_thread(_new_backup_path, file)
    storage = Storage(source)
    temporary = await asyncio.to_thread(_temporary_next_to, file)
    try:
        if storage.path is not None:
            await asyncio.to_thread(_sqlite_backup, storage.path, temporary)
        else:
            async with storage, Storage(temporary) as into:
                await copy_database(storage, into)
        counts = await asyncio.to_thread(_seal, temporary)
        await asyncio.to_thread(_place, temporary, file)
    except BaseException:
        await asyncio.to_thread(_remove, temporary)
        raise
    log.info("backed up %s to %s: %s", storage, file, counts)
    return counts


async def restore_database(file: Path, target: str | os.PathLike[str]) -> dict[str, int]:
    """Copy the backup `file` into the empty database at `target`; return the rows restored
    per table. NotABackupError for a file that is not a backup of this bot;
    TargetNotEmptyError (nothing restored) for a target that holds data."""
    file = await asyncio.to_thread(Path(file).absolute)
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="bot-restore-"))
    try:
        copy = work / "bot.db"
        await asyncio.to_thread(_working_copy, file, copy)
        async with Storage(copy) as source, Storage(target) as into:
            restored = await copy_database(source, into)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    log.info("restored %s into %s: %s", file, into, restored)
    return restored


def _new_backup_path(file: Path) -> Path:
    """The backup's absolute path, refused before any work if it can't be written."""
    file = Path(file).absolute()
    _refuse_existing(file)
    if not file.parent.is_dir():
        raise BackupError(f"the folder {file.parent} does not exist")
    return file


def _refuse_existing(file: Path) -> None:
    if os.path.lexists(file):
        raise BackupExistsError(
            f"{file} already exists; give the backup a new file name (it never overwrites one)"
        )


def _temporary_next_to(file: Path) -> Path:
    """A new empty file in the backup's folder (so `os.replace` is a rename, never a copy
    across file systems), hidden and named after it."""
    handle, name = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    os.close(handle)
    return Path(name)


def _sqlite_backup(source: Path, into: Path) -> None:
    """Copy a live SQLite database page by page in one step: one read transaction, so a
    consistent snapshot, however much the bot writes meanwhile."""
    if not source.is_file():
        raise BackupError(f"there is no database at {source}")
    with closing(_read_only(source)) as src:
        check_bot_database(src, source)
        with closing(sqlite3.connect(into)) as dst:
            src.backup(dst)


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that can't change the file (a live database, or a backup to restore)."""
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS)


def _seal(path: Path) -> dict[str, int]:
    """Make the new backup one self-contained file (no WAL beside it), flush it to disk, and
    count its rows for the operator."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode = DELETE").fetchone()
        counts = row_counts(conn)
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
    return counts


def _place(temporary: Path, file: Path) -> None:
    """Give the finished backup its name; refuse (and keep nothing) if the name was taken
    while it was being written."""
    _refuse_existing(file)
    os.replace(temporary, file)
    folder = os.open(file.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a crash
    finally:
        os.close(folder)


def _remove(path: Path) -> None:
    for name in (str(path), *(f"{path}{suffix}" for suffix in _COMPANIONS)):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


def row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per table of the bot's schema, for the tables the file has."""
    present = _tables(conn)
    return {
        table.name: int(conn.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0])
        for table in copied_tables()
        if table.name in present
    }


def _working_copy(file: Path, copy: Path) -> None:
    """Copy the backup (checked first) to `copy`, which restoring may migrate and change."""
    check_sqlite_file(file)
    with closing(_read_only(file)) as src:
        check_bot_database(src, file)
        with closing(sqlite3.connect(copy)) as dst:
            src.backup(dst)


def check_sqlite_file(file: Path) -> None:
    """NotABackupError unless `file` is a file that starts as every SQLite database does."""
    if not file.exists():
        raise NotABackupError(f"there is no file {file}")
    if not file.is_file():
        raise NotABackupError(f"{file} is not a file")
    with open(file, "rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise NotABackupError(f"{file} is not a SQLite database, so not a backup of this bot")


def check_bot_database(conn: sqlite3.Connection, file: Path) -> None:
    """NotABackupError unless the database is intact, is this bot's, and has a schema this
    release knows."""
    try:
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        version = _schema_version(conn)
    except sqlite3.DatabaseError as exc:
        raise NotABackupError(f"{file} can't be read as a SQLite database ({exc})") from None
    if verdict != "ok":
        raise NotABackupError(f"{file} is damaged (SQLite's check says: {verdict})")
    if version is None:
        raise NotABackupError(f"{file} is a SQLite database, but not one of this bot")
    if version > SCHEMA_VERSION:
        raise NotABackupError(
            f"{file} comes from a newer release of the bot (schema version {version}; this one "
            f"knows up to {SCHEMA_VERSION}): update the bot first"
        )


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _schema_version(conn: sqlite3.Connection) -> int | None:
    """The bot's schema version (as migrate.py records it), None for another database: an
    Alembic revision that is a number, or an install from before Alembic (user_version and
    the bot's feedback table)."""
    tables = _tables(conn)
    if VERSION_TABLE in tables:
        row = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
        revision = str(row[0]) if row else ""
        return int(revision) if revision.isdigit() else None
    legacy = int(conn.execute("PRAGMA user_version").fetchone()[0])
    return legacy if legacy and "feedback" in tables else None
