"""Record retention: no evidence row is deleted before the retention period has passed since
it was made, and none is changed (its record time least of all) beyond what the application
itself records on it later.

The database's triggers are the guarantee, raw SQL included; they are defined here
(`create_retention_triggers`), created by migrations 0007 and 0008. The same rule is checked
in the application's sessions before any SQL is sent, with an error that names the row: a
session's `delete(obj)` and a change of an evidence row (before the flush) and an ORM
`delete(Model).where(...)` (a count of the rows it would remove that are still young). Every
session from `db.engine.session_factory` carries it.

A migration that alters an evidence table (SQLite's `batch_alter_table` copies the table and
loses its triggers; a trigger that names `agreements` breaks the copy of `agreements`), or
updates its rows, does it inside `with retention_lifted(op):` (or between
`drop_retention_triggers(op)` and `create_retention_triggers(op)`): see db/migrations/README.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, event, func, inspect, or_, select, text
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from db.models import Agreement, AgreementInstallment
from domain.policy import Policy

# The policy's default and the legal minimum (2011 measures, Art. 68: 2 years).
RETENTION_DAYS = Policy().record_retention_days
# What the database's triggers hold: written into them, not read from a policy file (a longer
# period configured there is not enforced by the database).
DATABASE_RETENTION_DAYS = 730
# Evidence table -> the column that says when its row was made.
EVIDENCE = {
    "contact_attempts": "at",
    "visits": "visited_at",
    "stage_history": "at",
    "agreements": "created_at",
    "signed_scans": "uploaded_at",
    "payments": "recorded_at",
    "audit_events": "at",
    "consents": "at",
    "sms_outbox": "created_at",  # the texts we sent, as sent
    "inbound_messages": "received_at",  # the texts borrowers sent us
}
# As old as their agreement.
INSTALLMENTS = "agreement_installments"
RETAINED = (*EVIDENCE, INSTALLMENTS)
# The evidence tables as migration 0007 retained them (no UPDATE triggers then).
EVIDENCE_0007 = {t: c for t, c in EVIDENCE.items() if t not in ("sms_outbox", "inbound_messages")}


@dataclass(frozen=True)
class Changeable:
    """The columns of an evidence row the application records later; no other ever changes."""

    always: tuple[str, ...] = ()
    # `until` change only while the row's `guard` column is still empty (NULL): recorded once.
    guard: str = ""
    until: tuple[str, ...] = ()


# From the application's own UPDATEs (activities/, webapp/): an agreement's signature, once
# (activities/cases.py); an outbox row's attempts, claims and delivery receipts, and its text
# until it is sent (activities/sms.py, activities/sms_receipts.py); an inbound message's
# processing, once (webapp/twilio_webhooks.py). Every other evidence table is never updated.
CHANGEABLE: dict[str, Changeable] = {
    "agreements": Changeable(guard="signed_at", until=("signed_at", "signed_by", "signed_place")),
    "sms_outbox": Changeable(
        always=("status", "reason", "attempted_at", "delivery_status", "delivery_error")
        + ("claim_token", "claim_until"),
        guard="sent_at",
        until=("sent_at", "provider_sid", "body", "segments"),
    ),
    "inbound_messages": Changeable(guard="processed_at", until=("processed_at",)),
}
_SUFFIXES = ("retained", "unchanged", "not_truncated")


class RetentionError(RuntimeError):
    """A delete of evidence younger than the retention period, or a change of evidence."""


def cutoff(now: datetime | None = None) -> datetime:
    """Rows made after this moment are still kept."""
    return (now or datetime.now(UTC)) - timedelta(days=RETENTION_DAYS)


def guard(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """`sessions`, whose sessions refuse to delete young evidence or to change evidence."""
    event.listen(sessions, "before_flush", _before_flush)
    event.listen(sessions, "do_orm_execute", _before_bulk_delete)
    return sessions


def _made(session: Session, obj: object) -> datetime | None | bool:
    """When an evidence row was made; False when `obj` is not evidence."""
    if isinstance(obj, AgreementInstallment):
        with session.no_autoflush:
            parent = session.get(Agreement, obj.agreement_id)
        return parent.created_at if parent is not None else False
    column = EVIDENCE.get(getattr(obj, "__tablename__", ""))
    return False if column is None else getattr(obj, column)


def _changed(obj: object) -> list[str]:
    """The columns of evidence row `obj` changed in this session that may not change."""
    table = getattr(obj, "__tablename__", "")
    if table not in RETAINED:
        return []
    state = inspect(obj)
    rule = CHANGEABLE.get(table, Changeable())
    free = set(rule.always)
    if rule.guard:
        history = state.attrs[rule.guard].history
        before = history.deleted or history.unchanged or (getattr(obj, rule.guard),)
        if before[0] is None:
            free |= set(rule.until)
    return [
        attr.key
        for attr in state.mapper.column_attrs
        if attr.key not in free and state.attrs[attr.key].history.has_changes()
    ]


def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    limit = cutoff()
    for obj in session.deleted:
        made = _made(session, obj)
        if made is not False and (made is None or made > limit):
            table = obj.__tablename__  # type: ignore[attr-defined]
            kept = f"until {made + timedelta(days=RETENTION_DAYS):%Y-%m-%d}" if made else ""
            raise RetentionError(
                f"record retention: {table} row {getattr(obj, 'id', '?')} (made {made}) is "
                f"kept {RETENTION_DAYS} days {kept}".strip()
            )
    for obj in session.dirty:
        if changed := _changed(obj):
            table = obj.__tablename__  # type: ignore[attr-defined]
            raise RetentionError(
                f"record retention: {table} row {getattr(obj, 'id', '?')} is evidence: "
                f"{', '.join(changed)} cannot change"
            )


def _before_bulk_delete(state: ORMExecuteState) -> None:
    if not state.is_delete:
        return
    table = getattr(state.statement, "table", None)
    if not isinstance(table, Table) or table.name not in RETAINED:
        return
    if table.name == INSTALLMENTS:
        return  # as old as their agreement: the database's trigger decides
    column = table.c[EVIDENCE[table.name]]
    young = select(func.count()).select_from(table).where(or_(column.is_(None), column > cutoff()))
    where = state.statement.whereclause  # type: ignore[attr-defined]
    if where is not None:
        young = young.where(where)
    count = state.session.execute(young).scalar_one()
    if count:
        raise RetentionError(
            f"record retention: this delete would remove {count} {table.name} rows younger "
            f"than {RETENTION_DAYS} days"
        )


# ---------------------------------------------------------------- the database's triggers
#
# For every retained table: `<table>_retained` (BEFORE DELETE: the row is old enough),
# `<table>_unchanged` (BEFORE UPDATE: only the columns in CHANGEABLE change) and, on
# PostgreSQL, `<table>_not_truncated` (BEFORE TRUNCATE: never).


def drop_retention_triggers(op: Any) -> None:
    """Drop every retention trigger, so that a migration can rebuild or update evidence
    tables (SQLite's batch mode copies a table; `agreement_installments_retained` names
    `agreements`, whose copy it would break). Create them again with
    `create_retention_triggers(op)` in the same migration: `retention_lifted` does both."""
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    tables = set(inspect(bind).get_table_names())
    for table in RETAINED:
        if table not in tables:
            continue
        for suffix in _SUFFIXES:
            on = f" ON {table}" if postgresql else ""
            op.execute(f"DROP TRIGGER IF EXISTS {table}_{suffix}{on}")


def create_retention_triggers(
    op: Any, evidence: Mapping[str, str] | None = None, *, unchanged: bool = True
) -> None:
    """(Re)create the retention triggers of every retained table that exists, for its
    columns as they are now (`evidence`: table -> record time, EVIDENCE by default;
    `unchanged=False`: no UPDATE triggers, as migration 0007 had it)."""
    drop_retention_triggers(op)
    evidence = EVIDENCE if evidence is None else evidence
    bind = op.get_bind()
    tables = set(inspect(bind).get_table_names())
    evidence = {t: c for t, c in evidence.items() if t in tables}
    retained = [*evidence, *([INSTALLMENTS] if {INSTALLMENTS, "agreements"} <= tables else [])]
    if bind.dialect.name == "postgresql":
        _postgresql(op, evidence, retained, unchanged)
    else:
        columns = {t: [c["name"] for c in inspect(bind).get_columns(t)] for t in retained}
        _sqlite(op, evidence, retained, columns, unchanged)


@contextmanager
def retention_lifted(op: Any) -> Iterator[None]:
    """Inside: no retention trigger (a migration's batch_alter_table, a backfill). After it:
    every trigger again, for the tables as they are then. An error leaves them dropped: the
    migration's transaction rolls back (on SQLite too, see db/migrate.py)."""
    drop_retention_triggers(op)
    yield
    create_retention_triggers(op)


def missing_retention_triggers(conn: Connection) -> list[str]:
    """The retention triggers a database at 0008 or later (some `_unchanged` trigger), or at
    0007 (only `_retained` ones), should have and lacks: a migration that rebuilt an evidence
    table outside `retention_lifted` lost them."""
    postgresql = conn.dialect.name == "postgresql"
    query = (
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        if postgresql
        else "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    )
    names = set(conn.scalars(text(query)).all())
    tables = set(inspect(conn).get_table_names())
    if any(n.endswith("_unchanged") for n in names):
        retained, suffixes = RETAINED, ["retained", "unchanged"]
    elif any(n.endswith("_retained") for n in names):
        retained, suffixes = (*EVIDENCE_0007, INSTALLMENTS), ["retained"]
    else:
        return []
    suffixes += ["not_truncated"] if postgresql else []
    expected = {f"{t}_{s}" for t in retained if t in tables for s in suffixes}
    return sorted(expected - names)


def check_retention_triggers(conn: Connection) -> None:
    """Refuse to commit a migration that left an evidence table without its triggers."""
    if missing := missing_retention_triggers(conn):
        raise RuntimeError(
            f"record retention: the migration dropped the triggers {', '.join(missing)}; alter "
            "evidence tables inside `with retention_lifted(op):` (db/migrations/README.md)"
        )


def _postgresql(op: Any, evidence: Mapping[str, str], retained: list[str], unchanged: bool) -> None:
    days = DATABASE_RETENTION_DAYS
    op.execute(
        """
        CREATE OR REPLACE FUNCTION evidence_retained() RETURNS trigger LANGUAGE plpgsql AS $$
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
        CREATE OR REPLACE FUNCTION agreement_installment_retained() RETURNS trigger
        LANGUAGE plpgsql AS $$
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
        CREATE OR REPLACE FUNCTION evidence_not_truncated() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'record retention: % is never truncated; delete the rows older '
                'than % days instead', TG_TABLE_NAME, TG_ARGV[0]
                USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    # Arguments: the guard column ('' for none), the columns that always change, the columns
    # that change while the guard is NULL (both comma separated). Every other column, those
    # added later included, is compared.
    op.execute(
        """
        CREATE OR REPLACE FUNCTION evidence_unchanged() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            before jsonb := to_jsonb(OLD);
            after jsonb := to_jsonb(NEW);
            free text[] := coalesce(string_to_array(NULLIF(TG_ARGV[1], ''), ','), '{}');
            changed text;
        BEGIN
            IF TG_ARGV[0] <> '' AND before ->> TG_ARGV[0] IS NULL THEN
                free := free || coalesce(string_to_array(NULLIF(TG_ARGV[2], ''), ','), '{}');
            END IF;
            SELECT string_agg(key, ', ' ORDER BY key) INTO changed FROM jsonb_each(before)
                WHERE NOT key = ANY(free) AND value IS DISTINCT FROM after -> key;
            IF changed IS NOT NULL THEN
                RAISE EXCEPTION 'record retention: % row % is evidence: % cannot change',
                    TG_TABLE_NAME, OLD.id, changed USING ERRCODE = 'restrict_violation';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    for table, column in evidence.items():
        op.execute(
            f"CREATE TRIGGER {table}_retained BEFORE DELETE ON {table} FOR EACH ROW "
            f"EXECUTE FUNCTION evidence_retained('{column}', '{days}')"
        )
    if INSTALLMENTS in retained:
        op.execute(
            f"CREATE TRIGGER {INSTALLMENTS}_retained BEFORE DELETE ON {INSTALLMENTS} "
            f"FOR EACH ROW EXECUTE FUNCTION agreement_installment_retained('{days}')"
        )
    for table in retained:
        op.execute(
            f"CREATE TRIGGER {table}_not_truncated BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION evidence_not_truncated('{days}')"
        )
        if unchanged:
            rule = CHANGEABLE.get(table, Changeable())
            args = (rule.guard, ",".join(rule.always), ",".join(rule.until))
            op.execute(
                f"CREATE TRIGGER {table}_unchanged BEFORE UPDATE ON {table} FOR EACH ROW "
                f"EXECUTE FUNCTION evidence_unchanged('{args[0]}', '{args[1]}', '{args[2]}')"
            )


def _sqlite(
    op: Any,
    evidence: Mapping[str, str],
    retained: list[str],
    columns: Mapping[str, list[str]],
    unchanged: bool,
) -> None:
    days = DATABASE_RETENTION_DAYS
    # Times are stored as UTC text ('YYYY-MM-DD HH:MM:SS.ffffff'); julianday('now') is UTC.
    young = f"julianday('now', '-{days} days')"
    for table, column in evidence.items():
        op.execute(
            f"CREATE TRIGGER {table}_retained BEFORE DELETE ON {table} FOR EACH ROW "
            f"WHEN OLD.{column} IS NULL OR julianday(OLD.{column}) > {young} "
            f"BEGIN SELECT RAISE(ABORT, 'record retention: {table} rows are kept {days} days "
            f"from their {column}'); END"
        )
    if INSTALLMENTS in retained:
        # Names `agreements`: dropped before a migration copies that table (retention_lifted).
        op.execute(
            f"CREATE TRIGGER {INSTALLMENTS}_retained BEFORE DELETE ON {INSTALLMENTS} "
            f"FOR EACH ROW WHEN (SELECT julianday(created_at) FROM agreements "
            f"WHERE id = OLD.agreement_id) > {young} BEGIN SELECT RAISE(ABORT, 'record "
            f"retention: {INSTALLMENTS} rows are kept {days} days from their agreement''s "
            "created_at'); END"
        )
    if not unchanged:
        return
    for table in retained:
        rule = CHANGEABLE.get(table, Changeable())
        fixed = [c for c in columns[table] if c not in (*rule.always, *rule.until)]
        when = " OR ".join(f'OLD."{c}" IS NOT NEW."{c}"' for c in fixed)
        if rule.until:
            later = " OR ".join(f'OLD."{c}" IS NOT NEW."{c}"' for c in rule.until)
            when += f' OR (OLD."{rule.guard}" IS NOT NULL AND ({later}))'
        may = [*rule.always, *([f"{', '.join(rule.until)} (once)"] if rule.until else [])]
        allowed = f"only {', '.join(may)} may change" if may else "they never change"
        op.execute(
            f"CREATE TRIGGER {table}_unchanged BEFORE UPDATE ON {table} FOR EACH ROW "
            f"WHEN {when} BEGIN SELECT RAISE(ABORT, 'record retention: {table} rows are "
            f"evidence: {allowed}'); END"
        )
