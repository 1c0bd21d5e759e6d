"""Jobs: training, transcription and scoring jobs, readable from every process of the bot.

A job's row is written when it is queued and updated as it runs (by the bot, or by the worker
that runs it); `updated_at` is a heartbeat, so a job whose bot or worker died is shown as
interrupted rather than running forever (bot/services/tasks/jobstore.py).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("namespace", sa.Text),
        sa.Column("owner", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("progress", sa.Float),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("started_at", sa.Text),
        sa.Column("finished_at", sa.Text),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("result_key", sa.Text),
        sa.Column("summary", sa.Text),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.create_index("jobs_by_namespace", ["namespace", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("jobs_by_namespace")
    op.drop_table("jobs")
