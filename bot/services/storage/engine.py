"""Where the database is, and an async engine for it that keeps the bot's promises.

- `postgresql://user:pass@host/db` (or `postgres://`, `postgresql+asyncpg://`): PostgreSQL
  through asyncpg, which is async through and through.
- A file path, or `sqlite:///path`: SQLite through aiosqlite, which runs every query on the
  connection's own thread. One connection, so writes queue in order instead of waiting on
  locks; WAL with `synchronous=FULL` and a transaction per write, so a write the bot has
  acknowledged survives the process being killed.

On both, text is made storable on the way in (`storable`), so whatever a user sends is kept.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

BUSY_TIMEOUT_SECONDS = 5.0
EXPLICIT_BEGIN = "bot_explicit_begin"
# Callers wait this long for the one SQLite connection before an error.
SQLITE_QUEUE_SECONDS = 60.0

_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
_SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")


class DatabaseUrlError(ValueError):
    """A DATABASE_URL (or --from/--to) the storage can't use."""


def database_url(location: str | os.PathLike[str]) -> URL:
    """The SQLAlchemy URL (with its async driver) of a database URL or a SQLite file path."""
    if isinstance(location, os.PathLike) or "://" not in str(location):
        return URL.create("sqlite+aiosqlite", database=str(Path(location).absolute()))
    try:
        url = make_url(str(location))
    except ArgumentError:
        raise DatabaseUrlError(f"{shown_url(str(location))} is not a database URL") from None
    if url.drivername in _POSTGRES_SCHEMES:
        return url.set(drivername="postgresql+asyncpg")
    if url.drivername in _SQLITE_SCHEMES:
        if not url.database:
            raise DatabaseUrlError("a sqlite:/// URL needs a file path (sqlite:///data/bot.db)")
        return url.set(drivername="sqlite+aiosqlite")
    raise DatabaseUrlError(
        f"unsupported database {url.drivername!r}: use postgresql://user:password@host/db "
        "or a SQLite file (sqlite:///path/bot.db)"
    )


def shown_url(location: str | os.PathLike[str] | URL) -> str:
    """A URL or path as it may be logged or printed: never with its password; a SQLite
    database as its file's path."""
    if isinstance(location, URL):
        if location.get_backend_name() == "sqlite" and location.database:
            return location.database
        return location.render_as_string(hide_password=True)
    if isinstance(location, os.PathLike) or "://" not in str(location):
        return str(location)
    try:
        return make_url(str(location)).render_as_string(hide_password=True)
    except ArgumentError:
        return "(a malformed URL)"


def create_engine(url: URL) -> AsyncEngine:
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_timeout=SQLITE_QUEUE_SECONDS,
            # Every use ends its transaction (Storage.transaction): no reset needed.
            pool_reset_on_return=None,
            connect_args={"timeout": BUSY_TIMEOUT_SECONDS},
        )
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    else:
        engine = create_async_engine(url, pool_pre_ping=True)
    event.listen(engine.sync_engine, "before_cursor_execute", _storable_statement, retval=True)
    return engine


def prepare_sqlite_file(path: Path) -> None:
    """Create the folder and put the database in WAL mode (kept in the file) before the engine
    connects. Run in a thread: a new file that several processes open at once makes all but
    one wait here, as switching to WAL gets "database is locked" without SQLite's own wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    with closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS)) as conn:
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL").fetchone()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver begins a transaction by itself before a write (INSERT, UPDATE, DELETE), and
    # with IMMEDIATE it takes the write lock at once, so a transaction never has to give up
    # halfway because another writer got there first. Reads need no transaction: each is one
    # statement. It does not begin one before DDL, so migrations BEGIN themselves (below).
    dbapi_connection.isolation_level = "IMMEDIATE"
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode = WAL")
        mode = cursor.fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"SQLite could not switch to WAL mode (got {mode!r})")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
    finally:
        cursor.close()


def _sqlite_begin(conn: Any) -> None:
    if conn.get_execution_options().get(EXPLICIT_BEGIN):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def explicit_begin(engine: AsyncEngine) -> AsyncEngine:
    """The engine (same connections) for transactions that must begin before their first
    statement whatever it is: migrations (DDL) and copies (a check, then writes)."""
    return engine.execution_options(**{EXPLICIT_BEGIN: True})


def _storable_statement(
    _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
) -> tuple[str, Any]:
    return statement, storable(parameters)


def storable(value: Any) -> Any:
    """Text that every backend can hold, in any parameters (tuples, lists, dicts): a lone
    surrogate (half of a character, which JSON can spell but UTF-8 cannot) and NUL (which
    PostgreSQL text cannot hold) become U+FFFD, so any message text can be stored."""
    if isinstance(value, str):
        return _whole_characters(value)
    if isinstance(value, tuple | list):
        return type(value)(storable(v) for v in value)
    if isinstance(value, dict):
        return {k: storable(v) for k, v in value.items()}
    return value


def _whole_characters(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # surrogatepass joins proper pairs back into characters; "replace" marks the rest.
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
