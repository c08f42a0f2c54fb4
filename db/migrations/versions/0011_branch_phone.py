"""a branch's public phone number, named in SMS on one-way channels (issue 19, item 4)

Twilio to mainland numbers cannot carry replies: such texts name the branch's number instead
of "reply 1 / 回复TD退订". Nullable: a branch registered before has none until its file says,
and the text then says 我社网点 (your branch).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('branches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone', sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('branches', schema=None) as batch_op:
        batch_op.drop_column('phone')
