"""A later export's balances for loans whose cases are running (issue 18, item 4).

Each loan row keeps, beside the export's figures, the figures its running case last read or
was told (`told_*`: set by the investigation's load_case, and here after a signal went
through). The intake signals `debt_updated` (the three figures, the overdue date and the
export's date) to every running case whose export figures differ from what it was told, or
whose told figures are not known. A signal that fails, or an intake that crashed or was
retried after writing the loan rows, leaves the told figures as they were, so the next run
tells the case.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError

from db.models import Loan
from db.repository import mark_told
from db.seed import LoanSpec
from domain.models import DebtUpdate
from domain.money import yuan
from domain.names import workflow_id

Told = tuple[int, int, int, date]  # outstanding principal, interest, penalty (fen), overdue


def told(session: Session, loan_nos: list[str]) -> dict[str, Told | None]:
    """What each loan's running case was last told (None: not known)."""
    rows = session.execute(
        select(
            Loan.loan_no,
            Loan.told_principal_fen,
            Loan.told_interest_fen,
            Loan.told_penalty_fen,
            Loan.told_overdue_since,
        ).where(Loan.loan_no.in_(loan_nos))
    ).all()
    known: dict[str, Told | None] = {}
    for no, p, i, n, since in rows:
        known[no] = None if None in (p, i, n, since) else (p, i, n, since)
    return known


def figures(spec: LoanSpec) -> Told:
    return (spec.outstanding_principal_fen, spec.interest_fen, spec.penalty_fen, spec.overdue_since)


async def tell_cases(
    client: Client,
    sessions: sessionmaker[Session],
    specs: list[LoanSpec],
    as_of: date,
    by: str,
    concurrency: int = 50,
    progress: Callable[[], None] | None = None,
) -> list[str]:
    """Signal every running case (`specs`) whose figures it does not know yet, `concurrency`
    at a time; "loan: old → new yuan" lines for the report, in the file's order."""
    with sessions() as session:
        known = told(session, [s.loan_no for s in specs])
    changed = [s for s in specs if known.get(s.loan_no) != figures(s)]
    gate = asyncio.Semaphore(concurrency)
    lines: dict[str, str] = {}

    async def tell(spec: LoanSpec) -> None:
        new = figures(spec)
        old = known.get(spec.loan_no)
        debt = DebtUpdate(as_of, *new[:3], by=by, overdue_since=new[3])
        change = (
            f"{spec.loan_no}: {yuan(sum(old[:3]))} → {yuan(debt.total_fen)} yuan"
            if old is not None
            else f"{spec.loan_no}: {yuan(debt.total_fen)} yuan (the case's first update)"
        )
        if old is not None and old[3] != new[3]:
            change += f", overdue since {old[3]} → {new[3]}"
        try:
            async with gate:
                await client.get_workflow_handle(workflow_id(spec.loan_no)).signal(
                    "debt_updated", debt
                )
        except RPCError as error:
            lines[spec.loan_no] = f"{change} ({NOT_TOLD}: {error.message}; run the file again)"
            return
        finally:
            if progress:
                progress()
        with sessions.begin() as session:
            mark_told(session, spec.loan_no, new)
        lines[spec.loan_no] = change

    await asyncio.gather(*(tell(spec) for spec in changed))
    return [lines[spec.loan_no] for spec in changed]


NOT_TOLD = "the case was not told"
