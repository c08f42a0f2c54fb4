"""A complaint's row (`complaints`), written at each step the case takes: opened,
acknowledged, a deadline passed (escalated), resolved. Idempotent: one row per (case,
generation, number); a retried step writes the same values again."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.errors import not_found
from db.models import Complaint
from db.repository import case_for_loan, insert_ignore, loan_by_no
from domain.models import ComplaintRecord
from domain.names import Activities as A


class ComplaintActivities:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @activity.defn(name=A.RECORD_COMPLAINT)
    def record_complaint(self, record: ComplaintRecord) -> None:
        c = record.complaint
        with self.sessions.begin() as session:
            loan = loan_by_no(session, record.loan_no)
            if loan is None:
                raise not_found(f"loan {record.loan_no} is not in the database")
            case = case_for_loan(session, loan, c.received_at)
            insert_ignore(
                session,
                Complaint,
                dict(
                    case_id=case.id, generation=record.generation, number=c.number,
                    received_at=c.received_at, loan_no=record.loan_no,
                    branch_code=loan.branch_code, collectors=",".join(c.collectors)[:80],
                    source=c.source, summary=c.summary, recorded_by=c.by[:64], status="OPEN",
                    ack_due=c.ack_due, resolve_due=c.resolve_due, outcome="",
                ),
                ["case_id", "generation", "number"],
            )  # fmt: skip
            row = session.scalar(
                select(Complaint).where(
                    Complaint.case_id == case.id,
                    Complaint.generation == record.generation,
                    Complaint.number == c.number,
                )
            )
            assert row is not None
            if c.acknowledged_at is not None:
                row.acknowledged_at, row.acknowledged_by = c.acknowledged_at, c.acknowledged_by
                row.status = "ACKNOWLEDGED" if row.status == "OPEN" else row.status
            if record.event == "ACK_OVERDUE" and row.ack_escalated_at is None:
                row.ack_escalated_at = record.at
            if record.event == "RESOLVE_OVERDUE" and row.resolve_escalated_at is None:
                row.resolve_escalated_at = record.at
            if record.event == "RESOLVED":
                row.status, row.resolved_at = "RESOLVED", record.at
                row.resolved_by, row.outcome = record.by[:64], record.outcome
