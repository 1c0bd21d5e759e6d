"""Namespaces: every row belongs to one (bot/services/tenancy/tenants.py).

A server's rows go to the server; DM rows to the user's DM namespace; corrections that name
no server and no logged reply to `legacy`. The datasets and models an older install shared go
to the one server it knew, else to `legacy`: that choice is kept in `meta` for the file move
at start (`tenancy.migrate_files`), which also finishes after a crash.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LEGACY = "legacy"  # bot.services.tenancy.namespaces.LEGACY as it was when this shipped


def _row_namespace(table: sa.TableClause) -> sa.ColumnElement[str]:
    """The server's id, or `dm-<user id>` for a row with no server."""
    dm = sa.literal("dm-", sa.Text) + sa.cast(table.c.user_id, sa.Text)
    return sa.case((table.c.guild_id.is_(None), dm), else_=sa.cast(table.c.guild_id, sa.Text))


def _table(name: str, *columns: str) -> sa.TableClause:
    ids = {"guild_id", "user_id", "bot_message_id"}
    return sa.table(name, *(sa.column(c, sa.BigInteger if c in ids else sa.Text) for c in columns))


def upgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("namespace", sa.Text))
    with op.batch_alter_table("reply_log") as batch:
        batch.add_column(sa.Column("namespace", sa.Text))
    with op.batch_alter_table("corrections") as batch:
        batch.add_column(sa.Column("namespace", sa.Text))
        batch.add_column(sa.Column("dataset_namespace", sa.Text))
    meta = op.create_table(
        "meta",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )

    feedback = _table("feedback", "namespace", "guild_id", "user_id")
    replies = _table("reply_log", "namespace", "guild_id", "user_id", "bot_message_id")
    corrections = _table(
        "corrections", "namespace", "dataset_namespace", "dataset", "guild_id", "bot_message_id"
    )
    settings = _table("guild_settings", "guild_id")
    op.execute(feedback.update().values(namespace=_row_namespace(feedback)))
    op.execute(replies.update().values(namespace=_row_namespace(replies)))
    logged = (
        sa.select(replies.c.namespace)
        .where(replies.c.bot_message_id == corrections.c.bot_message_id)
        .scalar_subquery()
    )
    op.execute(
        corrections.update().values(
            namespace=sa.func.coalesce(sa.cast(corrections.c.guild_id, sa.Text), logged, LEGACY)
        )
    )

    servers = sa.union(
        *(sa.select(t.c.guild_id) for t in (settings, feedback, replies, corrections))
    )
    known = [row[0] for row in op.get_bind().execute(servers) if row[0] is not None]
    shared = str(known[0]) if len(known) == 1 else LEGACY
    op.execute(
        corrections.update()
        .where(corrections.c.dataset.is_not(None))
        .values(dataset_namespace=shared)
    )
    op.bulk_insert(meta, [{"key": "shared_files_namespace", "value": shared}])
    op.create_index("feedback_by_namespace", "feedback", ["namespace", "id"])
    op.create_index("corrections_by_namespace", "corrections", ["namespace", "id"])


def downgrade() -> None:
    op.drop_index("corrections_by_namespace", table_name="corrections")
    op.drop_index("feedback_by_namespace", table_name="feedback")
    op.drop_table("meta")
    with op.batch_alter_table("corrections") as batch:
        batch.drop_column("dataset_namespace")
        batch.drop_column("namespace")
    with op.batch_alter_table("reply_log") as batch:
        batch.drop_column("namespace")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("namespace")
