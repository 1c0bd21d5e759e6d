"""Corrections know their server (filled in from the reply log for old rows), and indexes
for the per-server lists and for !forgetme.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("corrections") as batch:
        batch.add_column(sa.Column("guild_id", Id))
    corrections = sa.table("corrections", sa.column("guild_id"), sa.column("bot_message_id"))
    replies = sa.table("reply_log", sa.column("guild_id"), sa.column("bot_message_id"))
    op.execute(
        corrections.update().values(
            guild_id=sa.select(replies.c.guild_id)
            .where(replies.c.bot_message_id == corrections.c.bot_message_id)
            .scalar_subquery()
        )
    )
    op.create_index("feedback_by_guild", "feedback", ["guild_id", "id"])
    op.create_index("feedback_by_user", "feedback", ["user_id"])
    op.create_index("corrections_by_guild", "corrections", ["guild_id", "id"])
    op.create_index("corrections_by_user", "corrections", ["user_id"])
    op.create_index("reply_log_by_user", "reply_log", ["user_id"])


def downgrade() -> None:
    for index, table in (
        ("reply_log_by_user", "reply_log"),
        ("corrections_by_user", "corrections"),
        ("corrections_by_guild", "corrections"),
        ("feedback_by_user", "feedback"),
        ("feedback_by_guild", "feedback"),
    ):
        op.drop_index(index, table_name=table)
    with op.batch_alter_table("corrections") as batch:
        batch.drop_column("guild_id")
