"""staff safety on visits (issue 15): users' mobiles, branch heads and legal reviewers, staff
texts in the SMS outbox

- `users.mobile`: where a supervisor's (or branch head's) safety alerts are texted;
- `users.role` may be BRANCH_HEAD (alerted when a supervisor has not acknowledged) or LEGAL
  (legal review before escalation);
- `sms_outbox.borrower_id` is nullable: a staff text (purpose `staff_alert`) belongs to no
  borrower, so no borrower's caps count it (the outbox is evidence: altered with its retention
  triggers lifted).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.retention import retention_lifted

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES_BEFORE = "role IN ('SUPERVISOR', 'COLLECTOR', 'BACK_OFFICE')"
ROLES = "role IN ('SUPERVISOR', 'COLLECTOR', 'BACK_OFFICE', 'BRANCH_HEAD', 'LEGAL')"


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mobile', sa.String(length=20), nullable=True))
        batch_op.drop_constraint(batch_op.f('ck_users_role_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_users_role_known'), sa.text(ROLES))
    with retention_lifted(op):
        with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
            batch_op.alter_column('borrower_id', existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    with retention_lifted(op):
        op.execute("DELETE FROM sms_outbox WHERE borrower_id IS NULL")
        with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
            batch_op.alter_column('borrower_id', existing_type=sa.Integer(), nullable=False)
    op.execute("DELETE FROM users WHERE role IN ('BRANCH_HEAD', 'LEGAL')")
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_users_role_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_users_role_known'), sa.text(ROLES_BEFORE))
        batch_op.drop_column('mobile')
