"""A later export's balances for loans whose cases are running (issue 18, item 4).

The intake compares each row's principal, interest and penalty with what the loan row held
before this export, and signals the changed ones to their cases (`debt_updated`, with the
export's date). A signal that fails puts the loan row's earlier figures back, so that the
next run of the same file sees the change again and tells the case then.
"""

from __future__ import annotations

import asyncio
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError

from db.models import Loan
from db.seed import LoanSpec
from domain.models import DebtUpdate
from domain.money import yuan
from domain.names import workflow_id

Figures = tuple[int, int, int]  # outstanding principal, interest, penalty (fen)


def figures_before(session: Session, loan_nos: list[str]) -> dict[str, Figures]:
    """The loans' figures as stored before this export is written."""
    rows = session.execute(
        select(
            Loan.loan_no, Loan.outstanding_principal_fen, Loan.interest_fen, Loan.penalty_fen
        ).where(Loan.loan_no.in_(loan_nos))
    ).all()
    return {no: (p, i, n) for no, p, i, n in rows}


def figures(spec: LoanSpec) -> Figures:
    return (spec.outstanding_principal_fen, spec.interest_fen, spec.penalty_fen)


async def tell_cases(
    client: Client,
    sessions: sessionmaker[Session],
    specs: list[LoanSpec],
    before: dict[str, Figures],
    as_of: date,
    by: str,
    concurrency: int = 50,
) -> list[str]:
    """Signal every spec whose figures changed (`concurrency` at a time); "loan: old → new"
    lines for the report, in the file's order."""
    gate = asyncio.Semaphore(concurrency)
    lines: dict[str, str] = {}

    async def tell(spec: LoanSpec, old: Figures) -> None:
        update = DebtUpdate(as_of, *figures(spec), by=by)
        change = f"{spec.loan_no}: {yuan(sum(old))} → {yuan(update.total_fen)} yuan"
        try:
            async with gate:
                handle = client.get_workflow_handle(workflow_id(spec.loan_no))
                await handle.signal("debt_updated", update)
            lines[spec.loan_no] = change
        except RPCError as error:
            _put_back(sessions, spec.loan_no, old)
            lines[spec.loan_no] = (
                f"{change} (the case was not told: {error.message}; run the same file again)"
            )

    changed = [
        (spec, before[spec.loan_no])
        for spec in specs
        if spec.loan_no in before and before[spec.loan_no] != figures(spec)
    ]
    await asyncio.gather(*(tell(spec, old) for spec, old in changed))
    return [lines[spec.loan_no] for spec, _ in changed]


def _put_back(sessions: sessionmaker[Session], loan_no: str, old: Figures) -> None:
    """The loan row as the case still knows it, so that the next run sees the change."""
    with sessions.begin() as session:
        loan = session.scalar(select(Loan).where(Loan.loan_no == loan_no))
        if loan is not None:
            loan.outstanding_principal_fen, loan.interest_fen, loan.penalty_fen = old
