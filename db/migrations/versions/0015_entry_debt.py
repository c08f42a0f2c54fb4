"""each case's debt at entry (issue 16 review, item 14): the denominator of recovery and cure

The case row's debt_fen follows the case (later exports, waivers); recovery and cure rates
measure what was collected against what was owed when the case began. Filled from the
first transition that carries a debt; a case opened before this revision takes its current
debt (the best figure left).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("entry_debt_fen", sa.BigInteger(), nullable=True))
    op.execute("UPDATE cases SET entry_debt_fen = debt_fen WHERE entry_debt_fen IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("entry_debt_fen")
