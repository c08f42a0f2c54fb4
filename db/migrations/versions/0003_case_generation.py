"""case generations: a case started again after a failed or terminated run keeps its own
stage rows and visits (issue 13, item 4)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('generation', sa.String(length=16), nullable=False, server_default='')
        )
    with op.batch_alter_table('stage_history', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('generation', sa.String(length=16), nullable=False, server_default='')
        )
        batch_op.drop_constraint('uq_stage_history_case_id_seq', type_='unique')
        batch_op.create_unique_constraint(
            'uq_stage_history_case_id_generation_seq', ['case_id', 'generation', 'seq']
        )
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('generation', sa.String(length=16), nullable=False, server_default='')
        )
        batch_op.drop_constraint('uq_visits_case_id_visit_no', type_='unique')
        batch_op.create_unique_constraint(
            'uq_visits_case_id_generation_visit_no', ['case_id', 'generation', 'visit_no']
        )


def downgrade() -> None:
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_constraint('uq_visits_case_id_generation_visit_no', type_='unique')
        batch_op.create_unique_constraint('uq_visits_case_id_visit_no', ['case_id', 'visit_no'])
        batch_op.drop_column('generation')
    with op.batch_alter_table('stage_history', schema=None) as batch_op:
        batch_op.drop_constraint('uq_stage_history_case_id_generation_seq', type_='unique')
        batch_op.create_unique_constraint('uq_stage_history_case_id_seq', ['case_id', 'seq'])
        batch_op.drop_column('generation')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('generation')
