"""each case's outstanding amount as of a workflow time (issue 17, item 6)

The lists show what the borrower still owes from the database, exact after each payment,
debt update, waiver or stage change; the workflow no longer upserts its OutstandingFen
search attribute at every payment (collection-v5). Only a newer `outstanding_at` overwrites
the amount, so a late or retried write cannot roll it back. Nothing is backfilled: a case
row without one (a case that has not changed since) shows the search attribute's value.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outstanding_fen", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("outstanding_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("outstanding_at")
        batch_op.drop_column("outstanding_fen")
