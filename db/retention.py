"""Record retention in the application's sessions: no evidence row is deleted before the
retention period has passed since it was made.

The database's triggers (migration 0007) are the guarantee, raw SQL included; this is the
same rule checked before any SQL is sent, with an error that names the row: a session's
`delete(obj)` (before the flush) and an ORM `delete(Model).where(...)` (a count of the rows
it would remove that are still young). Every session from `db.engine.session_factory`
carries it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, event, func, or_, select
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from db.models import Agreement, AgreementInstallment
from domain.policy import Policy

# The policy's default and the legal minimum (2011 measures, Art. 68: 2 years); the triggers
# of migration 0007 hold the same number.
RETENTION_DAYS = Policy().record_retention_days
# Evidence table -> the column that says when its row was made (as in migration 0007).
EVIDENCE = {
    "contact_attempts": "at",
    "visits": "visited_at",
    "stage_history": "at",
    "agreements": "created_at",
    "signed_scans": "uploaded_at",
    "payments": "recorded_at",
    "audit_events": "at",
    "consents": "at",
}


class RetentionError(RuntimeError):
    """A delete of evidence younger than the retention period."""


def cutoff(now: datetime | None = None) -> datetime:
    """Rows made after this moment are still kept."""
    return (now or datetime.now(UTC)) - timedelta(days=RETENTION_DAYS)


def guard(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """`sessions`, whose sessions refuse to delete young evidence."""
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


def _before_bulk_delete(state: ORMExecuteState) -> None:
    if not state.is_delete:
        return
    table = getattr(state.statement, "table", None)
    if not isinstance(table, Table) or table.name not in EVIDENCE:
        return
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
