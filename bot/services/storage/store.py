"""The bot's database: settings, feedback, corrections, the reply log and `meta`.

One interface for both backends (`engine.py`): the queries are SQLAlchemy Core, the same
statements for SQLite and PostgreSQL. Every method is a coroutine that does no database work
on the event loop, and each write commits before it returns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import bot.services.storage.migrate as migrate
from bot.services.storage.engine import (
    create_engine,
    database_url,
    explicit_begin,
    prepare_sqlite_file,
    shown_url,
)
from bot.services.storage.rows import Correction, Feedback, ReplyLog, feedback_as_csv
from bot.services.storage.schema import (
    channel_settings,
    corrections,
    feedback,
    guild_settings,
    meta,
    reply_log,
    user_settings,
)

log = logging.getLogger(__name__)

# Table and id column per settings scope.
_SETTINGS_TABLES = {
    "guild": (guild_settings, guild_settings.c.guild_id),
    "channel": (channel_settings, channel_settings.c.channel_id),
    "user": (user_settings, user_settings.c.user_id),  # a user's own, in every server
}

_FEEDBACK_COLUMNS = [feedback.c[name] for name in Feedback.__dataclass_fields__]
_REPLY_COLUMNS = [reply_log.c[name] for name in ReplyLog.__dataclass_fields__]
_CORRECTION_COLUMNS = [corrections.c[name] for name in Correction.__dataclass_fields__]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _in_namespace(table: Table, namespace: str | None) -> ColumnElement[bool] | bool:
    """A namespace filter: None (an owner's bot-wide view) matches every row."""
    return True if namespace is None else table.c.namespace == namespace


def _about_user(user_id: int) -> ColumnElement[bool]:
    """Corrections the user made, or made of the bot's replies to the user (they quote the
    user)."""
    replies_to_user = select(reply_log.c.bot_message_id).where(reply_log.c.user_id == user_id)
    return or_(corrections.c.user_id == user_id, corrections.c.bot_message_id.in_(replies_to_user))


def upsert(conn: AsyncConnection, table: Table, values: dict[str, Any]) -> Any:
    """INSERT that replaces the row with the same primary key (both backends say it the
    same way, each through its own dialect's construct)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(values)
    keys = [c.name for c in table.primary_key.columns]
    changed = {k: statement.excluded[k] for k in values if k not in keys}
    return statement.on_conflict_do_update(index_elements=keys, set_=changed)


class StorageUnavailableError(RuntimeError):
    """The database can't be reached (a server down, a wrong password, a file that can't be
    opened)."""


def _unavailable(url: URL, exc: BaseException) -> StorageUnavailableError:
    reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    return StorageUnavailableError(f"can't reach the database {shown_url(url)}: {reason}")


async def _reach(engine: AsyncEngine, url: URL) -> None:
    try:
        async with engine.connect():
            pass
    except (OSError, DBAPIError) as exc:
        raise _unavailable(url, exc) from exc


class Storage:
    """The bot's database. `await open()` before use, `await close()` at the end
    (or `async with Storage(location) as storage:`).

    `location` is a SQLite file path or a database URL (`postgresql://user:pass@host/db`).
    """

    def __init__(self, location: str | os.PathLike[str]) -> None:
        self.url: URL = database_url(location)
        self._engine: AsyncEngine | None = None
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def __repr__(self) -> str:
        return f"Storage({shown_url(self.url)})"

    @property
    def backend(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.url.get_backend_name()

    @property
    def path(self) -> Path | None:
        """The SQLite file, None on PostgreSQL."""
        return Path(self.url.database) if self.backend == "sqlite" and self.url.database else None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Storage is not open")
        return self._engine

    async def __aenter__(self) -> Storage:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the database if needed (for SQLite its folder too) and run pending
        migrations."""
        if self._engine is not None:
            raise RuntimeError("Storage is already open")
        if self.path is not None:
            try:
                await asyncio.to_thread(prepare_sqlite_file, self.path)
            except (OSError, sqlite3.Error) as exc:
                raise _unavailable(self.url, exc) from exc
        engine = create_engine(self.url)
        try:
            await _reach(engine, self.url)
            async with explicit_begin(engine).begin() as conn:
                await conn.run_sync(migrate.upgrade)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        log.debug("Storage opened at %s", shown_url(self.url))

    async def close(self) -> None:
        """Wait for the queries under way, then close every connection."""
        if self._engine is None:
            return
        engine, self._engine = self._engine, None
        await self._idle.wait()
        await engine.dispose()

    async def ping(self, timeout: float = 2.0) -> None:
        """`SELECT 1` within `timeout` seconds (readiness, services/ops/observe.py); raises
        StorageUnavailableError (or TimeoutError) when the database doesn't answer."""
        try:
            async with asyncio.timeout(timeout), self.engine.connect() as conn:
                await conn.execute(select(1))
        except (OSError, DBAPIError) as exc:
            raise _unavailable(self.url, exc) from exc

    @asynccontextmanager
    async def transaction(
        self, *, begin_first: bool = False, snapshot: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction that commits when the block ends (rolls back on an
        exception). On SQLite the transaction begins at the first write, unless `begin_first`
        (for reads that decide what to write, and for DDL).

        `snapshot` (PostgreSQL): a read-only REPEATABLE READ transaction, whose reads of every
        table see the database as it was at the first one, while the bot goes on writing; a
        copy or backup made through it is consistent. (A live SQLite file is backed up with
        SQLite's own backup API instead, backup.py.)"""
        engine = explicit_begin(self.engine) if begin_first else self.engine
        if snapshot and self.backend == "postgresql":
            engine = engine.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        self._busy += 1
        self._idle.clear()
        try:
            async with engine.begin() as conn:
                yield conn
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def _rows(self, statement: Any) -> list[Any]:
        async with self.transaction() as conn:
            return list((await conn.execute(statement)).mappings())

    async def _write(self, statement: Any) -> Any:
        async with self.transaction() as conn:
            return await conn.execute(statement)

    async def schema_version(self) -> int:
        async with self.transaction() as conn:
            return await conn.run_sync(migrate.current_version) or 0

    # Settings: one JSON value per (server or channel, key).

    async def _get_setting(self, scope: str, owner_id: int, key: str, default: Any) -> Any:
        table, column = _SETTINGS_TABLES[scope]
        rows = await self._rows(select(table.c.value).where(column == owner_id, table.c.key == key))
        return json.loads(rows[0]["value"]) if rows else default

    async def _set_setting(self, scope: str, owner_id: int, key: str, value: Any) -> None:
        table, column = _SETTINGS_TABLES[scope]
        async with self.transaction() as conn:
            if value is None:
                await conn.execute(delete(table).where(column == owner_id, table.c.key == key))
            else:
                row = {column.name: owner_id, "key": key, "value": json.dumps(value)}
                await conn.execute(upsert(conn, table, row))

    async def _all_settings(self, scope: str, owner_id: int) -> dict[str, Any]:
        table, column = _SETTINGS_TABLES[scope]
        rows = await self._rows(
            select(table.c.key, table.c.value).where(column == owner_id).order_by(table.c.key)
        )
        return {row["key"]: json.loads(row["value"]) for row in rows}

    async def get_guild_setting(self, guild_id: int, key: str, default: Any = None) -> Any:
        return await self._get_setting("guild", guild_id, key, default)

    async def set_guild_setting(self, guild_id: int, key: str, value: Any) -> None:
        """Store any JSON-serializable value; None removes the key (the default applies)."""
        await self._set_setting("guild", guild_id, key, value)

    async def guild_settings(self, guild_id: int) -> dict[str, Any]:
        return await self._all_settings("guild", guild_id)

    async def get_channel_setting(self, channel_id: int, key: str, default: Any = None) -> Any:
        return await self._get_setting("channel", channel_id, key, default)

    async def set_channel_setting(self, channel_id: int, key: str, value: Any) -> None:
        """Store any JSON-serializable value; None removes the key (the default applies)."""
        await self._set_setting("channel", channel_id, key, value)

    async def channel_settings(self, channel_id: int) -> dict[str, Any]:
        return await self._all_settings("channel", channel_id)

    async def get_user_setting(self, user_id: int, key: str, default: Any = None) -> Any:
        """A setting of the user that holds in every server (like the listening opt-out)."""
        return await self._get_setting("user", user_id, key, default)

    async def set_user_setting(self, user_id: int, key: str, value: Any) -> None:
        """Store any JSON-serializable value; None removes the key (the default applies)."""
        await self._set_setting("user", user_id, key, value)

    async def user_settings(self, user_id: int) -> dict[str, Any]:
        return await self._all_settings("user", user_id)

    async def users_with_setting(self, key: str) -> dict[int, Any]:
        """Every user who has `key` set, with its value."""
        rows = await self._rows(
            select(user_settings.c.user_id, user_settings.c.value).where(user_settings.c.key == key)
        )
        return {int(row["user_id"]): json.loads(row["value"]) for row in rows}

    async def forget_user_settings(self, user_id: int) -> int:
        """Delete every setting of the user's own; return how many there were."""
        result = await self._write(delete(user_settings).where(user_settings.c.user_id == user_id))
        return int(result.rowcount)

    # Meta: facts about the database itself (see migration 0004).

    async def get_meta(self, key: str) -> str | None:
        rows = await self._rows(select(meta.c.value).where(meta.c.key == key))
        return rows[0]["value"] if rows else None

    # Feedback. Rows belong to the namespace of the server, or of the user's DMs: writes are
    # given it (the request's, built once: `VoiceContext.namespace`); listings take one, and
    # None for an owner's bot-wide view.

    async def add_feedback(
        self, user_id: int, guild_id: int | None, channel_id: int, text: str, *, namespace: str
    ) -> int:
        result = await self._write(
            insert(feedback).values(
                user_id=user_id,
                guild_id=guild_id,
                channel_id=channel_id,
                text=text,
                created_at=_now(),
                namespace=namespace,
            )
        )
        return int(result.inserted_primary_key[0])

    async def list_feedback(self, namespace: str | None, limit: int = 10) -> list[Feedback]:
        """The namespace's latest feedback (every namespace's for None), newest first."""
        rows = await self._rows(
            select(*_FEEDBACK_COLUMNS)
            .where(_in_namespace(feedback, namespace))
            .order_by(feedback.c.id.desc())
            .limit(max(limit, 0))
        )
        return [Feedback(**row) for row in rows]

    async def feedback_csv(self, namespace: str | None) -> bytes:
        """The namespace's feedback (every namespace's for None) as UTF-8 CSV with a header,
        oldest first.

        Cells that a spreadsheet would run as a formula get a leading apostrophe.
        """
        c = feedback.c
        async with self.transaction() as conn:
            result = await conn.execute(
                select(c.id, c.created_at, c.user_id, c.guild_id, c.channel_id, c.text, c.namespace)
                .where(_in_namespace(feedback, namespace))
                .order_by(c.id)
            )
            rows = result.all()
        return await asyncio.to_thread(feedback_as_csv, rows)

    # Reply log: the bot's own replies, so !correct can find what a reply answered.

    async def log_reply(
        self,
        bot_message_id: int,
        channel_id: int,
        guild_id: int | None,
        user_id: int,
        user_message_id: int | None,
        user_text: str,
        reply_text: str,
        kind: str,
        dataset: str | None = None,
        *,
        namespace: str,
    ) -> None:
        """Record a reply the bot sent; logging the same message id again replaces it."""
        row = {
            "bot_message_id": bot_message_id,
            "channel_id": channel_id,
            "guild_id": guild_id,
            "user_id": user_id,
            "user_message_id": user_message_id,
            "user_text": user_text,
            "reply_text": reply_text,
            "kind": kind,
            "created_at": _now(),
            "dataset": dataset,
            "namespace": namespace,
        }
        async with self.transaction() as conn:
            await conn.execute(upsert(conn, reply_log, row))

    async def get_reply(self, bot_message_id: int) -> ReplyLog | None:
        rows = await self._rows(
            select(*_REPLY_COLUMNS).where(reply_log.c.bot_message_id == bot_message_id)
        )
        return ReplyLog(**rows[0]) if rows else None

    # Corrections.

    async def add_correction(
        self,
        bot_message_id: int,
        user_id: int,
        guild_id: int | None,
        original: str,
        correction: str,
        dataset: str | None = None,
        user_text: str | None = None,
        *,
        namespace: str,
    ) -> int:
        """Record a correction; `dataset` and `user_text` when it became training data (of
        the dataset of the same namespace)."""
        result = await self._write(
            insert(corrections).values(
                bot_message_id=bot_message_id,
                user_id=user_id,
                guild_id=guild_id,
                original=original,
                correction=correction,
                created_at=_now(),
                dataset=dataset,
                user_text=user_text,
                namespace=namespace,
                dataset_namespace=namespace if dataset else None,
            )
        )
        return int(result.inserted_primary_key[0])

    async def list_corrections(self, namespace: str | None, limit: int = 10) -> list[Correction]:
        """The namespace's latest corrections (every namespace's for None), newest first."""
        rows = await self._rows(
            select(*_CORRECTION_COLUMNS)
            .where(_in_namespace(corrections, namespace))
            .order_by(corrections.c.id.desc())
            .limit(max(limit, 0))
        )
        return [Correction(**row) for row in rows]

    async def user_corrections(self, user_id: int) -> list[Correction]:
        """Corrections by the user or of replies to the user, oldest first (for !forgetme)."""
        rows = await self._rows(
            select(*_CORRECTION_COLUMNS).where(_about_user(user_id)).order_by(corrections.c.id)
        )
        return [Correction(**row) for row in rows]

    # Privacy.

    async def forget_user(self, user_id: int) -> dict[str, int]:
        """Delete the user's feedback, corrections about them and logged messages; return the
        number of rows deleted per table. (Their own settings: `forget_user_settings`.)"""
        counts: dict[str, int] = {}
        async with self.transaction() as conn:
            # corrections first: those of replies to the user hold the user's words too
            for table, where in (
                (feedback, feedback.c.user_id == user_id),
                (corrections, _about_user(user_id)),
                (reply_log, reply_log.c.user_id == user_id),
            ):
                result = await conn.execute(delete(table).where(where))
                counts[table.name] = result.rowcount
        return counts
