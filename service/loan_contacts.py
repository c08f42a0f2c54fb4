"""A loan's contacts (guarantors, co-borrowers, family, others: `loan_contacts`) and the
counts the call forms show, for the CLI, the contacts feed and the pages.

Whether a contact is related to the debt is read here from `loan_contacts.relation`, never
from what a user sends: GUARANTOR and CO_BORROWER are related (contacted like the debtor),
FAMILY and OTHER are not (only after contact with the debtor is lost). A contact's phone
number is personal data: what leaves this module for a screen carries it masked too, and
`case_record.as_seen_by` decides who gets the full number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from activities.contacts import third_party_check
from db.models import Case, ContactAttempt, Loan, LoanContact
from domain.policy import Policy
from domain.privacy import mask_phone
from domain.stages import RELATED_PARTIES, UNANSWERED_CALLS, Relation
from domain.timerules import local_date, zone
from service import audit

RELATION_ZH = {
    Relation.GUARANTOR: "保证人",
    Relation.CO_BORROWER: "共同借款人",
    Relation.FAMILY: "家属",
    Relation.OTHER: "其他",
}
# What a contacts file may say in its relation column (English names in any case).
RELATION_WORDS = {
    "保证人": Relation.GUARANTOR,
    "共同借款人": Relation.CO_BORROWER,
    "家属": Relation.FAMILY,
    "亲属": Relation.FAMILY,
    "其他": Relation.OTHER,
    **{r.value: r for r in Relation},
}
CALL_OUTCOME_ZH = {
    "ANSWERED": "已接通",
    "NO_ANSWER": "无人接听",
    "REFUSED": "拒绝沟通",
    "WRONG_NUMBER": "非本人",
    "NUMBER_INVALID": "空号",
}
CONSENT_HOW_ZH = {"AGREEMENT": "协议条款", "SMS": "短信", "VISIT": "上门", "CALL": "电话"}


def parse_relation(text: str) -> Relation | None:
    return RELATION_WORDS.get(text.strip()) or RELATION_WORDS.get(text.strip().upper())


@dataclass
class ContactEntry:
    """A loan contact as a page or the CLI shows it."""

    id: int
    name: str
    relation: str  # a Relation value
    relation_zh: str
    related: bool
    phone: str | None  # the full number: only in what `as_seen_by` lets through
    phone_masked: str


def contacts_of(session: Session, loan_id: int) -> list[ContactEntry]:
    rows = session.scalars(
        select(LoanContact).where(LoanContact.loan_id == loan_id).order_by(LoanContact.id)
    )
    return [
        ContactEntry(
            c.id,
            c.name,
            c.relation,
            RELATION_ZH.get(Relation(c.relation), c.relation),
            Relation(c.relation) in RELATED_PARTIES,
            c.phone,
            mask_phone(c.phone),
        )
        for c in rows
    ]


def loan_contacts(sessions: sessionmaker[Session], loan_no: str) -> list[ContactEntry] | None:
    """The loan's contacts (full numbers: mask before showing), None for an unknown loan."""
    with sessions() as session:
        loan_id = session.scalar(select(Loan.id).where(Loan.loan_no == loan_no))
        return None if loan_id is None else contacts_of(session, loan_id)


def contact_on_loan(
    sessions: sessionmaker[Session], loan_no: str, contact_id: int
) -> ContactEntry | None:
    """The contact with that id if it is one of this loan's, else None."""
    return next((c for c in loan_contacts(sessions, loan_no) or [] if c.id == contact_id), None)


def third_party_hints(
    sessions: sessionmaker[Session],
    loan_no: str,
    contact_lost: bool,
    policy: Policy,
    now: datetime | None = None,
) -> dict[int, str]:
    """For each contact of the loan, '' when the rule set lets a message to it go now, else
    why not: the send activity's own check (activities/contacts.py). A hint for the page; the
    case decides when asked."""
    now = now or datetime.now(UTC)
    hints: dict[int, str] = {}
    with sessions() as session:
        loan_id = session.scalar(select(Loan.id).where(Loan.loan_no == loan_no))
        if loan_id is None:
            return hints
        for c in contacts_of(session, loan_id):
            _, why = third_party_check(
                session, loan_id, f"contact:{c.id}", contact_lost, now, policy
            )
            hints[c.id] = why
    return hints


def unanswered_calls_today(
    sessions: sessionmaker[Session],
    loan_nos: Iterable[str],
    policy: Policy,
    now: datetime | None = None,
) -> dict[str, int]:
    """Unanswered calls to each loan's borrower on the policy's local day: every loan of the
    borrower counts, as the daily cap does (activities/contacts.py)."""
    now = now or datetime.now(UTC)
    start = datetime.combine(local_date(now, policy), time(0, 0), tzinfo=zone(policy.timezone))
    loan_nos = list(loan_nos)
    if not loan_nos:
        return {}
    with sessions() as session:
        borrower_of = dict(
            session.execute(
                select(Loan.loan_no, Loan.borrower_id).where(Loan.loan_no.in_(loan_nos))
            ).all()
        )
        counts = dict(
            session.execute(
                select(Loan.borrower_id, func.count())
                .select_from(ContactAttempt)
                .join(Case, Case.id == ContactAttempt.case_id)
                .join(Loan, Loan.id == Case.loan_id)
                .where(
                    Loan.borrower_id.in_(set(borrower_of.values())),
                    ContactAttempt.channel == "CALL",
                    ContactAttempt.party == "borrower",
                    ContactAttempt.outcome.in_([o.value for o in UNANSWERED_CALLS]),
                    ContactAttempt.at >= start,
                    ContactAttempt.at < start + timedelta(days=1),
                )
                .group_by(Loan.borrower_id)
            ).all()
        )
    return {no: counts.get(borrower_of.get(no), 0) for no in loan_nos}


# ---------------------------------------------------------------- the contacts feed


@dataclass
class NewContact:
    """One validated row of a contacts file."""

    row: int
    loan_no: str
    name: str
    relation: Relation
    phone: str  # E.164


@dataclass
class StoreResult:
    added: int = 0
    updated: int = 0  # name or relation corrected for a known (loan, phone)
    unchanged: int = 0


def store_contacts(
    sessions: sessionmaker[Session], contacts: list[NewContact], by: str
) -> StoreResult:
    """All rows in one transaction, keyed by (loan, phone): a file imported twice changes
    nothing the second time; a row that names a known contact with another name or relation
    corrects it. Audited with the counts (never the numbers)."""
    result = StoreResult()
    now = datetime.now(UTC)
    with sessions.begin() as session:
        loan_ids = dict(
            session.execute(
                select(Loan.loan_no, Loan.id).where(Loan.loan_no.in_({c.loan_no for c in contacts}))
            ).all()
        )
        for c in contacts:
            loan_id = loan_ids[c.loan_no]
            known = session.scalar(
                select(LoanContact).where(
                    LoanContact.loan_id == loan_id, LoanContact.phone == c.phone
                )
            )
            if known is None:
                session.add(
                    LoanContact(
                        loan_id=loan_id,
                        name=c.name,
                        relation=c.relation.value,
                        phone=c.phone,
                        added_at=now,
                        added_by=by,
                    )
                )
                session.flush()  # a unique violation is this row's, not the commit's
                result.added += 1
            elif (known.name, known.relation) != (c.name, c.relation.value):
                known.name, known.relation = c.name, c.relation.value
                result.updated += 1
            else:
                result.unchanged += 1
    audit.record(
        sessions, by, "BACK_OFFICE", "import_contacts", "DONE",
        f"{len(contacts)} rows: added {result.added}, updated {result.updated}, "
        f"unchanged {result.unchanged}",
    )  # fmt: skip
    return result
