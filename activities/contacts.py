"""Calls and consent: the rule set checked again against the database, then recorded.

The workflow's validator already refused a call over the day's cap or in the night window;
here the same rules are read from the records of every case: two loans of one borrower share
one phone number and one daily cap, and consent is whatever the borrower last gave.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.clock import activity_now
from activities.errors import invalid_input, not_found
from activities.wording_review import flag_wording, review_key
from db.models import Borrower, Case, Consent, ContactAttempt, Loan, LoanContact, SmsOutbox
from db.repository import case_for_loan, insert_ignore, loan_by_no, lock_borrower
from domain.models import (
    CallRecord,
    CallRecorded,
    ConsentChange,
    ConsentRecord,
    ThirdPartyEntry,
)
from domain.names import Activities as A
from domain.policy import Policy
from domain.privacy import mask_phone
from domain.rulebook import has_consent, night_refusal, third_party_refusal
from domain.stages import RELATED_PARTIES, UNANSWERED_CALLS, CallOutcome, ConsentKind, Relation
from domain.timerules import local_date, zone

CALL = "CALL"


class ContactActivities:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @activity.defn(name=A.RECORD_CALL)
    def record_call(self, record: CallRecord) -> CallRecorded:
        report, policy = record.report, record.policy
        with self.sessions.begin() as session:
            loan = loan_by_no(session, record.loan_no)
            if loan is None:
                raise not_found(f"loan {record.loan_no} is not in the database")
            case = case_for_loan(session, loan, report.called_at)
            # One borrower at a time: two of their loans' calls are counted one after another.
            borrower = lock_borrower(session, loan.borrower_id)
            number = self._number(session, loan.id, borrower, report.party)
            debtor = report.party == "borrower"
            existing = session.scalar(
                select(ContactAttempt).where(ContactAttempt.key == record.key)
            )
            if existing is None:
                consents = self._consents(session, borrower.id) if debtor else []
                if why := night_refusal(report.called_at, consents, policy):
                    raise invalid_input(f"called_at: {why}")
                if not debtor:  # a third party: the same rule as a message to them
                    _, why = third_party_check(
                        session, loan.id, report.party, record.contact_lost, report.called_at,
                        policy, call=True,
                    )  # fmt: skip
                    if why:
                        raise invalid_input(why)
                outcome = CallOutcome(report.outcome)
                done = self._unanswered_today(
                    session, borrower.id, report.party, report.called_at, policy
                )
                if outcome in UNANSWERED_CALLS and done >= policy.max_unanswered_calls_per_day:
                    raise invalid_input(
                        f"outcome: already {done} unanswered calls to {mask_phone(number)} "
                        f"today (every loan of the borrower counts); the rule set "
                        f"({policy.ruleset}) allows {policy.max_unanswered_calls_per_day} a day"
                    )
                insert_ignore(
                    session,
                    ContactAttempt,
                    dict(
                        key=record.key,
                        case_id=case.id,
                        channel=CALL,
                        at=report.called_at,
                        outcome=report.outcome,
                        detail=f"{mask_phone(number)} by {report.collector_id}: {report.notes}"[
                            :500
                        ],
                        party=report.party,
                        rule="",
                        ruleset=f"{policy.ruleset}/{policy.version}",
                    ),
                    ["key"],
                )
                flag_wording(  # forbidden wording in the notes: a task for the supervisor
                    session, case, record.loan_no, review_key(record.key),
                    f"call notes ({report.party})", report.reported_by or report.collector_id,
                    report.notes, activity_now(),
                )  # fmt: skip
            session.flush()
            return CallRecorded(
                report.party,
                mask_phone(number),
                self._unanswered_today(
                    session, borrower.id, report.party, report.called_at, policy
                ),
            )

    @activity.defn(name=A.RECORD_CONSENT)
    def record_consent(self, record: ConsentRecord) -> None:
        change = record.change
        with self.sessions.begin() as session:
            loan = loan_by_no(session, record.loan_no)
            if loan is None:
                raise not_found(f"loan {record.loan_no} is not in the database")
            case = case_for_loan(session, loan, change.at)
            inserted = insert_ignore(
                session,
                Consent,
                dict(
                    key=record.key,
                    borrower_id=loan.borrower_id,
                    case_id=case.id,
                    kind=change.kind,
                    given=change.given,
                    how=change.how,
                    at=change.at,
                    by=change.by,
                    notes=change.notes[:2000],
                ),
                ["key"],
            )
            if inserted and change.kind == ConsentKind.SMS and not change.given:
                borrower = session.get(Borrower, loan.borrower_id)
                assert borrower is not None
                borrower.sms_opted_out = True  # checked again at every send
                borrower.opted_out_at = borrower.opted_out_at or change.at
            if inserted:  # forbidden wording in the notes: a task for the supervisor
                flag_wording(
                    session, case, record.loan_no, review_key(record.key), "consent notes",
                    change.by, change.notes[:2000], activity_now(),
                )  # fmt: skip

    # ---------------------------------------------------------------- shared with the SMS

    @staticmethod
    def _number(session: Session, loan_id: int, borrower: Borrower, party: str) -> str:
        if party == "borrower":
            if not borrower.phone:
                raise invalid_input("party: no mobile number on file for the borrower")
            return borrower.phone
        contact = contact_of(session, loan_id, party)
        return contact.phone

    @staticmethod
    def _consents(session: Session, borrower_id: int) -> list[ConsentChange]:
        return consents_of(session, borrower_id)

    @staticmethod
    def _unanswered_today(
        session: Session, borrower_id: int, party: str, at: datetime, policy: Policy
    ) -> int:
        """Unanswered calls to the party's number on `at`'s local day: for the borrower,
        over every case of theirs (one number, one cap)."""
        start = datetime.combine(local_date(at, policy), time(0, 0), tzinfo=zone(policy.timezone))
        query = (
            select(func.count())
            .select_from(ContactAttempt)
            .where(
                ContactAttempt.channel == CALL,
                ContactAttempt.party == party,
                ContactAttempt.outcome.in_([o.value for o in UNANSWERED_CALLS]),
                ContactAttempt.at >= start,
                ContactAttempt.at < start + timedelta(days=1),
            )
        )
        if party == "borrower":
            query = (
                query.join(Case, Case.id == ContactAttempt.case_id)
                .join(Loan, Loan.id == Case.loan_id)
                .where(Loan.borrower_id == borrower_id)
            )
        return session.scalar(query) or 0


def contact_of(session: Session, loan_id: int, party: str) -> LoanContact:
    """The loan contact a party string names ("contact:<id>"), of this loan only."""
    try:
        contact_id = int(party.removeprefix("contact:"))
    except ValueError:
        raise invalid_input(f"party: {party!r} names no loan contact") from None
    contact = session.get(LoanContact, contact_id)
    if contact is None or contact.loan_id != loan_id:
        raise invalid_input(f"party: contact {contact_id} is not a contact of this loan")
    return contact


def consents_of(session: Session, borrower_id: int) -> list[ConsentChange]:
    rows = session.scalars(select(Consent).where(Consent.borrower_id == borrower_id))
    return [ConsentChange(r.kind, r.given, r.how, r.by, r.at) for r in rows]


def night_consent(session: Session, borrower_id: int) -> bool:
    return has_consent(consents_of(session, borrower_id), ConsentKind.NIGHT_CONTACT)


def third_party_check(
    session: Session,
    loan_id: int,
    party: str,
    contact_lost: bool,
    now: datetime,
    policy: Policy,
    call: bool = False,
) -> tuple[LoanContact, str]:
    """The contact, and '' when a message or call to it is allowed now (else why not): the
    workflow's rule read again from what this contact was sent and how often it was called."""
    contact = contact_of(session, loan_id, party)
    debtor_phone = session.scalar(
        select(Borrower.phone).join(Loan, Loan.borrower_id == Borrower.id).where(Loan.id == loan_id)
    )
    if contact.phone == debtor_phone:
        return contact, "contact_id: this contact's number is the debtor's own; contact the debtor"
    related = Relation(contact.relation) in RELATED_PARTIES
    if related and call:
        return contact, ""  # called like the debtor: the daily cap of unanswered calls applies
    sent = session.scalars(
        select(SmsOutbox.sent_at).where(
            SmsOutbox.to_number == contact.phone,
            SmsOutbox.status.in_(("SENT", "RECORDED")),
            SmsOutbox.sent_at.is_not(None),
        )
    ).all()
    called = session.scalars(
        select(ContactAttempt.at).where(
            ContactAttempt.channel == CALL, ContactAttempt.party == f"contact:{contact.id}"
        )
    ).all()
    history = [ThirdPartyEntry(t, contact.id, related) for t in [*sent, *called] if t is not None]
    why = third_party_refusal(related, contact_lost, history, contact.id, now, policy)
    return contact, why
