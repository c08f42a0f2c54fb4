"""each case's next action as of a workflow time (issue 17, item 6)

The lists' "due today" and "overdue" filters and next-action times read the case row's
next_action_at when it has a `next_action_stamp`: a collection-v6 case writes its next
action with the activity before each wait and no longer upserts its NextActionAt search
attribute for it (unset while the row has the current one). Only a newer stamp overwrites.
Nothing is backfilled: a row without one (a released run's) shows the search attribute's
value, as before. An index on (closed_at, next_action_at) serves the filters' query of
the open cases by next action (service/portfolio.py due_from_db).

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("next_action_stamp", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_cases_closed_at_next_action_at", ["closed_at", "next_action_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index("ix_cases_closed_at_next_action_at")
        batch_op.drop_column("next_action_stamp")
