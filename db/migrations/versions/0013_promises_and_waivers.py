"""promises to pay, waiver/settlement requests, strategy arms (issue 16)

`promises`: one row per (case, generation, promise number), its status updated when kept or
broken. `waivers`: one row per request, with the level that must approve it and the decision
(APPROVED, REFUSED, EXPIRED). Both written by the case's activities, idempotent by key.
cases: the strategy file's version, segment and
champion/challenger arm chosen at the assessment (collection-v4 cases; "" before).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The branch head role (网点负责人) that approves the largest waivers came with 0012.


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('strategy_version', sa.String(length=40), server_default='', nullable=False)
        )
        batch_op.add_column(
            sa.Column('segment', sa.String(length=40), server_default='', nullable=False)
        )
        batch_op.add_column(
            sa.Column('strategy_arm', sa.String(length=12), server_default='', nullable=False)
        )
        batch_op.create_index(batch_op.f('ix_cases_strategy_arm'), ['strategy_arm'], unique=False)
    op.create_table('promises',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('generation', sa.String(length=16), server_default='', nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('made_by', sa.String(length=64), nullable=False),
    sa.Column('made_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paid_fen', sa.BigInteger(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.CheckConstraint('amount_fen BETWEEN 0 AND 999999999999999999', name=op.f('ck_promises_amount_fen_range')),
    sa.CheckConstraint('paid_fen BETWEEN 0 AND 999999999999999999', name=op.f('ck_promises_paid_fen_range')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_promises_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_promises')),
    sa.UniqueConstraint('case_id', 'generation', 'seq', name=op.f('uq_promises_case_id_generation_seq'))
    )
    with op.batch_alter_table('promises', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_promises_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_promises_status'), ['status'], unique=False)

    op.create_table('waivers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('generation', sa.String(length=16), server_default='', nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('principal_fen', sa.BigInteger(), nullable=False),
    sa.Column('interest_fen', sa.BigInteger(), nullable=False),
    sa.Column('penalty_fen', sa.BigInteger(), nullable=False),
    sa.Column('settle_fen', sa.BigInteger(), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('proposed_by', sa.String(length=64), nullable=False),
    sa.Column('proposed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deadline', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('decided_by', sa.String(length=64), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=False),
    sa.CheckConstraint('interest_fen BETWEEN 0 AND 999999999999999999', name=op.f('ck_waivers_interest_fen_range')),
    sa.CheckConstraint('penalty_fen BETWEEN 0 AND 999999999999999999', name=op.f('ck_waivers_penalty_fen_range')),
    sa.CheckConstraint('principal_fen BETWEEN 0 AND 999999999999999999', name=op.f('ck_waivers_principal_fen_range')),
    sa.CheckConstraint('settle_fen BETWEEN 0 AND 999999999999999999', name=op.f('ck_waivers_settle_fen_range')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_waivers_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waivers')),
    sa.UniqueConstraint('case_id', 'generation', 'seq', name=op.f('uq_waivers_case_id_generation_seq'))
    )
    with op.batch_alter_table('waivers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_waivers_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_waivers_status'), ['status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_strategy_arm'))
        batch_op.drop_column('strategy_arm')
        batch_op.drop_column('segment')
        batch_op.drop_column('strategy_version')
    with op.batch_alter_table('waivers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_waivers_status'))
        batch_op.drop_index(batch_op.f('ix_waivers_case_id'))

    op.drop_table('waivers')
    with op.batch_alter_table('promises', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_promises_status'))
        batch_op.drop_index(batch_op.f('ix_promises_case_id'))

    op.drop_table('promises')
