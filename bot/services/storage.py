"""SQLite storage shared by every feature: settings, feedback, corrections and the reply log.

One connection, used only from one dedicated worker thread: every query runs off the event
loop and writes are serialized without any lock. The database is in WAL mode with
`synchronous=FULL`, and each write commits before its coroutine returns, so a write the bot
has acknowledged survives the process being killed.

The schema is versioned with `PRAGMA user_version`: `MIGRATIONS[n]` takes a database from
version n to n + 1, each in its own transaction. Add a migration at the end; never edit one
that has shipped.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from bot.services.namespaces import LEGACY, namespace_for

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_SECONDS = 5.0

Migration = tuple[str | Callable[[sqlite3.Connection], None], ...]


def _namespaces(conn: sqlite3.Connection) -> None:
    """Migration 4: every row belongs to a namespace (services/tenancy.py).

    A server's rows go to the server; DM rows to the user's DM namespace; corrections that
    name no server and no logged reply to `legacy`. The datasets and models an older install
    shared go to the one server it knew, else to `legacy`: that choice is kept in `meta` for
    the file move at start (`tenancy.migrate_files`), which also finishes after a crash.
    """
    for statement in (
        "ALTER TABLE feedback ADD COLUMN namespace TEXT",
        "ALTER TABLE reply_log ADD COLUMN namespace TEXT",
        "ALTER TABLE corrections ADD COLUMN namespace TEXT",
        "ALTER TABLE corrections ADD COLUMN dataset_namespace TEXT",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ):
        conn.execute(statement)
    by_row = "CASE WHEN guild_id IS NULL THEN 'dm-' || user_id ELSE CAST(guild_id AS TEXT) END"
    conn.execute(f"UPDATE feedback SET namespace = {by_row}")
    conn.execute(f"UPDATE reply_log SET namespace = {by_row}")
    conn.execute(
        "UPDATE corrections SET namespace = COALESCE("
        "CAST(guild_id AS TEXT), "
        "(SELECT r.namespace FROM reply_log AS r "
        "WHERE r.bot_message_id = corrections.bot_message_id), ?)",
        (LEGACY,),
    )
    servers = conn.execute(
        "SELECT guild_id FROM guild_settings UNION SELECT guild_id FROM feedback "
        "UNION SELECT guild_id FROM reply_log UNION SELECT guild_id FROM corrections"
    ).fetchall()
    known = [row[0] for row in servers if row[0] is not None]
    shared = str(known[0]) if len(known) == 1 else LEGACY
    conn.execute(
        "UPDATE corrections SET dataset_namespace = ? WHERE dataset IS NOT NULL", (shared,)
    )
    conn.execute("INSERT INTO meta (key, value) VALUES ('shared_files_namespace', ?)", (shared,))
    conn.execute("CREATE INDEX feedback_by_namespace ON feedback (namespace, id)")
    conn.execute("CREATE INDEX corrections_by_namespace ON corrections (namespace, id)")


MIGRATIONS: tuple[Migration, ...] = (
    # 1: the first schema.
    (
        """CREATE TABLE guild_settings (
            guild_id INTEGER NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (guild_id, key)
        )""",
        """CREATE TABLE channel_settings (
            channel_id INTEGER NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (channel_id, key)
        )""",
        """CREATE TABLE feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id INTEGER NOT NULL,
            guild_id INTEGER,
            channel_id INTEGER NOT NULL,
            text TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE reply_log (
            bot_message_id INTEGER PRIMARY KEY,
            channel_id INTEGER NOT NULL,
            guild_id INTEGER,
            user_id INTEGER NOT NULL,
            user_message_id INTEGER,
            user_text TEXT NOT NULL,
            reply_text TEXT NOT NULL,
            kind TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE corrections (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            bot_message_id INTEGER NOT NULL,
            user_id INTEGER NOT NULL,
            original TEXT NOT NULL,
            correction TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
    ),
    # 2: corrections know their server (filled in from the reply log for old rows), and
    # indexes for the per-server lists and for !forgetme.
    (
        "ALTER TABLE corrections ADD COLUMN guild_id INTEGER",
        """UPDATE corrections SET guild_id = (
            SELECT r.guild_id FROM reply_log AS r
            WHERE r.bot_message_id = corrections.bot_message_id
        )""",
        "CREATE INDEX feedback_by_guild ON feedback (guild_id, id)",
        "CREATE INDEX feedback_by_user ON feedback (user_id)",
        "CREATE INDEX corrections_by_guild ON corrections (guild_id, id)",
        "CREATE INDEX corrections_by_user ON corrections (user_id)",
        "CREATE INDEX reply_log_by_user ON reply_log (user_id)",
    ),
    # 3: which dataset's model made a chat reply, and what a correction taught that dataset,
    # so !correct teaches the right dataset and !forgetme can take the lesson back.
    (
        "ALTER TABLE reply_log ADD COLUMN dataset TEXT",
        "ALTER TABLE corrections ADD COLUMN dataset TEXT",
        "ALTER TABLE corrections ADD COLUMN user_text TEXT",
    ),
    # 4: namespaces (one per server, per user's DMs, and legacy).
    (_namespaces,),
)
SCHEMA_VERSION = len(MIGRATIONS)
# Corrections the user made, or made of the bot's replies to the user (they quote the user).
_ABOUT_USER = (
    "user_id = ? OR bot_message_id IN (SELECT bot_message_id FROM reply_log WHERE user_id = ?)"
)
_CORRECTION_COLUMNS = (
    "id, bot_message_id, user_id, guild_id, original, correction, created_at, dataset, user_text, "
    "namespace, dataset_namespace"
)
_FEEDBACK_COLUMNS = "id, user_id, guild_id, channel_id, text, created_at, namespace"
# A namespace filter: None (an owner's bot-wide view) matches every row.
_IN_NAMESPACE = "(? IS NULL OR namespace = ?)"

# Table and id column per settings scope; never built from user input.
_SETTINGS_TABLES = {
    "guild": ("guild_settings", "guild_id"),
    "channel": ("channel_settings", "channel_id"),
}

# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Feedback:
    id: int
    user_id: int
    guild_id: int | None
    channel_id: int
    text: str
    created_at: str  # ISO 8601, UTC
    namespace: str = ""


@dataclass(frozen=True)
class ReplyLog:
    bot_message_id: int
    channel_id: int
    guild_id: int | None
    user_id: int
    user_message_id: int | None
    user_text: str
    reply_text: str
    kind: str  # "chat", "transcript", "command", ...
    created_at: str
    dataset: str | None = None  # the dataset whose model made a chat reply
    namespace: str = ""


@dataclass(frozen=True)
class Correction:
    id: int
    bot_message_id: int
    user_id: int
    guild_id: int | None
    original: str
    correction: str
    created_at: str
    dataset: str | None = None  # the dataset the correction was added to, if any
    user_text: str | None = None  # the message the corrected reply answered
    namespace: str = ""  # where the correction was made
    dataset_namespace: str | None = None  # whose dataset holds the lesson


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to `SCHEMA_VERSION`; return the version it started from."""
    start = conn.execute("PRAGMA user_version").fetchone()[0]
    if start > SCHEMA_VERSION:
        raise RuntimeError(
            f"The database has schema version {start} but this bot knows only up to "
            f"{SCHEMA_VERSION}; update the bot."
        )
    for number in range(start + 1, SCHEMA_VERSION + 1):
        with _transaction(conn):
            for statement in MIGRATIONS[number - 1]:
                if callable(statement):
                    statement(conn)
                else:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        log.info("Storage schema migrated to version %d", number)
    return start


def _storable(params: Sequence[Any]) -> tuple[Any, ...]:
    """Text that UTF-8 can hold: a lone surrogate (half of a character, which JSON can spell
    but UTF-8 cannot) becomes U+FFFD, so any message text can be stored."""
    return tuple(_whole_characters(p) if isinstance(p, str) else p for p in params)


def _whole_characters(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # surrogatepass joins proper pairs back into characters; "replace" marks the rest.
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _csv_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


class Storage:
    """The bot's database. `await open()` before use, `await close()` at the end
    (or `async with Storage(path) as storage:`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def __aenter__(self) -> Storage:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the folder and the database if needed and run pending migrations."""
        if self._executor is not None:
            raise RuntimeError("Storage is already open")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        """Wait for queued queries, then close the connection and the worker thread."""
        if self._executor is None:
            return
        executor, self._executor = self._executor, None
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._disconnect)
        finally:
            executor.shutdown(wait=False)

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: every statement commits at once unless we BEGIN ourselves.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise RuntimeError(f"SQLite could not switch to WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        log.debug("Storage opened at %s", self.path)

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` on the storage thread and return its result."""
        executor = self._executor
        if executor is None:
            raise RuntimeError("Storage is not open")

        def call() -> T:
            if self._conn is None:
                raise RuntimeError("Storage is not open")
            return work(self._conn)

        return await asyncio.get_running_loop().run_in_executor(executor, call)

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run one statement (outside BEGIN it commits at once) and return its rows."""
        values = _storable(params)
        return await self._run(lambda conn: conn.execute(sql, values).fetchall())

    async def _insert(self, sql: str, params: Sequence[Any]) -> int:
        values = _storable(params)
        return await self._run(lambda conn: conn.execute(sql, values).lastrowid or 0)

    async def schema_version(self) -> int:
        rows = await self._execute("PRAGMA user_version")
        return int(rows[0][0])

    # Settings: one JSON value per (server or channel, key).

    async def _get_setting(self, scope: str, owner_id: int, key: str, default: Any) -> Any:
        table, column = _SETTINGS_TABLES[scope]
        rows = await self._execute(
            f"SELECT value FROM {table} WHERE {column} = ? AND key = ?", (owner_id, key)
        )
        return json.loads(rows[0]["value"]) if rows else default

    async def _set_setting(self, scope: str, owner_id: int, key: str, value: Any) -> None:
        table, column = _SETTINGS_TABLES[scope]
        if value is None:
            sql = f"DELETE FROM {table} WHERE {column} = ? AND key = ?"
            await self._execute(sql, (owner_id, key))
            return
        sql = (
            f"INSERT INTO {table} ({column}, key, value) VALUES (?, ?, ?) "
            f"ON CONFLICT ({column}, key) DO UPDATE SET value = excluded.value"
        )
        await self._execute(sql, (owner_id, key, json.dumps(value)))

    async def _all_settings(self, scope: str, owner_id: int) -> dict[str, Any]:
        table, column = _SETTINGS_TABLES[scope]
        rows = await self._execute(
            f"SELECT key, value FROM {table} WHERE {column} = ? ORDER BY key", (owner_id,)
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

    # Meta: facts about the database itself (see migration 4).

    async def get_meta(self, key: str) -> str | None:
        rows = await self._execute("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    # Feedback. Rows belong to the namespace of the server, or of the user's DMs; listings
    # take a namespace, and None for an owner's bot-wide view.

    async def add_feedback(
        self, user_id: int, guild_id: int | None, channel_id: int, text: str
    ) -> int:
        return await self._insert(
            "INSERT INTO feedback (user_id, guild_id, channel_id, text, created_at, namespace) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (user_id, guild_id, channel_id, text, _now(), namespace_for(guild_id, user_id)),
        )

    async def list_feedback(self, namespace: str | None, limit: int = 10) -> list[Feedback]:
        """The namespace's latest feedback (every namespace's for None), newest first."""
        rows = await self._execute(
            f"SELECT {_FEEDBACK_COLUMNS} FROM feedback WHERE {_IN_NAMESPACE} "
            "ORDER BY id DESC LIMIT ?",
            (namespace, namespace, max(limit, 0)),
        )
        return [Feedback(**dict(row)) for row in rows]

    async def feedback_csv(self, namespace: str | None) -> bytes:
        """The namespace's feedback (every namespace's for None) as UTF-8 CSV with a header,
        oldest first.

        Cells that a spreadsheet would run as a formula get a leading apostrophe.
        """

        def work(conn: sqlite3.Connection) -> bytes:
            rows = conn.execute(
                "SELECT id, created_at, user_id, guild_id, channel_id, text, namespace "
                f"FROM feedback WHERE {_IN_NAMESPACE} ORDER BY id",
                (namespace, namespace),
            )
            out = io.StringIO()
            writer = csv.writer(out)
            header = ["id", "created_at", "user_id", "guild_id", "channel_id", "text", "server"]
            writer.writerow(header)
            for row in rows:
                writer.writerow([_csv_cell(value) for value in row])
            return out.getvalue().encode("utf-8")

        return await self._run(work)

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
    ) -> None:
        """Record a reply the bot sent; logging the same message id again replaces it."""
        await self._execute(
            "INSERT OR REPLACE INTO reply_log (bot_message_id, channel_id, guild_id, user_id, "
            "user_message_id, user_text, reply_text, kind, created_at, dataset, namespace) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                bot_message_id,
                channel_id,
                guild_id,
                user_id,
                user_message_id,
                user_text,
                reply_text,
                kind,
                _now(),
                dataset,
                namespace_for(guild_id, user_id),
            ),
        )

    async def get_reply(self, bot_message_id: int) -> ReplyLog | None:
        rows = await self._execute(
            "SELECT bot_message_id, channel_id, guild_id, user_id, user_message_id, user_text, "
            "reply_text, kind, created_at, dataset, namespace FROM reply_log "
            "WHERE bot_message_id = ?",
            (bot_message_id,),
        )
        return ReplyLog(**dict(rows[0])) if rows else None

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
    ) -> int:
        """Record a correction; `dataset` and `user_text` when it became training data (of
        the dataset of the same namespace)."""
        namespace = namespace_for(guild_id, user_id)
        return await self._insert(
            "INSERT INTO corrections (bot_message_id, user_id, guild_id, original, correction, "
            "created_at, dataset, user_text, namespace, dataset_namespace) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                bot_message_id,
                user_id,
                guild_id,
                original,
                correction,
                _now(),
                dataset,
                user_text,
                namespace,
                namespace if dataset else None,
            ),
        )

    async def list_corrections(self, namespace: str | None, limit: int = 10) -> list[Correction]:
        """The namespace's latest corrections (every namespace's for None), newest first."""
        rows = await self._execute(
            f"SELECT {_CORRECTION_COLUMNS} FROM corrections WHERE {_IN_NAMESPACE} "
            "ORDER BY id DESC LIMIT ?",
            (namespace, namespace, max(limit, 0)),
        )
        return [Correction(**dict(row)) for row in rows]

    async def user_corrections(self, user_id: int) -> list[Correction]:
        """Corrections by the user or of replies to the user, oldest first (for !forgetme)."""
        rows = await self._execute(
            f"SELECT {_CORRECTION_COLUMNS} FROM corrections WHERE {_ABOUT_USER} ORDER BY id",
            (user_id, user_id),
        )
        return [Correction(**dict(row)) for row in rows]

    # Privacy.

    async def forget_user(self, user_id: int) -> dict[str, int]:
        """Delete the user's feedback, corrections about them and logged messages; return the
        number of rows deleted per table."""

        def work(conn: sqlite3.Connection) -> dict[str, int]:
            counts: dict[str, int] = {}
            with _transaction(conn):
                # corrections first: those of replies to the user hold the user's words too
                for table, where, params in (
                    ("feedback", "user_id = ?", (user_id,)),
                    ("corrections", _ABOUT_USER, (user_id, user_id)),
                    ("reply_log", "user_id = ?", (user_id,)),
                ):
                    cursor = conn.execute(f"DELETE FROM {table} WHERE {where}", params)
                    counts[table] = cursor.rowcount
            return counts

        return await self._run(work)
