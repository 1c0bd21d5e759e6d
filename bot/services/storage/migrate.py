"""Bring a database to the latest schema with the Alembic migrations in `migrations/`.

Runs at every start, in one transaction: either every pending migration is applied or none
is. PostgreSQL takes an advisory lock first, so processes that start together migrate one
after the other; on SQLite the transaction itself (BEGIN IMMEDIATE) does that.

A SQLite database made before Alembic kept its version in `PRAGMA user_version` (1 to 4, the
same steps as revisions 0001 to 0004): it is stamped at that revision and upgraded from there.
On SQLite the version is also written to `PRAGMA user_version`, so an older release of the bot
still refuses a schema newer than it knows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, MetaData, String, Table, func, select, text

from bot.services.storage.schema import metadata

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The schema version the migrations reach (the number of the last revision).
SCHEMA_VERSION = 8
# The last version of the bot before Alembic (PRAGMA user_version only).
LAST_PRE_ALEMBIC_VERSION = 4
VERSION_TABLE = "alembic_version"
# Any constant: the key of the PostgreSQL advisory lock held while migrating.
MIGRATION_LOCK = 0x626F74_6462  # "bot" "db"

version_table = Table(VERSION_TABLE, MetaData(), Column("version_num", String(32)))


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer release of the bot."""


class ForeignSchemaError(RuntimeError):
    """The database belongs to another application."""


def revision_name(version: int) -> str:
    return f"{version:04d}"


def script_directory(migrations_dir: Path | None = None) -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir or MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config)


def current_version(conn: Connection) -> int | None:
    """The schema version recorded in the database, None for a database without one."""
    if not conn.dialect.has_table(conn, VERSION_TABLE):
        return _legacy_version(conn) or None
    revision = conn.execute(select(version_table.c.version_num)).scalar()
    if revision is None:
        return None
    if not revision.isdigit():
        raise ForeignSchemaError(
            f"The database holds another application's tables (Alembic revision {revision!r}); "
            "give the bot a database of its own."
        )
    return int(revision)


def upgrade(conn: Connection, target: str = "head", migrations_dir: Path | None = None) -> int:
    """Apply the pending migrations up to `target` (a revision such as "0003") on `conn`,
    inside the caller's transaction, which the caller commits; return the version the
    database had before (0 for a new one)."""
    script = script_directory(migrations_dir)
    head = int(script.get_current_head() or 0)
    wanted = head if target == "head" else int(target)
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
    start = current_version(conn) or 0
    if start > head:
        raise SchemaTooNewError(
            f"The database has schema version {start} but this bot knows only up to {head}; "
            "update the bot."
        )
    if start and not conn.dialect.has_table(conn, VERSION_TABLE):
        _stamp(conn, script, start)
        log.info("Adopted a database at schema version %d", start)
    if start < wanted:
        _run(conn, script, lambda rev, _ctx: script._upgrade_revs(target, rev))
        log.info("Storage schema migrated from version %d to %d", start, wanted)
    return start


def _run(conn: Connection, script: ScriptDirectory, steps: Any) -> None:
    with EnvironmentContext(Config(), script, fn=steps) as environment:
        environment.configure(
            connection=conn,
            target_metadata=metadata,
            render_as_batch=True,  # SQLite rebuilds a table for changes ALTER can't make
            transactional_ddl=True,
            on_version_apply=_record_user_version,
        )
        environment.run_migrations()


def _stamp(conn: Connection, script: ScriptDirectory, version: int) -> None:
    context = MigrationContext.configure(conn)
    context.stamp(script, revision_name(version))


def _legacy_version(conn: Connection) -> int:
    if conn.dialect.name != "sqlite":
        return 0
    return int(conn.execute(text("PRAGMA user_version")).scalar() or 0)


def _record_user_version(*, ctx: MigrationContext, heads: set[str], **_kw: Any) -> None:
    if ctx.dialect.name == "sqlite" and heads:
        assert ctx.connection is not None
        number = max(int(h) for h in heads)
        ctx.connection.execute(text(f"PRAGMA user_version = {number}"))
