"""User settings: choices a user makes for themselves that hold in every server (the listening
opt-out), with a table of their own rather than borrowed server ids.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "user_settings",
        sa.Column("user_id", Id, primary_key=True, autoincrement=False),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),  # JSON
    )


def downgrade() -> None:
    op.drop_table("user_settings")
