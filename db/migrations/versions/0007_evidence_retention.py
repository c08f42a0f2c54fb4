"""record retention: no evidence row is deleted before it is two years old (issue 14, item 7)

Triggers, so that raw SQL is refused too, not only the application's sessions (db/retention.py
is the same rule in the ORM, with a clearer error): a DELETE of a row of an evidence table
younger than the retention period fails, and on PostgreSQL a TRUNCATE of one always fails.
A row's age is its record time (the column named below); an agreement's installments are as
old as their agreement.

The period is written here, not read from the configured policy: 730 days, the default of
`Policy.record_retention_days` and the legal minimum (2011 measures, Art. 68). A longer
period in a policy file is not enforced by the database.

SQLite: `batch_alter_table` recreates a table and drops its triggers. A later migration
that alters one of these tables in batch mode must create its trigger again
(tests/test_retention.py checks that every evidence table has one at head).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DAYS = 730
# Evidence table -> the column that says when its row was made.
EVIDENCE = {
    'contact_attempts': 'at',
    'visits': 'visited_at',
    'stage_history': 'at',
    'agreements': 'created_at',
    'signed_scans': 'uploaded_at',
    'payments': 'recorded_at',
    'audit_events': 'at',
    'consents': 'at',
}
INSTALLMENTS = 'agreement_installments'  # as old as their agreement


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        _postgresql_up()
    else:
        _sqlite_up()


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in [*EVIDENCE, INSTALLMENTS]:
            op.execute(f'DROP TRIGGER IF EXISTS {table}_retained ON {table}')
            op.execute(f'DROP TRIGGER IF EXISTS {table}_not_truncated ON {table}')
        op.execute('DROP FUNCTION IF EXISTS evidence_retained()')
        op.execute('DROP FUNCTION IF EXISTS agreement_installment_retained()')
        op.execute('DROP FUNCTION IF EXISTS evidence_not_truncated()')
    else:
        for table in [*EVIDENCE, INSTALLMENTS]:
            op.execute(f'DROP TRIGGER IF EXISTS {table}_retained')


def _postgresql_up() -> None:
    op.execute(
        """
        CREATE FUNCTION evidence_retained() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            made timestamptz := (to_jsonb(OLD) ->> TG_ARGV[0])::timestamptz;
            kept interval := make_interval(days => TG_ARGV[1]::int);
        BEGIN
            IF made IS NULL OR made > now() - kept THEN
                RAISE EXCEPTION 'record retention: % row % (% %) is kept % days, until %',
                    TG_TABLE_NAME, OLD.id, TG_ARGV[0], made, TG_ARGV[1], made + kept
                    USING ERRCODE = 'restrict_violation';
            END IF;
            RETURN OLD;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION agreement_installment_retained() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            made timestamptz;
            kept interval := make_interval(days => TG_ARGV[0]::int);
        BEGIN
            SELECT created_at INTO made FROM agreements WHERE id = OLD.agreement_id;
            IF made > now() - kept THEN
                RAISE EXCEPTION 'record retention: agreement_installments row % (of agreement '
                    '%, created_at %) is kept % days, until %',
                    OLD.id, OLD.agreement_id, made, TG_ARGV[0], made + kept
                    USING ERRCODE = 'restrict_violation';
            END IF;
            RETURN OLD;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION evidence_not_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'record retention: % is never truncated; delete the rows older '
                'than % days instead', TG_TABLE_NAME, TG_ARGV[0]
                USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    for table, column in EVIDENCE.items():
        op.execute(
            f'CREATE TRIGGER {table}_retained BEFORE DELETE ON {table} FOR EACH ROW '
            f"EXECUTE FUNCTION evidence_retained('{column}', '{DAYS}')"
        )
    op.execute(
        f'CREATE TRIGGER {INSTALLMENTS}_retained BEFORE DELETE ON {INSTALLMENTS} FOR EACH ROW '
        f"EXECUTE FUNCTION agreement_installment_retained('{DAYS}')"
    )
    for table in [*EVIDENCE, INSTALLMENTS]:
        op.execute(
            f'CREATE TRIGGER {table}_not_truncated BEFORE TRUNCATE ON {table} '
            f"FOR EACH STATEMENT EXECUTE FUNCTION evidence_not_truncated('{DAYS}')"
        )


def _sqlite_up() -> None:
    # Times are stored as UTC text ('YYYY-MM-DD HH:MM:SS.ffffff'); julianday('now') is UTC.
    young = f"julianday('now', '-{DAYS} days')"
    for table, column in EVIDENCE.items():
        op.execute(
            f'CREATE TRIGGER {table}_retained BEFORE DELETE ON {table} FOR EACH ROW '
            f'WHEN OLD.{column} IS NULL OR julianday(OLD.{column}) > {young} '
            f"BEGIN SELECT RAISE(ABORT, 'record retention: {table} rows are kept {DAYS} days "
            f"from their {column}'); END"
        )
    op.execute(
        f'CREATE TRIGGER {INSTALLMENTS}_retained BEFORE DELETE ON {INSTALLMENTS} FOR EACH ROW '
        f'WHEN (SELECT julianday(created_at) FROM agreements WHERE id = OLD.agreement_id) '
        f"> {young} BEGIN SELECT RAISE(ABORT, 'record retention: {INSTALLMENTS} rows are "
        f"kept {DAYS} days from their agreement''s created_at'); END"
    )
