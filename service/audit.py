"""The audit trail: every action a person takes, with its outcome, in `audit_events`."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from db.models import AuditEvent


def record(
    sessions: sessionmaker[Session],
    username: str,
    role: str,
    action: str,
    outcome: str,
    detail: str = "",
    loan_no: str | None = None,
) -> None:
    with sessions.begin() as session:
        session.add(
            AuditEvent(
                at=datetime.now(UTC),
                username=username,
                role=role,
                action=action,
                loan_no=loan_no,
                outcome=outcome,
                detail=detail[:2000],
            )
        )
