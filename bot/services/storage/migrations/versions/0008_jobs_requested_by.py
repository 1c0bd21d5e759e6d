"""Jobs: the column of the user who started a job is `requested_by`, as the job calls it; the
job's `namespace` is whose job it is. (It was `owner`, a word that meant the namespace in
the code and the user here.)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("owner", new_column_name="requested_by")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("requested_by", new_column_name="owner")
