"""daily runs: the report of each run of the daily feed (issue 18, item 6)

DailyFeedRunWorkflow, started by a Temporal Schedule, records here which export it took (name
and SHA-256), the counts, the rejected-rows file and the outcome. `processed_sha256` is unique:
a file with the same content is processed by one run only (the later ones record
ALREADY_PROCESSED with it NULL). Not an evidence table (db/retention.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('daily_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_key', sa.String(length=300), nullable=False),
    sa.Column('scheduled_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('export_dir', sa.Text(), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('processed_sha256', sa.String(length=64), nullable=True),
    sa.Column('rows_read', sa.Integer(), nullable=False),
    sa.Column('cases_started', sa.Integer(), nullable=False),
    sa.Column('already_running', sa.Integer(), nullable=False),
    sa.Column('debts_updated', sa.Integer(), server_default='0', nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.Column('rejected_file', sa.Text(), nullable=False),
    sa.Column('payments_file', sa.String(length=255), nullable=False),
    sa.Column('payments_sha256', sa.String(length=64), nullable=False),
    sa.Column('payments_signalled', sa.Integer(), nullable=False),
    sa.Column('payments_rejected', sa.Integer(), nullable=False),
    sa.Column('payments_rejected_file', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_daily_runs')),
    sa.UniqueConstraint('processed_sha256', name=op.f('uq_daily_runs_processed_sha256')),
    sa.UniqueConstraint('run_key', name=op.f('uq_daily_runs_run_key'))
    )
    with op.batch_alter_table('daily_runs', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_daily_runs_scheduled_at'), ['scheduled_at'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('daily_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_daily_runs_scheduled_at'))

    op.drop_table('daily_runs')
