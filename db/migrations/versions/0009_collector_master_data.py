"""master data: a collector's mobile number and safety-training validity (issue 18, item 1)

Branches and collectors are registered from the back office's files (feeds/branches.py,
feeds/collectors.py). `collectors` is not an evidence table (db/retention.py), so no
retention trigger is lifted; both columns are nullable: a collector registered before has
neither until their file says.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""
# Altering an evidence table (db/retention.py, RETAINED) or updating its rows: do it inside
# `with retention_lifted(op):` from db.retention (db/migrations/README.md).
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('collectors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mobile', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('training_expires_on', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('collectors', schema=None) as batch_op:
        batch_op.drop_column('training_expires_on')
        batch_op.drop_column('mobile')
