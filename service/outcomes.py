"""The outcome report read from the database (issue 16, item 4): each case with its
payments, promises, first contact and visits → domain/outcomes.py's tables, written as CSV
or an Excel workbook (`python -m cli.main report outcomes`) and drawn on /reports."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Case, ContactAttempt, Loan, Payment, PromiseToPay, Visit, WaiverRequest
from domain.outcomes import (
    DEFAULT_BUCKETS,
    GROUPS,
    ArmComparison,
    CaseOutcome,
    GroupOutcome,
    Roll,
    bucket_counts,
    bucket_history,
    collector_workload,
    compare_arms,
    month_ends,
    outcomes,
    recovery_by_arm_over_time,
    roll_rates,
)
from domain.policy import Policy
from domain.timerules import local_date

# A contact that reached the borrower's phone or door (not a deferral or a refusal).
REACHED = {"SENT", "RECORDED", "DELIVERED", "ANSWERED", "MET", "PROMISED_TO_PAY", "REFUSED"}


def portfolio(
    sessions: sessionmaker[Session], policy: Policy, branches: list[str] | None = None
) -> list[CaseOutcome]:
    """Every case (branches None) or the cases of these branches: an empty list is none (a
    user with no branches sees no rows)."""
    if branches is not None and not branches:
        return []
    with sessions() as session:
        query = select(Case, Loan).join(Loan, Loan.id == Case.loan_id)
        if branches is not None:
            query = query.where(Case.branch_code.in_(branches))
        rows = session.execute(query).all()
        case_ids = [c.id for c, _ in rows]
        loan_ids = [loan.id for _, loan in rows]
        pays: dict[int, list[tuple[date, int]]] = defaultdict(list)
        for p in session.scalars(select(Payment).where(Payment.loan_id.in_(loan_ids))):
            pays[p.loan_id].append((local_date(p.paid_at, policy), p.amount_fen))
        promises: dict[int, list[str]] = defaultdict(list)
        for pr in session.scalars(select(PromiseToPay).where(PromiseToPay.case_id.in_(case_ids))):
            promises[pr.case_id].append(pr.status)
        waived: dict[int, int] = defaultdict(int)  # applied waivers, paid settlements
        for w in session.scalars(select(WaiverRequest).where(WaiverRequest.case_id.in_(case_ids))):
            if w.status == "SETTLED" or (w.status == "APPROVED" and w.kind == "WAIVER"):
                waived[w.case_id] += w.principal_fen + w.interest_fen + w.penalty_fen
        first: dict[int, date] = {}
        for a in session.scalars(
            select(ContactAttempt)
            .where(ContactAttempt.case_id.in_(case_ids), ContactAttempt.party == "borrower")
            .order_by(ContactAttempt.at)
        ):
            if a.outcome in REACHED and a.case_id not in first:
                first[a.case_id] = local_date(a.at, policy)
        visits: dict[int, list[tuple[str, date]]] = defaultdict(list)
        for v in session.scalars(select(Visit).where(Visit.case_id.in_(case_ids))):
            for who in v.collector_ids.split(","):
                visits[v.case_id].append((who, local_date(v.visited_at, policy)))
        out = []
        for c, loan in rows:
            opened = local_date(c.opened_at, policy)
            out.append(
                CaseOutcome(
                    loan_no=loan.loan_no,
                    branch=c.branch_code,
                    collector=c.primary_collector or "",
                    segment=c.segment,
                    arm=c.strategy_arm,
                    overdue_since=loan.overdue_since,
                    opened_on=opened,
                    # The debt at entry: recovery and cure are measured against what was
                    # owed when the case began, not the debt after waivers.
                    debt_fen=(c.entry_debt_fen if c.entry_debt_fen is not None else c.debt_fen)
                    or 0,
                    closed_on=local_date(c.closed_at, policy) if c.closed_at else None,
                    paid_in_full=c.stage == "PAID_IN_FULL",
                    payments=[p for p in pays[loan.id] if p[0] >= opened],
                    promises=promises[c.id],
                    first_contact_on=first.get(c.id),
                    visits=visits[c.id],
                    waived_fen=waived[c.id],
                )
            )
        return out


@dataclass
class OutcomeReport:
    first: date
    last: date
    month_ends: list[date]
    groups: list[GroupOutcome]
    rolls: list[Roll]
    history: dict[str, list[str | None]]
    arms: list[ArmComparison]
    bucket_counts: list[dict[str, int]]
    recovery_by_arm: dict[str, list[float]]
    workload: dict[str, int]


def build_report(
    cases: list[CaseOutcome], first: date, last: date, buckets=DEFAULT_BUCKETS
) -> OutcomeReport:  # type: ignore[no-untyped-def]
    ends = month_ends(first, last)
    history = bucket_history(cases, ends, buckets)
    return OutcomeReport(
        first=first,
        last=last,
        month_ends=ends,
        groups=[g for by in GROUPS for g in outcomes(cases, by, first, last)],
        rolls=roll_rates(history, ends),
        history=history,
        arms=compare_arms(cases),
        bucket_counts=bucket_counts(history, len(ends)),
        recovery_by_arm=recovery_by_arm_over_time(cases, ends),
        workload=collector_workload(cases, first, last),
    )


GROUP_COLUMNS = list(GroupOutcome.__dataclass_fields__)
ROLL_COLUMNS = ["month", "from_bucket", "to_bucket", "cases", "rate"]


def _cell(value: object) -> object:
    if isinstance(value, float):
        return round(value, 4)
    return "" if value is None else value


def to_csv(report: OutcomeReport) -> str:
    """The outcomes per group (recovery, cure, promise-kept ... columns), a blank line, then
    the roll rates (from bucket, to bucket, rate) per month end."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(GROUP_COLUMNS)
    for g in report.groups:
        w.writerow([_cell(v) for v in asdict(g).values()])
    w.writerow([])
    w.writerow([f"roll_{c}" for c in ROLL_COLUMNS])
    for r in report.rolls:
        w.writerow([_cell(v) for v in asdict(r).values()])
    return buf.getvalue()


def to_xlsx(report: OutcomeReport) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "outcomes"
    ws.append(GROUP_COLUMNS)
    for g in report.groups:
        ws.append([_cell(v) for v in asdict(g).values()])
    rr = wb.create_sheet("roll_rates")
    rr.append(ROLL_COLUMNS)
    for r in report.rolls:
        rr.append([_cell(v) for v in asdict(r).values()])
    bh = wb.create_sheet("bucket_history")
    bh.append(["loan_no", *[d.isoformat() for d in report.month_ends]])
    for loan, row in sorted(report.history.items()):
        bh.append([loan, *[b or "" for b in row]])
    ca = wb.create_sheet("champion_challenger")
    ca.append([*ArmComparison.__dataclass_fields__, "beyond_noise", "verdict"])
    for a in report.arms:
        ca.append([*[_cell(v) for v in asdict(a).values()], a.beyond_noise, a.verdict])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
