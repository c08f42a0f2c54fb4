"""What the database knows of one case, for the case page: the audit trail merged with the
stage changes, contacts and visits into one timeline; messages; agreement versions."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import (
    Agreement,
    AuditEvent,
    Borrower,
    Branch,
    Case,
    ContactAttempt,
    InboundMessage,
    Loan,
    SmsOutbox,
    StageChange,
    Visit,
)
from db.repository import case_loan_borrower
from domain.privacy import mask_phone
from domain.safety import STAFF_PURPOSES
from service.loan_contacts import ContactEntry, contacts_of
from service.users import Principal, Role


@dataclass
class TimelineEntry:
    at: datetime
    kind: str
    detail: str
    who: str


@dataclass
class Message:
    at: datetime
    direction: str  # OUT or IN
    text: str
    status: str


@dataclass
class VisitEntry:
    visit_no: int
    visited_at: datetime
    outcome: str
    collector_ids: str
    reported_by: str
    notes: str


@dataclass
class AgreementVersion:
    version: int
    plan_number: int
    sha256: str
    signed: str
    created_at: datetime


@dataclass
class CaseRecord:
    loan_no: str
    branch: str
    collectors: list[str]
    borrower_name: str
    phone: str | None  # the full number: only in what `as_seen_by` lets through
    phone_masked: str
    village: str
    address: str
    closed: bool
    timeline: list[TimelineEntry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    visits: list[VisitEntry] = field(default_factory=list)
    agreements: list[AgreementVersion] = field(default_factory=list)
    contacts: list[ContactEntry] = field(default_factory=list)  # full numbers: see as_seen_by


def case_header(sessions: sessionmaker[Session], loan_no: str) -> tuple[str, list[str]] | None:
    """(branch, collectors) of a loan's case: enough to decide who may see it."""
    with sessions() as session:
        row = session.execute(
            select(Case.branch_code, Case.primary_collector, Case.second_collector)
            .join(Loan, Loan.id == Case.loan_id)
            .where(Loan.loan_no == loan_no)
        ).first()
    if row is None:
        return None
    return row[0], [c for c in row[1:] if c]


def branch_phone(sessions: sessionmaker[Session], loan_no: str) -> str | None:
    """The office number of the case's branch (public): whom a collector out of signal calls."""
    with sessions() as session:
        return session.scalar(
            select(Branch.phone)
            .join(Case, Case.branch_code == Branch.code)
            .join(Loan, Loan.id == Case.loan_id)
            .where(Loan.loan_no == loan_no)
        )


def case_record(sessions: sessionmaker[Session], loan_no: str) -> CaseRecord | None:
    with sessions() as session:
        found = case_loan_borrower(session, loan_no)
        if found is None:
            return None
        case, loan, borrower = found
        record = CaseRecord(
            loan_no=loan.loan_no,
            branch=case.branch_code,
            collectors=[c for c in (case.primary_collector, case.second_collector) if c],
            borrower_name=borrower.name,
            phone=borrower.phone,
            phone_masked=mask_phone(borrower.phone) if borrower.phone else "-",
            village=borrower.village,
            address=borrower.address,
            closed=case.closed_at is not None,
        )
        t = record.timeline
        for sc in session.scalars(select(StageChange).where(StageChange.case_id == case.id)):
            t.append(
                TimelineEntry(sc.at, "stage", f"{sc.from_stage or '-'} → {sc.to_stage}: "
                              f"{sc.reason}", sc.actor)
            )  # fmt: skip
        for ev in session.scalars(select(AuditEvent).where(AuditEvent.loan_no == loan_no)):
            t.append(TimelineEntry(ev.at, ev.action, f"{ev.outcome}: {ev.detail}", ev.username))
        for ca in session.scalars(select(ContactAttempt).where(ContactAttempt.case_id == case.id)):
            t.append(TimelineEntry(ca.at, ca.channel.lower(), f"{ca.outcome} {ca.detail}", ""))
        t.sort(key=lambda e: e.at, reverse=True)
        # The borrower's messages only: staff alerts about the case are not sent to them.
        borrowers = select(SmsOutbox).where(
            SmsOutbox.case_id == case.id, SmsOutbox.purpose.not_in(STAFF_PURPOSES)
        )
        for sms in session.scalars(borrowers):
            status = sms.status + (f" / {sms.delivery_status}" if sms.delivery_status else "")
            if sms.reason:
                status += f" ({sms.reason})"
            record.messages.append(
                Message(sms.sent_at or sms.created_at, "OUT", sms.body or sms.purpose, status)
            )
        for msg in session.scalars(select(InboundMessage).where(InboundMessage.case_id == case.id)):
            record.messages.append(Message(msg.received_at, "IN", msg.body, msg.intent))
        record.messages.sort(key=lambda m: m.at, reverse=True)
        record.visits = [
            VisitEntry(v.visit_no, v.visited_at, v.outcome, v.collector_ids, v.reported_by, v.notes)
            for v in session.scalars(
                select(Visit).where(Visit.case_id == case.id).order_by(Visit.visit_no.desc())
            )
        ]
        record.contacts = contacts_of(session, loan.id)
        for a in session.scalars(
            select(Agreement).where(Agreement.case_id == case.id).order_by(Agreement.version)
        ):
            signed = (
                f"signed {a.signed_at:%Y-%m-%d} at {a.signed_place} ({a.signed_by})"
                if a.signed_at
                else "not signed"
            )
            record.agreements.append(
                AgreementVersion(a.version, a.plan_number, a.sha256, signed, a.created_at)
            )
        return record


def as_seen_by(record: CaseRecord, who: Principal) -> CaseRecord:
    """What `who` may see of a case's record, for every representation (the page and its JSON):
    the full phone number only for a collector on the case; everyone else gets it masked."""
    if sees_full_numbers(who, record.collectors):
        return record
    # The loan contacts' numbers too (guarantors, family: a collector on the case dials them).
    return replace(record, phone=None, contacts=[replace(c, phone=None) for c in record.contacts])


def sees_full_numbers(who: Principal | None, collectors: list[str]) -> bool:
    """Full phone numbers only for a collector on the case (the page, its JSON, the
    collection record); supervisors and the operators' CLI (no one: None) see them masked."""
    return (
        who is not None
        and who.role == Role.COLLECTOR
        and bool(who.collector_id)
        and who.collector_id in collectors
    )


def agreement_pdf(sessions: sessionmaker[Session], loan_no: str, version: int) -> str | None:
    with sessions() as session:
        return session.scalar(
            select(Agreement.pdf_path)
            .join(Case, Case.id == Agreement.case_id)
            .join(Loan, Loan.id == Case.loan_id)
            .where(Loan.loan_no == loan_no, Agreement.version == version)
        )


@dataclass
class MyCase:
    loan_no: str
    stage: str
    borrower_name: str
    village: str
    next_action: str
    next_action_at: datetime | None
    outstanding_fen: int | None
    phone: str | None = None  # the borrower's: the list is the collector's own cases
    # collection-v6: when next_action_at is the case's own (written before each wait).
    next_action_stamp: datetime | None = None
    unanswered_calls_today: int = 0  # filled by the page (service/loan_contacts.py)


def _outstanding(c: Case) -> int | None:
    """The amount the case row has as of its last money change (collection-v5), else the
    debt less the payments as the row has them."""
    if c.outstanding_fen is not None:
        return c.outstanding_fen
    return None if c.debt_fen is None else c.debt_fen - c.paid_fen


def collector_cases(sessions: sessionmaker[Session], collector_id: str) -> list[MyCase]:
    """A collector's open cases (next actions as of the last stage change)."""
    with sessions() as session:
        rows = session.execute(
            select(Case, Loan.loan_no, Borrower.name, Borrower.village, Borrower.phone)
            .join(Loan, Loan.id == Case.loan_id)
            .join(Borrower, Borrower.id == Loan.borrower_id)
            .where(
                Case.closed_at.is_(None),
                (Case.primary_collector == collector_id) | (Case.second_collector == collector_id),
            )
        ).all()
    cases = [
        MyCase(
            loan_no,
            c.stage,
            name,
            village,
            c.next_action,
            c.next_action_at,
            _outstanding(c),
            phone,
            next_action_stamp=c.next_action_stamp,
        )
        for c, loan_no, name, village, phone in rows
    ]
    return cases
