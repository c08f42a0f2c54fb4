"""staff texts about no case (issue 15, training on record): `sms_outbox.case_id` nullable

The supervisors' daily safety-training reminder (purpose `staff_training`) is a staff text
like a safety alert, but about the branch's collectors, not a case: its outbox row has no
case (and no borrower, since 0012). The outbox is evidence: altered with its retention
triggers lifted. A downgrade removes those rows (as 0012's removes the staff texts).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.retention import retention_lifted

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with retention_lifted(op):
        with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
            batch_op.alter_column('case_id', existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    with retention_lifted(op):
        op.execute("DELETE FROM sms_outbox WHERE case_id IS NULL")
        with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
            batch_op.alter_column('case_id', existing_type=sa.Integer(), nullable=False)
