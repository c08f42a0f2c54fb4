"""record retention: evidence is not changed either, and the texts sent and received are kept

0007 refused a DELETE of young evidence, but an UPDATE of a row's record time (`at` moved two
years back) followed by a DELETE got round it. Now every retained table also has
`<table>_unchanged`, a BEFORE UPDATE trigger that refuses any change but what the application
records later (db/retention.py, CHANGEABLE): an agreement's signature (once), an outbox row's
attempts and delivery receipts (its text, SID and send time until it is sent), an inbound
message's processing (once). Nothing else of an evidence row ever changes.

`sms_outbox` (the texts sent, from `created_at`) and `inbound_messages` (the texts borrowers
sent, from `received_at`) are retained too. An inbound message whose signal to its case failed
was deleted so that Twilio's retry would be processed again; it is now kept with
`processed_at` empty, and the retry tells the case (webapp/twilio_webhooks.py). Messages stored
before this migration were processed: `processed_at` is their `received_at`.

The triggers are those of db/retention.py, created for the tables as they are now; a later
migration that alters an evidence table does it inside `retention_lifted(op)`
(db/migrations/README.md).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.retention import (
    EVIDENCE_0007,
    create_retention_triggers,
    drop_retention_triggers,
    retention_lifted,
)

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with retention_lifted(op):
        with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
            batch_op.add_column(sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True))
        op.execute('UPDATE inbound_messages SET processed_at = received_at')


def downgrade() -> None:
    drop_retention_triggers(op)
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.drop_column('processed_at')
    create_retention_triggers(op, EVIDENCE_0007, unchanged=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP FUNCTION IF EXISTS evidence_unchanged()')
