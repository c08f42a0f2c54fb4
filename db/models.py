"""SQLAlchemy models. Money is integer fen; times are aware (stored as UTC).

Natural keys and unique constraints make every write an activity does idempotent: a retried
activity finds its row and writes nothing twice.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from db.types import AwareDateTime
from domain.capital import MAX_AMOUNT_FEN
from domain.policy import Policy

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = BigInteger  # fen; a county's portfolio overflows 32 bits


def money_check(*columns: str) -> tuple[CheckConstraint, ...]:
    """Amounts are never negative and never beyond what the agreement can write in words."""
    return tuple(
        CheckConstraint(f"{c} BETWEEN 0 AND {MAX_AMOUNT_FEN}", name=f"{c}_range") for c in columns
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Branch(Base):
    __tablename__ = "branches"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    region: Mapped[str] = mapped_column(String(100), index=True)  # county/township: holds
    # The branch's clock for its local dates (service/local_time.py); the policy's default.
    timezone: Mapped[str] = mapped_column(String(40), default=Policy().timezone)
    # Where borrowers call: named in texts on a channel replies cannot come back on (Twilio
    # to +86). Shown whole: a public office number, not a person's.
    phone: Mapped[str | None] = mapped_column(String(20))


class Collector(Base):
    __tablename__ = "collectors"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    branch_code: Mapped[str] = mapped_column(ForeignKey("branches.code"), index=True)
    capacity: Mapped[int] = mapped_column(Integer, default=40)  # open cases at most
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    mobile: Mapped[str | None] = mapped_column(String(20))  # E.164; shown masked
    # The safety training's validity (master data, feeds/collectors.py); None: not recorded.
    training_expires_on: Mapped[date | None] = mapped_column(Date)


class Borrower(Base):
    __tablename__ = "borrowers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    id_number: Mapped[str] = mapped_column(String(18), unique=True)  # 居民身份证号
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(20))  # E.164
    address: Mapped[str] = mapped_column(String(300), default="")
    village: Mapped[str] = mapped_column(String(100), default="")
    remote: Mapped[bool] = mapped_column(Boolean, default=False)
    hostile: Mapped[bool] = mapped_column(Boolean, default=False)
    monthly_income_fen: Mapped[int] = mapped_column(Money, default=0)
    household_size: Mapped[int] = mapped_column(Integer, default=1)
    disaster_affected: Mapped[bool] = mapped_column(Boolean, default=False)
    sms_opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    opted_out_at: Mapped[datetime | None] = mapped_column(AwareDateTime())


class Loan(Base):
    __tablename__ = "loans"
    __table_args__ = money_check(
        "principal_fen", "outstanding_principal_fen", "interest_fen", "penalty_fen"
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    loan_no: Mapped[str] = mapped_column(String(40), unique=True)
    borrower_id: Mapped[int] = mapped_column(ForeignKey("borrowers.id"), index=True)
    branch_code: Mapped[str] = mapped_column(ForeignKey("branches.code"), index=True)
    product: Mapped[str] = mapped_column(String(60), default="")
    principal_fen: Mapped[int] = mapped_column(Money)  # original amount lent
    outstanding_principal_fen: Mapped[int] = mapped_column(Money)
    interest_fen: Mapped[int] = mapped_column(Money, default=0)
    penalty_fen: Mapped[int] = mapped_column(Money, default=0)
    disbursed_on: Mapped[date | None] = mapped_column(Date)
    overdue_since: Mapped[date] = mapped_column(Date)
    prior_broken_promises: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="OVERDUE")
    # What the running case last read or was told (feeds/debt_updates.py); NULL: not known.
    told_principal_fen: Mapped[int | None] = mapped_column(Money)
    told_interest_fen: Mapped[int | None] = mapped_column(Money)
    told_penalty_fen: Mapped[int | None] = mapped_column(Money)
    told_overdue_since: Mapped[date | None] = mapped_column(Date)

    borrower: Mapped[Borrower] = relationship()

    @property
    def debt_fen(self) -> int:
        return self.outstanding_principal_fen + self.interest_fen + self.penalty_fen


class Case(Base):
    """A projection of each case for SQL reporting; Temporal holds the process itself."""

    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"), unique=True)
    workflow_id: Mapped[str] = mapped_column(String(80), unique=True)
    branch_code: Mapped[str] = mapped_column(ForeignKey("branches.code"), index=True)
    stage: Mapped[str] = mapped_column(String(24), index=True)
    stage_since: Mapped[datetime] = mapped_column(AwareDateTime())
    last_seq: Mapped[int] = mapped_column(Integer, default=0)  # newest transition applied
    # The workflow run that started this case: a case started again after a failed or
    # terminated run is a new generation, whose sequences start again at 1.
    generation: Mapped[str] = mapped_column(String(16), default="", server_default="")
    risk_tier: Mapped[str] = mapped_column(String(8), default="")
    # The strategy file's choice at the assessment (collection-v4): champion/challenger arm.
    strategy_version: Mapped[str] = mapped_column(String(40), default="", server_default="")
    segment: Mapped[str] = mapped_column(String(40), default="", server_default="")
    strategy_arm: Mapped[str] = mapped_column(String(12), default="", server_default="", index=True)
    primary_collector: Mapped[str | None] = mapped_column(ForeignKey("collectors.id"), index=True)
    second_collector: Mapped[str | None] = mapped_column(ForeignKey("collectors.id"))
    debt_fen: Mapped[int | None] = mapped_column(Money)
    # The first debt the case recorded (recovery and cure are measured against it).
    entry_debt_fen: Mapped[int | None] = mapped_column(Money)
    paid_fen: Mapped[int] = mapped_column(Money, default=0)
    # What the borrower owes as of the workflow time `outstanding_at` (collection-v5 writes it
    # with every payment, debt update, waiver and stage change; only a newer time overwrites).
    # None: not written since migration 0019, the lists show the search attribute's value.
    outstanding_fen: Mapped[int | None] = mapped_column(Money)
    outstanding_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    next_action: Mapped[str] = mapped_column(String(120), default="")
    next_action_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    # The workflow time next_action/next_action_at are as of (collection-v6 writes them with
    # the activity before each wait; only a newer time overwrites). None: written by a
    # released run at its stage changes only: the lists show the search attribute's value.
    next_action_stamp: Mapped[datetime | None] = mapped_column(AwareDateTime())
    opened_at: Mapped[datetime] = mapped_column(AwareDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(AwareDateTime())

    loan: Mapped[Loan] = relationship()

    # The "overdue" and "due today" filters' open cases by next action (collection-v6).
    __table_args__ = (Index("ix_cases_closed_at_next_action_at", "closed_at", "next_action_at"),)


class StageChange(Base):
    """The audit trail: who moved a case, when and why."""

    __tablename__ = "stage_history"
    __table_args__ = (UniqueConstraint("case_id", "generation", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    generation: Mapped[str] = mapped_column(String(16), default="", server_default="")
    seq: Mapped[int] = mapped_column(Integer)
    from_stage: Mapped[str | None] = mapped_column(String(24))
    to_stage: Mapped[str] = mapped_column(String(24))
    at: Mapped[datetime] = mapped_column(AwareDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)


class Assignment(Base):
    __tablename__ = "assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    collector_id: Mapped[str] = mapped_column(ForeignKey("collectors.id"), index=True)
    assigned_at: Mapped[datetime] = mapped_column(AwareDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")


class Task(Base):
    """Work for a person: a call, a visit, a reminder, an escalation to a supervisor."""

    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    assignees: Mapped[str] = mapped_column(String(200))  # comma separated
    due_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime())
    status: Mapped[str] = mapped_column(String(12), default="OPEN")


class ContactAttempt(Base):
    """Every contact with a borrower, whatever the channel: the regulator's record."""

    __tablename__ = "contact_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    channel: Mapped[str] = mapped_column(String(12))  # SMS, VISIT, CALL
    at: Mapped[datetime] = mapped_column(AwareDateTime())
    outcome: Mapped[str] = mapped_column(String(24))
    detail: Mapped[str] = mapped_column(Text, default="")
    # Who was contacted: "borrower" or "contact:<id>" (a loan contact, a third party).
    party: Mapped[str] = mapped_column(String(40), default="borrower", server_default="borrower")
    # The rule that decided a deferral or refusal ("" when none stood in the way), and the
    # rule set and policy version in force: the regulator's evidence of every decision.
    rule: Mapped[str] = mapped_column(String(40), default="", server_default="")
    ruleset: Mapped[str] = mapped_column(String(60), default="", server_default="")


class LoanContact(Base):
    """Someone other than the debtor who may be contacted about a loan (a third party)."""

    __tablename__ = "loan_contacts"
    __table_args__ = (UniqueConstraint("loan_id", "phone"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    relation: Mapped[str] = mapped_column(String(16))  # domain.stages.Relation
    phone: Mapped[str] = mapped_column(String(20))  # E.164
    added_at: Mapped[datetime] = mapped_column(AwareDateTime())
    added_by: Mapped[str] = mapped_column(String(64))


class Consent(Base):
    """A borrower's consent given or withdrawn (the newest row of a kind decides)."""

    __tablename__ = "consents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    borrower_id: Mapped[int] = mapped_column(ForeignKey("borrowers.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    kind: Mapped[str] = mapped_column(String(24))
    given: Mapped[bool] = mapped_column(Boolean)
    how: Mapped[str] = mapped_column(String(16))  # AGREEMENT, SMS, VISIT, CALL
    at: Mapped[datetime] = mapped_column(AwareDateTime())
    by: Mapped[str] = mapped_column(String(64))
    notes: Mapped[str] = mapped_column(Text, default="")


class SmsOutbox(Base):
    """Written before a send and completed after it: the SMS idempotency record."""

    __tablename__ = "sms_outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    # None for a staff text about no case (the daily training reminder, migration 0016).
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    # None for a staff text (domain/safety.py STAFF_PURPOSES): no borrower's caps count it.
    borrower_id: Mapped[int | None] = mapped_column(ForeignKey("borrowers.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(40))
    to_number: Mapped[str | None] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text, default="")
    segments: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(12))  # PENDING SENT RECORDED BLOCKED FAILED
    reason: Mapped[str] = mapped_column(Text, default="")
    provider_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(AwareDateTime(), index=True)
    # From the provider's status callbacks: queued, sent, delivered, undelivered, failed.
    # When the provider was last called for it: a PENDING row with this set may have been
    # accepted by the provider before a crash, so a retry asks the provider first.
    attempted_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    delivery_status: Mapped[str | None] = mapped_column(String(16))
    delivery_error: Mapped[str | None] = mapped_column(String(16))
    # A staff text's claim (migration 0018): the attempt that may call the provider for it
    # (its own id) until `claim_until` (its time to call the provider ends); see send_staff.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claim_until: Mapped[datetime | None] = mapped_column(AwareDateTime())


class InboundMessage(Base):
    """Every SMS a borrower sent us, matched to their open case when there is one."""

    __tablename__ = "inbound_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_sid: Mapped[str] = mapped_column(String(64), unique=True)
    from_number: Mapped[str] = mapped_column(String(20), index=True)
    body: Mapped[str] = mapped_column(Text)
    intent: Mapped[str] = mapped_column(String(16))
    borrower_id: Mapped[int | None] = mapped_column(ForeignKey("borrowers.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(AwareDateTime())
    # When its case was told (at once when it has none); empty while the signal has not gone
    # through: Twilio's retry of the webhook tells the case then. Set once (record retention).
    processed_at: Mapped[datetime | None] = mapped_column(AwareDateTime())


class WebhookEvent(Base):
    """Each provider callback processed once: (kind, message, status) is its identity."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("kind", "message_sid", "status"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    message_sid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(AwareDateTime())


class UnmatchedReceipt(Base):
    """A delivery receipt that came before its message's Message SID was stored (Twilio's
    callback overtook our commit): kept until the send activity stores that SID and applies
    it, or a week has passed (a message this system did not send)."""

    __tablename__ = "sms_unmatched_receipts"
    __table_args__ = (UniqueConstraint("message_sid", "status"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_sid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(AwareDateTime(), index=True)


class Visit(Base):
    __tablename__ = "visits"
    __table_args__ = (UniqueConstraint("case_id", "generation", "visit_no"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    generation: Mapped[str] = mapped_column(String(16), default="", server_default="")
    visit_no: Mapped[int] = mapped_column(Integer)
    visited_at: Mapped[datetime] = mapped_column(AwareDateTime())
    outcome: Mapped[str] = mapped_column(String(24))
    collector_ids: Mapped[str] = mapped_column(String(80))
    reported_by: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(24))
    notes: Mapped[str] = mapped_column(Text, default="")
    # Help recorded (issue 15): counselling given, the hardships and words the borrower
    # stated (comma separated codes of domain/stages.py Counselling and Hardship).
    counselling: Mapped[str] = mapped_column(String(120), default="", server_default="")
    hardships: Mapped[str] = mapped_column(String(120), default="", server_default="")
    situation: Mapped[str] = mapped_column(Text, default="", server_default="")


class Complaint(Base):
    """A borrower's complaint (投诉, issue 15): by SMS or recorded by a collector; its
    deadlines, acknowledgement, escalations and outcome, as the case decided them."""

    __tablename__ = "complaints"
    __table_args__ = (UniqueConstraint("case_id", "generation", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    generation: Mapped[str] = mapped_column(String(16), default="", server_default="")
    number: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(AwareDateTime(), index=True)
    loan_no: Mapped[str] = mapped_column(String(40), index=True)
    branch_code: Mapped[str] = mapped_column(String(16), index=True)
    collectors: Mapped[str] = mapped_column(String(80), default="")  # whom it is about
    source: Mapped[str] = mapped_column(String(8))  # SMS, VISIT, CALL
    summary: Mapped[str] = mapped_column(Text, default="")
    recorded_by: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(12))  # OPEN, ACKNOWLEDGED, RESOLVED
    ack_due: Mapped[datetime] = mapped_column(AwareDateTime())
    resolve_due: Mapped[datetime] = mapped_column(AwareDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    ack_escalated_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    resolve_escalated_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(Text, default="")


class PromiseToPay(Base):
    """A promise to pay (承诺还款): one row per case, generation and promise number, updated
    when the promise is kept or broken."""

    __tablename__ = "promises"
    __table_args__ = (
        UniqueConstraint("case_id", "generation", "seq"),
        *money_check("amount_fen", "paid_fen"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    generation: Mapped[str] = mapped_column(String(16), default="", server_default="")
    seq: Mapped[int] = mapped_column(Integer)
    amount_fen: Mapped[int] = mapped_column(Money)
    due_date: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(8))  # CALL, VISIT, SMS
    made_by: Mapped[str] = mapped_column(String(64))
    made_at: Mapped[datetime] = mapped_column(AwareDateTime())
    status: Mapped[str] = mapped_column(String(12), index=True)  # OPEN, KEPT, BROKEN
    resolved_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    paid_fen: Mapped[int] = mapped_column(Money, default=0)
    notes: Mapped[str] = mapped_column(Text, default="")


class WaiverRequest(Base):
    """A waiver (息费减免) or settlement (一次性结清) request and its decision."""

    __tablename__ = "waivers"
    __table_args__ = (
        UniqueConstraint("case_id", "generation", "seq"),
        *money_check("principal_fen", "interest_fen", "penalty_fen", "settle_fen"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    generation: Mapped[str] = mapped_column(String(16), default="", server_default="")
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(12))  # WAIVER, SETTLEMENT
    principal_fen: Mapped[int] = mapped_column(Money, default=0)
    interest_fen: Mapped[int] = mapped_column(Money, default=0)
    penalty_fen: Mapped[int] = mapped_column(Money, default=0)
    settle_fen: Mapped[int] = mapped_column(Money, default=0)
    level: Mapped[str] = mapped_column(String(16))  # who must approve
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[datetime] = mapped_column(AwareDateTime())
    deadline: Mapped[datetime] = mapped_column(AwareDateTime())
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(12), index=True)  # PENDING .. EXPIRED
    decided_by: Mapped[str] = mapped_column(String(64), default="")
    decided_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    decision_reason: Mapped[str] = mapped_column(Text, default="")


class Agreement(Base):
    """An immutable rendered version of a repayment agreement (还款协议)."""

    __tablename__ = "agreements"
    __table_args__ = (
        UniqueConstraint("case_id", "version"),
        UniqueConstraint("case_id", "plan_hash"),
        *money_check("total_fen"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    version: Mapped[int] = mapped_column(Integer)
    plan_number: Mapped[int] = mapped_column(Integer)
    plan_hash: Mapped[str] = mapped_column(String(64))
    # The signed document is the PDF: its SHA-256 is what a signature names.
    sha256: Mapped[str] = mapped_column(String(64))
    pdf_path: Mapped[str] = mapped_column(String(300))
    size_bytes: Mapped[int] = mapped_column(Integer)
    html_path: Mapped[str] = mapped_column(String(300))
    html_sha256: Mapped[str] = mapped_column(String(64))
    total_fen: Mapped[int] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime())
    signed_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    signed_by: Mapped[str | None] = mapped_column(String(64))
    signed_place: Mapped[str | None] = mapped_column(String(200))

    installments: Mapped[list[AgreementInstallment]] = relationship(
        order_by="AgreementInstallment.seq", cascade="all, delete-orphan"
    )


class AgreementInstallment(Base):
    __tablename__ = "agreement_installments"
    __table_args__ = (UniqueConstraint("agreement_id", "seq"), *money_check("amount_fen"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"))
    seq: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime] = mapped_column(AwareDateTime())
    amount_fen: Mapped[int] = mapped_column(Money)


class SignedScan(Base):
    """A photo or scan of the signed paper, kept beside its version with its own hash."""

    __tablename__ = "signed_scans"
    __table_args__ = (UniqueConstraint("agreement_id", "sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(300))
    size_bytes: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(40))
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(AwareDateTime())


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = money_check("amount_fen")
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    loan_id: Mapped[int] = mapped_column(ForeignKey("loans.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(Money)
    paid_at: Mapped[datetime] = mapped_column(AwareDateTime())
    source: Mapped[str] = mapped_column(String(40))
    recorded_at: Mapped[datetime] = mapped_column(AwareDateTime())


class User(Base):
    """A person who signs in: a supervisor (their branches), a collector (their own cases)
    or the back office (the feeds). Passwords are kept only as scrypt hashes."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(
            "role IN ('SUPERVISOR', 'COLLECTOR', 'BACK_OFFICE', 'BRANCH_HEAD', 'LEGAL')",
            name="role_known",
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    branches: Mapped[str] = mapped_column(String(200), default="")  # comma separated codes
    collector_id: Mapped[str | None] = mapped_column(ForeignKey("collectors.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime())
    # E.164; where safety alerts are texted (supervisors, branch heads). Shown masked.
    mobile: Mapped[str | None] = mapped_column(String(20))


class WebSession(Base):
    """A signed-in browser or API token. Only the token's SHA-256 is stored."""

    __tablename__ = "web_sessions"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(AwareDateTime())
    expires_at: Mapped[datetime] = mapped_column(AwareDateTime())


class AuditEvent(Base):
    """Who did what, to which case, and whether the case accepted it (refusals too)."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(AwareDateTime(), index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    loan_no: Mapped[str | None] = mapped_column(String(40), index=True)
    outcome: Mapped[str] = mapped_column(String(12))  # ACCEPTED, REFUSED, DONE, FAILED
    detail: Mapped[str] = mapped_column(Text, default="")


class SignInFailure(Base):
    """Failed sign-ins per user name (USER) and per client address (ADDRESS), shared by every
    web process: enough of them within the window lock that name or address for a while."""

    __tablename__ = "sign_in_failures"
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # USER or ADDRESS
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # since the window began
    last_failure_at: Mapped[datetime] = mapped_column(AwareDateTime(), index=True)
    locked_until: Mapped[datetime | None] = mapped_column(AwareDateTime())


class DailyRun(Base):
    """One run of the daily feed (DailyFeedRunWorkflow): the export it took, the counts, the
    rejected-rows file, the outcome. `processed_sha256` is set on the run that processes a
    file (unique: a file with the same content is processed once; NULL on the others)."""

    __tablename__ = "daily_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_key: Mapped[str] = mapped_column(String(300), unique=True)  # workflow id / run id
    scheduled_at: Mapped[datetime] = mapped_column(AwareDateTime(), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    export_dir: Mapped[str] = mapped_column(Text, default="")
    file_name: Mapped[str] = mapped_column(String(255), default="")
    file_sha256: Mapped[str] = mapped_column(String(64), default="")
    processed_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    cases_started: Mapped[int] = mapped_column(Integer, default=0)
    already_running: Mapped[int] = mapped_column(Integer, default=0)
    # Running cases told the export's new balances (feeds/debt_updates.py).
    debts_updated: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rejected: Mapped[int] = mapped_column(Integer, default=0)  # rows
    rejected_file: Mapped[str] = mapped_column(Text, default="")
    payments_file: Mapped[str] = mapped_column(String(255), default="")
    payments_sha256: Mapped[str] = mapped_column(String(64), default="")
    payments_signalled: Mapped[int] = mapped_column(Integer, default=0)
    payments_rejected: Mapped[int] = mapped_column(Integer, default=0)
    payments_rejected_file: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20))  # domain.daily_run.RunStatus
    error: Mapped[str] = mapped_column(Text, default="")
