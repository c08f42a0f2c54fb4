"""Posted payments from core banking: each reference recorded and signalled to its case once.

Columns (CSV or .xlsx; each by its synonyms in feeds/columns.py): loan_no (贷款编号, 借据号,
...), amount_yuan (金额, 还款金额, 交易金额), paid_on (还款日期, 交易日期, a date as
`csv_files.parse_date` reads it), reference (流水号, 交易流水号). The rejected rows are
written beside the file (payments.rejected.csv) with their reason, to be sent again.

A payment known only by its date is taken as made at noon of that day on the clock of the
loan's branch (its time zone, else the configured policy's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from db.models import Branch, Loan, Payment
from db.repository import insert_ignore
from domain.models import PaymentPosted
from domain.money import yuan
from domain.names import workflow_id
from domain.policy import Policy
from feeds.columns import PAYMENT_FIELDS
from feeds.csv_files import (
    RowError,
    long_numbers,
    parse_date,
    rejected_path,
    text_field,
    write_rejected,
    yuan_to_fen,
)
from feeds.sheets import read_export
from service.local_time import in_zone, midday

COLUMNS: dict[str, tuple[str, ...]] = PAYMENT_FIELDS


@dataclass
class PaymentReport:
    rows: int = 0
    signalled: int = 0
    duplicates: list[str] = field(default_factory=list)  # references seen before
    closed: list[str] = field(default_factory=list)  # recorded, but the case has ended
    errors: list[RowError] = field(default_factory=list)
    # The rejected rows, as written, with a reason column: to be corrected and sent again.
    rejected_file: Path | None = None


async def post_payments(
    path: Path,
    sessions: sessionmaker[Session],
    client: Client,
    today: date,
    policy: Policy,
    rejected: Path | None = None,
) -> PaymentReport:
    """`today`: the configured policy's date, after which a payment is in the future. The
    rejected rows go to `rejected` (by default payments.rejected.csv beside the file)."""
    table = read_export(path, COLUMNS, list(COLUMNS))[0]
    rows = table.rows
    report = PaymentReport(rows=len(rows))
    seen: dict[str, int] = {}
    with sessions() as session:
        found = session.execute(
            select(Loan.loan_no, Loan.id, Branch.timezone)
            .join(Branch, Branch.code == Loan.branch_code)
            .where(Loan.loan_no.in_({c["loan_no"] for _, c in rows}))
        ).all()
    loans = {no: lid for no, lid, _ in found}
    clocks = {no: in_zone(policy, timezone) for no, _, timezone in found}  # the branch's clock
    for line, cells in rows:
        errors = long_numbers(line, cells)
        ref = text_field(line, "reference", cells["reference"], errors)
        if ref in seen:
            errors.append(RowError(line, "reference", f"duplicate of row {seen[ref]}"))
        if cells["loan_no"] not in loans:
            errors.append(RowError(line, "loan_no", f"unknown loan {cells['loan_no']!r}"))
        amount = yuan_to_fen(line, "amount_yuan", cells["amount_yuan"], errors)
        if amount == 0 and not any(e.field == "amount_yuan" for e in errors):
            errors.append(RowError(line, "amount_yuan", "a payment must be more than zero"))
        paid_on = parse_date(line, "paid_on", cells["paid_on"], errors)
        if paid_on is not None and paid_on > today:
            errors.append(RowError(line, "paid_on", "is in the future"))
        if ref:
            seen.setdefault(ref, line)
        if errors:
            report.errors.extend(errors)
            continue
        assert paid_on is not None
        paid_at = midday(paid_on, clocks[cells["loan_no"]]).astimezone(UTC)
        with sessions.begin() as session:  # the fact first: a failed signal loses nothing
            new = insert_ignore(
                session,
                Payment,
                dict(
                    reference=ref,
                    loan_id=loans[cells["loan_no"]],
                    amount_fen=amount,
                    paid_at=paid_at,
                    source="payment-feed",
                    recorded_at=datetime.now(UTC),
                ),
                ["reference"],
            )
            stored = None
            if not new:
                stored = session.execute(
                    select(Loan.loan_no, Payment.amount_fen, Payment.paid_at, Payment.source)
                    .join(Loan, Loan.id == Payment.loan_id)
                    .where(Payment.reference == ref)
                ).one()
        posted = PaymentPosted(ref, amount, paid_at, "payment-feed")
        loan_no = cells["loan_no"]
        if stored is not None:
            # One reference is one bank transfer: counted for the loan and amount it was
            # recorded with, never again for another (a corrected export is refused).
            recorded = (
                f"reference {ref} was recorded for loan {stored.loan_no}, "
                f"{yuan(stored.amount_fen)} yuan"
            )
            if stored.loan_no != loan_no:
                errors.append(RowError(line, "loan_no", f"{loan_no!r}: {recorded}"))
            if stored.amount_fen != amount:
                errors.append(
                    RowError(line, "amount_yuan", f"{cells['amount_yuan']!r}: {recorded}")
                )
            if errors:
                report.errors.extend(errors)
                continue
            report.duplicates.append(ref)
            # Signalled again with what was stored, never with the row's own values.
            loan_no = stored.loan_no
            posted = PaymentPosted(ref, stored.amount_fen, stored.paid_at, stored.source)
        # Signalled even when recorded before: the workflow counts a reference once, and a
        # previous run of the feed may have stopped between the record and the signal.
        try:
            await client.get_workflow_handle(workflow_id(loan_no)).signal("payment_posted", posted)
            report.signalled += 1
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            report.closed.append(ref)
    report.rejected_file = write_rejected(table, report.errors, rejected or rejected_path(path))
    return report
