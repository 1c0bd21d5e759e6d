"""The first schema: settings per server and channel, feedback, the reply log, corrections.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copy of the id type (never import the live schema into a migration).
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "guild_settings",
        sa.Column("guild_id", Id, primary_key=True, autoincrement=False),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "channel_settings",
        sa.Column("channel_id", Id, primary_key=True, autoincrement=False),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "feedback",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("guild_id", Id),
        sa.Column("channel_id", Id, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "reply_log",
        sa.Column("bot_message_id", Id, primary_key=True, autoincrement=False),
        sa.Column("channel_id", Id, nullable=False),
        sa.Column("guild_id", Id),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("user_message_id", Id),
        sa.Column("user_text", sa.Text, nullable=False),
        sa.Column("reply_text", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
    )
    op.create_table(
        "corrections",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("bot_message_id", Id, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("original", sa.Text, nullable=False),
        sa.Column("correction", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    for table in ("corrections", "reply_log", "feedback", "channel_settings", "guild_settings"):
        op.drop_table(table)
