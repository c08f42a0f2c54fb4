"""staff safety on visits (issue 15): users' mobiles, branch heads and legal reviewers, staff
texts in the SMS outbox

- `users.mobile`: where a supervisor's (or branch head's) safety alerts are texted;
- `users.role` may be BRANCH_HEAD (alerted when a supervisor has not acknowledged) or LEGAL
  (legal review before escalation);
- `sms_outbox.borrower_id` is nullable: a staff text (purpose `staff_alert`) belongs to no
  borrower, so no borrower's caps count it (the outbox is evidence: altered with its retention
  triggers lifted);
- `visits.counselling`, `visits.hardships`, `visits.situation`: help recorded at a visit
  (an evidence table: altered with its retention triggers lifted);
- `complaints`: a borrower's complaints, their deadlines, acknowledgement, escalations and
  outcome (read by the collection record, counted on the dashboard).

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
        with op.batch_alter_table('visits', schema=None) as batch_op:
            batch_op.add_column(sa.Column('counselling', sa.String(length=120), server_default='', nullable=False))
            batch_op.add_column(sa.Column('hardships', sa.String(length=120), server_default='', nullable=False))
            batch_op.add_column(sa.Column('situation', sa.Text(), server_default='', nullable=False))
    op.create_table('complaints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('generation', sa.String(length=16), server_default='', nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('loan_no', sa.String(length=40), nullable=False),
    sa.Column('branch_code', sa.String(length=16), nullable=False),
    sa.Column('collectors', sa.String(length=80), nullable=False),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('recorded_by', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('ack_due', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolve_due', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=64), nullable=True),
    sa.Column('ack_escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolve_escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=64), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_complaints_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_complaints')),
    sa.UniqueConstraint('case_id', 'generation', 'number', name=op.f('uq_complaints_case_id_generation_number'))
    )
    with op.batch_alter_table('complaints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_complaints_branch_code'), ['branch_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_complaints_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_complaints_loan_no'), ['loan_no'], unique=False)
        batch_op.create_index(batch_op.f('ix_complaints_received_at'), ['received_at'], unique=False)


def downgrade() -> None:
    op.drop_table('complaints')
    with retention_lifted(op):
        with op.batch_alter_table('visits', schema=None) as batch_op:
            batch_op.drop_column('situation')
            batch_op.drop_column('hardships')
            batch_op.drop_column('counselling')
        op.execute("DELETE FROM sms_outbox WHERE borrower_id IS NULL")
        with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
            batch_op.alter_column('borrower_id', existing_type=sa.Integer(), nullable=False)
    op.execute("DELETE FROM users WHERE role IN ('BRANCH_HEAD', 'LEGAL')")
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_users_role_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_users_role_known'), sa.text(ROLES_BEFORE))
        batch_op.drop_column('mobile')
