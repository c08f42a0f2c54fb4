"""collection schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op



revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('borrowers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('id_number', sa.String(length=18), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('address', sa.String(length=300), nullable=False),
    sa.Column('village', sa.String(length=100), nullable=False),
    sa.Column('remote', sa.Boolean(), nullable=False),
    sa.Column('hostile', sa.Boolean(), nullable=False),
    sa.Column('monthly_income_fen', sa.BigInteger(), nullable=False),
    sa.Column('household_size', sa.Integer(), nullable=False),
    sa.Column('disaster_affected', sa.Boolean(), nullable=False),
    sa.Column('sms_opted_out', sa.Boolean(), nullable=False),
    sa.Column('opted_out_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_borrowers')),
    sa.UniqueConstraint('id_number', name=op.f('uq_borrowers_id_number'))
    )
    op.create_table('branches',
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('region', sa.String(length=100), nullable=False),
    sa.Column('timezone', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_branches'))
    )
    with op.batch_alter_table('branches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_branches_region'), ['region'], unique=False)

    op.create_table('webhook_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('message_sid', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_events')),
    sa.UniqueConstraint('kind', 'message_sid', 'status', name=op.f('uq_webhook_events_kind_message_sid_status'))
    )
    op.create_table('collectors',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('branch_code', sa.String(length=16), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['branch_code'], ['branches.code'], name=op.f('fk_collectors_branch_code_branches')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collectors'))
    )
    with op.batch_alter_table('collectors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collectors_branch_code'), ['branch_code'], unique=False)

    op.create_table('loans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('loan_no', sa.String(length=40), nullable=False),
    sa.Column('borrower_id', sa.Integer(), nullable=False),
    sa.Column('branch_code', sa.String(length=16), nullable=False),
    sa.Column('product', sa.String(length=60), nullable=False),
    sa.Column('principal_fen', sa.BigInteger(), nullable=False),
    sa.Column('outstanding_principal_fen', sa.BigInteger(), nullable=False),
    sa.Column('interest_fen', sa.BigInteger(), nullable=False),
    sa.Column('penalty_fen', sa.BigInteger(), nullable=False),
    sa.Column('disbursed_on', sa.Date(), nullable=True),
    sa.Column('overdue_since', sa.Date(), nullable=False),
    sa.Column('prior_broken_promises', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.CheckConstraint('interest_fen BETWEEN 0 AND 999999999999999999', name=op.f('ck_loans_interest_fen_range')),
    sa.CheckConstraint('outstanding_principal_fen BETWEEN 0 AND 999999999999999999', name=op.f('ck_loans_outstanding_principal_fen_range')),
    sa.CheckConstraint('penalty_fen BETWEEN 0 AND 999999999999999999', name=op.f('ck_loans_penalty_fen_range')),
    sa.CheckConstraint('principal_fen BETWEEN 0 AND 999999999999999999', name=op.f('ck_loans_principal_fen_range')),
    sa.ForeignKeyConstraint(['borrower_id'], ['borrowers.id'], name=op.f('fk_loans_borrower_id_borrowers')),
    sa.ForeignKeyConstraint(['branch_code'], ['branches.code'], name=op.f('fk_loans_branch_code_branches')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loans')),
    sa.UniqueConstraint('loan_no', name=op.f('uq_loans_loan_no'))
    )
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_loans_borrower_id'), ['borrower_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_loans_branch_code'), ['branch_code'], unique=False)

    op.create_table('cases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('loan_id', sa.Integer(), nullable=False),
    sa.Column('workflow_id', sa.String(length=80), nullable=False),
    sa.Column('branch_code', sa.String(length=16), nullable=False),
    sa.Column('stage', sa.String(length=24), nullable=False),
    sa.Column('stage_since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seq', sa.Integer(), nullable=False),
    sa.Column('risk_tier', sa.String(length=8), nullable=False),
    sa.Column('primary_collector', sa.String(length=32), nullable=True),
    sa.Column('second_collector', sa.String(length=32), nullable=True),
    sa.Column('debt_fen', sa.BigInteger(), nullable=True),
    sa.Column('paid_fen', sa.BigInteger(), nullable=False),
    sa.Column('next_action', sa.String(length=120), nullable=False),
    sa.Column('next_action_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['branch_code'], ['branches.code'], name=op.f('fk_cases_branch_code_branches')),
    sa.ForeignKeyConstraint(['loan_id'], ['loans.id'], name=op.f('fk_cases_loan_id_loans')),
    sa.ForeignKeyConstraint(['primary_collector'], ['collectors.id'], name=op.f('fk_cases_primary_collector_collectors')),
    sa.ForeignKeyConstraint(['second_collector'], ['collectors.id'], name=op.f('fk_cases_second_collector_collectors')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases')),
    sa.UniqueConstraint('loan_id', name=op.f('uq_cases_loan_id')),
    sa.UniqueConstraint('workflow_id', name=op.f('uq_cases_workflow_id'))
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cases_branch_code'), ['branch_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_primary_collector'), ['primary_collector'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_stage'), ['stage'], unique=False)

    op.create_table('payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=64), nullable=False),
    sa.Column('loan_id', sa.Integer(), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount_fen BETWEEN 0 AND 999999999999999999', name=op.f('ck_payments_amount_fen_range')),
    sa.ForeignKeyConstraint(['loan_id'], ['loans.id'], name=op.f('fk_payments_loan_id_loans')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('reference', name=op.f('uq_payments_reference'))
    )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payments_loan_id'), ['loan_id'], unique=False)

    op.create_table('agreements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('plan_number', sa.Integer(), nullable=False),
    sa.Column('plan_hash', sa.String(length=64), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('pdf_path', sa.String(length=300), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('html_path', sa.String(length=300), nullable=False),
    sa.Column('html_sha256', sa.String(length=64), nullable=False),
    sa.Column('total_fen', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('signed_by', sa.String(length=64), nullable=True),
    sa.Column('signed_place', sa.String(length=200), nullable=True),
    sa.CheckConstraint('total_fen BETWEEN 0 AND 999999999999999999', name=op.f('ck_agreements_total_fen_range')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_agreements_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agreements')),
    sa.UniqueConstraint('case_id', 'plan_hash', name=op.f('uq_agreements_case_id_plan_hash')),
    sa.UniqueConstraint('case_id', 'version', name=op.f('uq_agreements_case_id_version'))
    )
    op.create_table('assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('collector_id', sa.String(length=32), nullable=False),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('by', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_assignments_case_id_cases')),
    sa.ForeignKeyConstraint(['collector_id'], ['collectors.id'], name=op.f('fk_assignments_collector_id_collectors')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_assignments'))
    )
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_assignments_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_assignments_collector_id'), ['collector_id'], unique=False)

    op.create_table('contact_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=12), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=24), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_contact_attempts_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_attempts')),
    sa.UniqueConstraint('key', name=op.f('uq_contact_attempts_key'))
    )
    with op.batch_alter_table('contact_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_attempts_case_id'), ['case_id'], unique=False)

    op.create_table('inbound_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_sid', sa.String(length=64), nullable=False),
    sa.Column('from_number', sa.String(length=20), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('intent', sa.String(length=16), nullable=False),
    sa.Column('borrower_id', sa.Integer(), nullable=True),
    sa.Column('case_id', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['borrower_id'], ['borrowers.id'], name=op.f('fk_inbound_messages_borrower_id_borrowers')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_inbound_messages_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_messages')),
    sa.UniqueConstraint('message_sid', name=op.f('uq_inbound_messages_message_sid'))
    )
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_messages_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_messages_from_number'), ['from_number'], unique=False)

    op.create_table('sms_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('borrower_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=40), nullable=False),
    sa.Column('to_number', sa.String(length=20), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('segments', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('provider_sid', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivery_status', sa.String(length=16), nullable=True),
    sa.Column('delivery_error', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['borrower_id'], ['borrowers.id'], name=op.f('fk_sms_outbox_borrower_id_borrowers')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_sms_outbox_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_outbox')),
    sa.UniqueConstraint('key', name=op.f('uq_sms_outbox_key')),
    sa.UniqueConstraint('provider_sid', name=op.f('uq_sms_outbox_provider_sid'))
    )
    with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sms_outbox_borrower_id'), ['borrower_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sms_outbox_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sms_outbox_sent_at'), ['sent_at'], unique=False)

    op.create_table('stage_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('from_stage', sa.String(length=24), nullable=True),
    sa.Column('to_stage', sa.String(length=24), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_stage_history_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stage_history')),
    sa.UniqueConstraint('case_id', 'seq', name=op.f('uq_stage_history_case_id_seq'))
    )
    op.create_table('tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('assignees', sa.String(length=200), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_tasks_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks')),
    sa.UniqueConstraint('key', name=op.f('uq_tasks_key'))
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tasks_case_id'), ['case_id'], unique=False)

    op.create_table('visits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('visit_no', sa.Integer(), nullable=False),
    sa.Column('visited_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=24), nullable=False),
    sa.Column('collector_ids', sa.String(length=80), nullable=False),
    sa.Column('reported_by', sa.String(length=64), nullable=False),
    sa.Column('stage', sa.String(length=24), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_visits_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visits')),
    sa.UniqueConstraint('case_id', 'visit_no', name=op.f('uq_visits_case_id_visit_no'))
    )
    op.create_table('agreement_installments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agreement_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('amount_fen BETWEEN 0 AND 999999999999999999', name=op.f('ck_agreement_installments_amount_fen_range')),
    sa.ForeignKeyConstraint(['agreement_id'], ['agreements.id'], name=op.f('fk_agreement_installments_agreement_id_agreements')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agreement_installments')),
    sa.UniqueConstraint('agreement_id', 'seq', name=op.f('uq_agreement_installments_agreement_id_seq'))
    )
    op.create_table('signed_scans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agreement_id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('path', sa.String(length=300), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('content_type', sa.String(length=40), nullable=False),
    sa.Column('uploaded_by', sa.String(length=64), nullable=False),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agreement_id'], ['agreements.id'], name=op.f('fk_signed_scans_agreement_id_agreements')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signed_scans')),
    sa.UniqueConstraint('agreement_id', 'sha256', name=op.f('uq_signed_scans_agreement_id_sha256'))
    )
    with op.batch_alter_table('signed_scans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signed_scans_agreement_id'), ['agreement_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('signed_scans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signed_scans_agreement_id'))

    op.drop_table('signed_scans')
    op.drop_table('agreement_installments')
    op.drop_table('visits')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tasks_case_id'))

    op.drop_table('tasks')
    op.drop_table('stage_history')
    with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sms_outbox_sent_at'))
        batch_op.drop_index(batch_op.f('ix_sms_outbox_case_id'))
        batch_op.drop_index(batch_op.f('ix_sms_outbox_borrower_id'))

    op.drop_table('sms_outbox')
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_messages_from_number'))
        batch_op.drop_index(batch_op.f('ix_inbound_messages_case_id'))

    op.drop_table('inbound_messages')
    with op.batch_alter_table('contact_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_attempts_case_id'))

    op.drop_table('contact_attempts')
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_assignments_collector_id'))
        batch_op.drop_index(batch_op.f('ix_assignments_case_id'))

    op.drop_table('assignments')
    op.drop_table('agreements')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payments_loan_id'))

    op.drop_table('payments')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_stage'))
        batch_op.drop_index(batch_op.f('ix_cases_primary_collector'))
        batch_op.drop_index(batch_op.f('ix_cases_branch_code'))

    op.drop_table('cases')
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_loans_branch_code'))
        batch_op.drop_index(batch_op.f('ix_loans_borrower_id'))

    op.drop_table('loans')
    with op.batch_alter_table('collectors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collectors_branch_code'))

    op.drop_table('collectors')
    op.drop_table('webhook_events')
    with op.batch_alter_table('branches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_branches_region'))

    op.drop_table('branches')
    op.drop_table('borrowers')
