"""Which dataset's model made a chat reply, and what a correction taught that dataset, so
!correct teaches the right dataset and !forgetme can take the lesson back.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reply_log") as batch:
        batch.add_column(sa.Column("dataset", sa.Text))
    with op.batch_alter_table("corrections") as batch:
        batch.add_column(sa.Column("dataset", sa.Text))
        batch.add_column(sa.Column("user_text", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("corrections") as batch:
        batch.drop_column("user_text")
        batch.drop_column("dataset")
    with op.batch_alter_table("reply_log") as batch:
        batch.drop_column("dataset")
