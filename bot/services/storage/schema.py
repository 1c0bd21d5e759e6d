"""The tables as the latest migration leaves them, for queries and for `db copy`.

The migrations in `migrations/versions/` build these tables step by step; a test checks that
the two agree. Change the schema with a new migration, then here.

Discord ids are 64-bit: BIGINT on PostgreSQL, INTEGER on SQLite (where INTEGER holds 64 bits,
and only `INTEGER PRIMARY KEY` is the row id that AUTOINCREMENT needs).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)

Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

guild_settings = Table(
    "guild_settings",
    metadata,
    Column("guild_id", Id, primary_key=True, autoincrement=False),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),  # JSON
)

channel_settings = Table(
    "channel_settings",
    metadata,
    Column("channel_id", Id, primary_key=True, autoincrement=False),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),  # JSON
)

user_settings = Table(
    "user_settings",
    metadata,
    Column("user_id", Id, primary_key=True, autoincrement=False),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),  # JSON
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, nullable=False),
    Column("guild_id", Id),
    Column("channel_id", Id, nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", Text, nullable=False),  # ISO 8601, UTC
    Column("namespace", Text),
    Index("feedback_by_guild", "guild_id", "id"),
    Index("feedback_by_user", "user_id"),
    Index("feedback_by_namespace", "namespace", "id"),
    sqlite_autoincrement=True,
)

reply_log = Table(
    "reply_log",
    metadata,
    Column("bot_message_id", Id, primary_key=True, autoincrement=False),
    Column("channel_id", Id, nullable=False),
    Column("guild_id", Id),
    Column("user_id", Id, nullable=False),
    Column("user_message_id", Id),
    Column("user_text", Text, nullable=False),
    Column("reply_text", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("dataset", Text),
    Column("namespace", Text),
    Index("reply_log_by_user", "user_id"),
)

corrections = Table(
    "corrections",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("bot_message_id", Id, nullable=False),
    Column("user_id", Id, nullable=False),
    Column("original", Text, nullable=False),
    Column("correction", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("guild_id", Id),
    Column("dataset", Text),
    Column("user_text", Text),
    Column("namespace", Text),
    Column("dataset_namespace", Text),
    Index("corrections_by_guild", "guild_id", "id"),
    Index("corrections_by_user", "user_id"),
    Index("corrections_by_namespace", "namespace", "id"),
    sqlite_autoincrement=True,
)

meta = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

# Bytes of datasets and models per namespace and path (blobs.py): BLOB on SQLite, bytea on
# PostgreSQL.
blobs = Table(
    "blobs",
    metadata,
    Column("namespace", Text, primary_key=True),
    Column("path", Text, primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", Text, nullable=False),  # hex digest of data
    Column("updated_at", Text, nullable=False),  # ISO 8601, UTC
)

# Jobs (bot/services/tasks/jobstore.py): times are ISO 8601, UTC; `updated_at` is a heartbeat.
jobs = Table(
    "jobs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("namespace", Text),
    Column("requested_by", Text),  # the user who started it
    Column("kind", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("progress", Float),  # 0..1 while running, when the work can tell
    Column("created_at", Text, nullable=False),
    Column("started_at", Text),
    Column("finished_at", Text),
    Column("updated_at", Text, nullable=False),
    Column("error", Text),
    Column("result_key", Text),  # the blob with its result, if any
    Column("summary", Text),  # one line for people: what a finished job made
    Index("jobs_by_namespace", "namespace", "created_at"),
)

# Tables with an id the database hands out (db copy moves their counters along).
COUNTED = (feedback, corrections)
