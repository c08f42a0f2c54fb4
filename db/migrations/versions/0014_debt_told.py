"""the figures each running case was last told (issue 18, item 4: debts that change)

The intake signals a running case when the export's principal, interest, penalty or overdue
date differ from what the case last read (at its investigation) or was told (a debt update
that went through). Kept apart from the loan's own figures, which follow every export, so
that an intake that crashed or was retried after writing them still tells the cases.
NULL: not known (a case opened before this revision): the next export tells it once.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("loans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("told_principal_fen", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("told_interest_fen", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("told_penalty_fen", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("told_overdue_since", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("loans", schema=None) as batch_op:
        batch_op.drop_column("told_overdue_since")
        batch_op.drop_column("told_penalty_fen")
        batch_op.drop_column("told_interest_fen")
        batch_op.drop_column("told_principal_fen")
