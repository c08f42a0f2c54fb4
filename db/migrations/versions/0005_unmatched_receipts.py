"""delivery receipts that came before their message's SID was stored (issue 13, item 8)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sms_unmatched_receipts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_sid', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error_code', sa.String(length=16), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_unmatched_receipts')),
    sa.UniqueConstraint(
        'message_sid', 'status', name=op.f('uq_sms_unmatched_receipts_message_sid_status')
    )
    )
    with op.batch_alter_table('sms_unmatched_receipts', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_sms_unmatched_receipts_received_at'), ['received_at'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('sms_unmatched_receipts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sms_unmatched_receipts_received_at'))
    op.drop_table('sms_unmatched_receipts')
