"""The collection record (催收记录) of one case, for a regulator: every contact decision of
the contact log (all channels and parties, with the deciding rule and the rule set), the
visits and their teams, the agreement versions with their hashes and signatures, payments,
stage changes and holds, the users' actions, the messages, and complaints once a table holds
them. Exported as CSV (one row per fact) and PDF (WeasyPrint, the agreements' CJK font).

Phone numbers are shown as the case page shows them to the same user
(`case_record.sees_full_numbers`): in full only to a collector on the case; masked for
supervisors and for the operators' CLI, in the fields and in every free text alike. ID
numbers are always masked but for their last four characters. Times are on the clock of the
case's branch.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import MetaData, Table, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import (
    Agreement,
    AuditEvent,
    Branch,
    ContactAttempt,
    InboundMessage,
    LoanContact,
    Payment,
    SignedScan,
    SmsOutbox,
    StageChange,
    Visit,
)
from db.repository import case_loan_borrower
from domain.money import yuan
from domain.policy import Policy
from domain.privacy import mask_id_number, mask_phone, mask_text
from domain.safety import STAFF_PURPOSES
from service.case_record import sees_full_numbers
from service.local_time import loan_policy
from service.users import Principal

COMPLAINTS = "complaints"
COUNSELLING_ZH = {
    "FINANCIAL_ADVICE": "还款/理财建议 financial advice",
    "HARDSHIP_REFERRAL": "转介救助 hardship referral",
    "RESTRUCTURING_SUGGESTION": "建议重组 restructuring suggested",
}
HARDSHIP_ZH = {
    "DISASTER": "受灾 disaster",
    "ILLNESS": "因病 illness",
    "HARVEST_FAILURE": "歉收 harvest failure",
    "JOB_LOSS": "失业 job loss",
    "OTHER": "其他 other",
}  # no such table yet: read when a later migration adds one
HOLD = "ON_HOLD"


@dataclass
class ContactLine:
    at: datetime
    channel: str  # SMS, CALL, VISIT
    party: str  # "借款人 borrower", or the loan contact named
    outcome: str
    rule: str
    ruleset: str
    detail: str


@dataclass
class VisitLine:
    visit_no: int
    visited_at: datetime
    outcome: str
    team: list[str]
    reported_by: str
    stage: str
    notes: str
    counselling: list[str] = field(default_factory=list)  # help given (issue 15)
    hardships: list[str] = field(default_factory=list)  # the borrower's stated situation
    situation: str = ""

    @property
    def help_text(self) -> str:
        """Counselling and the stated situation, in Chinese first, for the record."""
        parts = []
        if self.counselling:
            parts.append(
                "帮扶 help: " + ", ".join(COUNSELLING_ZH.get(c, c) for c in self.counselling)
            )
        if self.hardships:
            parts.append(
                "困难 hardship: " + ", ".join(HARDSHIP_ZH.get(h, h) for h in self.hardships)
            )
        if self.situation:
            parts.append(f"自述 stated: {self.situation}")
        return "; ".join(parts)

    @property
    def team_size(self) -> int:
        return len(self.team)


@dataclass
class ScanLine:
    sha256: str
    uploaded_at: datetime
    uploaded_by: str
    content_type: str


@dataclass
class AgreementLine:
    version: int
    plan_number: int
    created_at: datetime
    total_fen: int
    sha256: str
    html_sha256: str
    size_bytes: int
    signed_at: datetime | None
    signed_by: str
    signed_place: str
    installments: list[tuple[int, datetime, int]]
    scans: list[ScanLine]


@dataclass
class PaymentLine:
    paid_at: datetime
    amount_fen: int
    reference: str
    source: str
    recorded_at: datetime


@dataclass
class StageLine:
    at: datetime
    seq: int
    from_stage: str
    to_stage: str
    actor: str
    reason: str

    @property
    def hold(self) -> bool:
        return HOLD in (self.from_stage, self.to_stage)

    @property
    def change(self) -> str:
        return f"{self.from_stage or '立案 opened'} → {self.to_stage}"


@dataclass
class ActionLine:
    at: datetime
    username: str
    role: str
    action: str
    outcome: str
    detail: str


@dataclass
class MessageLine:
    at: datetime
    direction: str  # 发出 OUT, 收到 IN
    status: str
    text: str


@dataclass
class ComplaintLine:
    at: datetime | None
    detail: str


@dataclass
class CollectionRecord:
    loan_no: str
    branch: str
    branch_name: str
    borrower_name: str
    id_number: str  # masked
    phone: str  # in full or masked, as the reader may see it
    address: str
    collectors: list[str]
    stage: str
    opened_at: datetime
    closed_at: datetime | None
    debt_fen: int | None
    paid_fen: int
    zone: tzinfo
    generated_at: datetime
    full_numbers: bool
    contacts: list[ContactLine] = field(default_factory=list)
    visits: list[VisitLine] = field(default_factory=list)
    agreements: list[AgreementLine] = field(default_factory=list)
    payments: list[PaymentLine] = field(default_factory=list)
    stages: list[StageLine] = field(default_factory=list)
    actions: list[ActionLine] = field(default_factory=list)
    messages: list[MessageLine] = field(default_factory=list)
    complaints: list[ComplaintLine] | None = None  # None: no complaints table

    def local(self, moment: datetime | None) -> str:
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def collection_record(
    sessions: sessionmaker[Session],
    loan_no: str,
    who: Principal | None,
    policy: Policy,
    now: datetime,
) -> CollectionRecord | None:
    """The record of a loan's case as `who` may read it (None: the operators' CLI)."""
    zone = loan_policy(sessions, loan_no, policy).timezone_info()
    with sessions() as session:
        found = case_loan_borrower(session, loan_no)
        if found is None:
            return None
        case, loan, borrower = found
        collectors = [c for c in (case.primary_collector, case.second_collector) if c]
        full = sees_full_numbers(who, collectors)

        def text(value: str | None) -> str:
            return (value or "") if full else mask_text(value or "")

        def number(phone: str | None) -> str:
            return (phone or "-") if full else (mask_phone(phone) or "-")

        branch = session.get(Branch, case.branch_code)
        record = CollectionRecord(
            loan_no=loan.loan_no,
            branch=case.branch_code,
            branch_name=branch.name if branch else case.branch_code,
            borrower_name=borrower.name,
            id_number=mask_id_number(borrower.id_number),
            phone=number(borrower.phone),
            address=text(f"{borrower.village} {borrower.address}".strip()),
            collectors=collectors,
            stage=case.stage,
            opened_at=case.opened_at,
            closed_at=case.closed_at,
            debt_fen=case.debt_fen,
            paid_fen=case.paid_fen,
            zone=zone,
            generated_at=now,
            full_numbers=full,
        )
        parties = {
            f"contact:{c.id}": f"{c.relation} {c.name} {number(c.phone)}"
            for c in session.scalars(select(LoanContact).where(LoanContact.loan_id == loan.id))
        }
        record.contacts = [
            ContactLine(
                c.at,
                c.channel,
                "借款人 borrower" if c.party == "borrower" else parties.get(c.party, c.party),
                c.outcome,
                c.rule,
                c.ruleset,
                text(c.detail),
            )
            for c in session.scalars(
                select(ContactAttempt)
                .where(ContactAttempt.case_id == case.id)
                .order_by(ContactAttempt.at, ContactAttempt.id)
            )
        ]
        record.visits = [
            VisitLine(
                v.visit_no,
                v.visited_at,
                v.outcome,
                [c for c in v.collector_ids.split(",") if c],
                v.reported_by,
                v.stage,
                text(v.notes),
                [c for c in v.counselling.split(",") if c],
                [h for h in v.hardships.split(",") if h],
                text(v.situation),
            )
            for v in session.scalars(
                select(Visit).where(Visit.case_id == case.id).order_by(Visit.visited_at, Visit.id)
            )
        ]
        for a in session.scalars(
            select(Agreement).where(Agreement.case_id == case.id).order_by(Agreement.version)
        ):
            scans = [
                ScanLine(s.sha256, s.uploaded_at, s.uploaded_by, s.content_type)
                for s in session.scalars(
                    select(SignedScan)
                    .where(SignedScan.agreement_id == a.id)
                    .order_by(SignedScan.uploaded_at)
                )
            ]
            record.agreements.append(
                AgreementLine(
                    a.version, a.plan_number, a.created_at, a.total_fen, a.sha256,
                    a.html_sha256, a.size_bytes, a.signed_at, a.signed_by or "",
                    text(a.signed_place), [(i.seq, i.due_at, i.amount_fen) for i in a.installments],
                    scans,
                )
            )  # fmt: skip
        record.payments = [
            PaymentLine(p.paid_at, p.amount_fen, p.reference, p.source, p.recorded_at)
            for p in session.scalars(
                select(Payment).where(Payment.loan_id == loan.id).order_by(Payment.paid_at)
            )
        ]
        record.stages = [
            StageLine(s.at, s.seq, s.from_stage or "", s.to_stage, s.actor, text(s.reason))
            for s in session.scalars(
                select(StageChange)
                .where(StageChange.case_id == case.id)
                .order_by(StageChange.at, StageChange.id)
            )
        ]
        record.actions = [
            ActionLine(e.at, e.username, e.role, e.action, e.outcome, text(e.detail))
            for e in session.scalars(
                select(AuditEvent)
                .where(AuditEvent.loan_no == loan_no)
                .order_by(AuditEvent.at, AuditEvent.id)
            )
        ]
        # The borrower's messages only: staff alerts about the case are not sent to them.
        borrowers = select(SmsOutbox).where(
            SmsOutbox.case_id == case.id, SmsOutbox.purpose.not_in(STAFF_PURPOSES)
        )
        for m in session.scalars(borrowers):
            status = m.status + (f" / {m.delivery_status}" if m.delivery_status else "")
            to = number(m.to_number)
            record.messages.append(
                MessageLine(m.sent_at or m.created_at, "发出 OUT", f"{status} → {to}", text(m.body))
            )
        for i in session.scalars(select(InboundMessage).where(InboundMessage.case_id == case.id)):
            record.messages.append(MessageLine(i.received_at, "收到 IN", i.intent, text(i.body)))
        record.messages.sort(key=lambda m: m.at)
        record.complaints = _complaints(session, case.id, loan_no, text)
    return record


def _complaints(session: Session, case_id: int, loan_no: str, text: Any) -> list | None:  # type: ignore[type-arg]
    """The case's complaints, when a table of them exists (by case_id or loan_no)."""
    if not inspect(session.connection()).has_table(COMPLAINTS):
        return None
    table = Table(COMPLAINTS, MetaData(), autoload_with=session.connection())
    if "case_id" in table.c:
        query = select(table).where(table.c.case_id == case_id)
    elif "loan_no" in table.c:
        query = select(table).where(table.c.loan_no == loan_no)
    else:
        return []
    lines = []
    for row in session.execute(query).mappings():
        at = next((v for v in row.values() if isinstance(v, datetime)), None)
        detail = "; ".join(f"{k}={v}" for k, v in row.items() if k not in ("id", "case_id"))
        lines.append(ComplaintLine(at, text(detail)))
    return lines


# ---------------------------------------------------------------- CSV

CSV_HEADER = [
    "类别 section",
    "时间 at",
    "事项 kind",
    "对象 party",
    "结果 outcome",
    "规则 rule",
    "规则集 ruleset",
    "人员 by",
    "详情 detail",
]


def csv_rows(r: CollectionRecord) -> Iterator[list[str]]:
    """One row per fact, section by section, each in time order."""
    for c in r.contacts:
        yield ["联系 contact", r.local(c.at), c.channel, c.party, c.outcome, c.rule, c.ruleset,
               "", c.detail]  # fmt: skip
    for v in r.visits:
        yield ["外访 visit", r.local(v.visited_at), f"第{v.visit_no}次 visit {v.visit_no}",
               "借款人 borrower", v.outcome, "", "", ",".join(v.team),
               f"{v.team_size}人 team of {v.team_size}; reported by {v.reported_by}; "
               f"stage {v.stage}; {v.notes}; {v.help_text}".strip("; ")]  # fmt: skip
    for a in r.agreements:
        plan = "; ".join(f"{s}. {r.local(d)[:10]} {yuan(f)}" for s, d, f in a.installments)
        signed = "未签署 unsigned"
        if a.signed_at:
            signed = f"签署 signed {r.local(a.signed_at)} {a.signed_place}"
        yield ["协议 agreement", r.local(a.created_at), f"v{a.version} plan {a.plan_number}", "",
               signed, "", "", a.signed_by,
               f"pdf sha256 {a.sha256}; html sha256 {a.html_sha256}; {a.size_bytes} bytes; "
               f"total {yuan(a.total_fen)}; installments: {plan}"]  # fmt: skip
        for s in a.scans:
            yield ["协议 agreement", r.local(s.uploaded_at), f"v{a.version} signed scan", "",
                   s.content_type, "", "", s.uploaded_by, f"sha256 {s.sha256}"]  # fmt: skip
    for p in r.payments:
        yield ["还款 payment", r.local(p.paid_at), p.source, "", yuan(p.amount_fen), "", "", "",
               f"reference {p.reference}; recorded {r.local(p.recorded_at)}"]  # fmt: skip
    for s in r.stages:
        yield ["暂停 hold" if s.hold else "阶段 stage", r.local(s.at), f"#{s.seq}", "",
               s.change, "", "", s.actor, s.reason]  # fmt: skip
    for e in r.actions:
        yield ["操作 action", r.local(e.at), e.action, "", e.outcome, "", "",
               f"{e.username} ({e.role})", e.detail]  # fmt: skip
    for m in r.messages:
        yield ["短信 message", r.local(m.at), m.direction, "", m.status, "", "", "", m.text]
    for c in r.complaints or []:
        yield ["投诉 complaint", r.local(c.at), "", "", "", "", "", "", c.detail]


def _cell(value: str) -> str:
    """A cell a spreadsheet will not run: text that starts like a formula is quoted."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def to_csv(r: CollectionRecord) -> bytes:
    """UTF-8 with a BOM (spreadsheets in Chinese open it as such), CRLF line ends."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["催收记录 collection record", r.loan_no, r.branch, r.borrower_name, r.id_number,
                r.phone, f"导出 generated {r.local(r.generated_at)}"])  # fmt: skip
    w.writerow(CSV_HEADER)
    for row in csv_rows(r):
        w.writerow([_cell(v) for v in row])
    return out.getvalue().encode("utf-8-sig")


# ---------------------------------------------------------------- PDF

_renderer: Any = None


def to_html(r: CollectionRecord, exported_by: str) -> str:
    from activities.texts import environment

    env = environment(autoescape=True)
    return env.get_template("record/record.html.j2").render(r=r, exported_by=exported_by)


def to_pdf(r: CollectionRecord, exported_by: str) -> bytes:
    """The record as a PDF, in the agreements' CJK font (refused without one)."""
    global _renderer
    from activities.documents import PdfRenderer

    if _renderer is None:
        _renderer = PdfRenderer()
    return _renderer.render(to_html(r, exported_by))
