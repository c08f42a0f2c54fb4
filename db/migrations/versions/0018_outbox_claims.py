"""an outbox row's claim (issue 15 review): who may send a staff text now

Two attempts at one staff text (two reminder runs at once, a timed-out attempt and its
retry) each saw the row PENDING and both sent it. Now an attempt claims the row first, in
the transaction that checks it: `claim_token` (the attempt's own id) and `claim_until` (the
end of the attempt's time to call the provider). Only the claimant sends; a row claimed by
another attempt until later is not sent again; a lapsed claim is taken over only after the
provider's lookup says the message did not go out. The outbox is evidence: altered with its
retention triggers lifted, which are rebuilt with the claim among the columns that change.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.retention import retention_lifted

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with retention_lifted(op):
        with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
            batch_op.add_column(sa.Column('claim_token', sa.String(length=32), nullable=True))
            batch_op.add_column(sa.Column('claim_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with retention_lifted(op):
        with op.batch_alter_table('sms_outbox', schema=None) as batch_op:
            batch_op.drop_column('claim_until')
            batch_op.drop_column('claim_token')
