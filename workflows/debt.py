"""A later export's balances reach a running case (issue 18, "debts that change").

The debt, outstanding, the lists and the next SMS follow the export. A signed agreement is
not rewritten: the case notes the difference and, when the policy says so, asks its
collectors to renegotiate. The arithmetic is pure, in domain/debts.py.
"""

from __future__ import annotations

from temporalio import workflow

from workflows.case import Case

with workflow.unsafe.imports_passed_through():
    from domain.debts import updated_debt
    from domain.models import DebtRecord, DebtUpdate
    from domain.money import yuan
    from domain.names import Activities as A
    from domain.stages import CLOSED_STAGES, TaskKind


async def apply_update(case: Case, update: DebtUpdate) -> None:
    s = case.s
    if s.stage in CLOSED_STAGES:
        return
    if not s.overdue_attribute and case.versions.overdue_since_late():
        s.overdue_attribute = True  # a released run: its lists learn the overdue date now
        case.visibility.publish()
    if s.debt_fen is None:
        # The investigation has not read the loan yet (or is reading it while the export is
        # written): it takes this update right after its own reading.
        if s.debt_update_pending is None or update.as_of >= s.debt_update_pending.as_of:
            s.debt_update_pending = update
        case.visibility.flush()
        return
    await take(case, update)
    case.visibility.flush()  # outstanding in the lists now, not at the next wait


async def take(case: Case, update: DebtUpdate) -> None:
    """Apply `update` to the case's debt, unless an export of a later date came first."""
    s = case.s
    assert s.debt_fen is not None
    if s.debt_as_of is not None and update.as_of < s.debt_as_of:
        case.note("debt", f"export of {update.as_of} ignored: the case has {s.debt_as_of}'s")
        return
    if update.overdue_since is not None and update.overdue_since != s.overdue_since:
        case.note(
            "debt", f"overdue since {update.overdue_since} (was {s.overdue_since})", update.by
        )
        s.overdue_since = update.overdue_since  # a corrected export: the lists follow
        case.visibility.publish()
    figures = updated_debt(s.principal_fen, s.paid_fen, s.counted_payments, update)
    s.debt_as_of = update.as_of
    # Counted payments the export has booked no longer need their dates.
    s.counted_payments = [p for p in s.counted_payments if p.paid_on >= update.as_of]
    unchanged = (figures.principal_fen, figures.interest_fen, figures.penalty_fen) == (
        s.principal_fen,
        s.interest_fen,
        s.penalty_fen,
    )
    # Approved waivers stand: the export carries the full figures until core banking books
    # them (the policy says whether it does so at once).
    waived = 0 if s.policy.core_books_waivers else s.waived_fen
    if unchanged and figures.debt_fen - waived == s.debt_fen:
        return
    before = s.debt_fen
    s.debt_fen = figures.debt_fen - waived
    s.principal_fen, s.interest_fen = figures.principal_fen, figures.interest_fen
    s.penalty_fen = figures.penalty_fen
    outstanding = case.outstanding() or 0
    case.note(
        "debt",
        f"debt as of {update.as_of}: {yuan(before)} → {yuan(s.debt_fen)} yuan "
        f"(principal {yuan(update.principal_fen)}, interest {yuan(update.interest_fen)}, "
        f"penalty {yuan(update.penalty_fen)} outstanding in the export); "
        f"outstanding now {yuan(outstanding)} yuan",
        update.by,
    )
    case.visibility.publish()
    # Decided before anything is awaited: another update's handler may run meanwhile.
    ask = _signed_plan_differs(case, before)
    record = DebtRecord(s.loan_no, update, before, s.debt_fen, outstanding, case.outstanding_at())
    await case.act(A.RECORD_DEBT, record)
    if ask:
        await case.task(TaskKind.NEGOTIATE, ask, None)


def _signed_plan_differs(case: Case, before: int) -> str:
    """A signed agreement stands as signed; when the debt has moved at least the policy's
    amount away from the agreement's, the collectors are asked (once) to renegotiate: the
    task's text, or "" when nobody needs to be asked."""
    s = case.s
    plan = s.plan
    if plan is None or s.signed_version is None or s.debt_fen is None:
        return ""
    basis = plan.debt_fen if plan.debt_fen is not None else before
    change, earlier = s.debt_fen - basis, before - basis
    case.note(
        "debt",
        f"agreement {s.signed_version} stands as signed; the debt has changed by "
        f"{yuan(change)} yuan since it",
    )
    threshold = s.policy.renegotiate_debt_change_fen
    if not threshold or not abs(change) >= threshold > abs(earlier):
        return ""
    return (
        f"the debt has changed by {yuan(change)} yuan since agreement {s.signed_version} was "
        "signed (a later export): renegotiate with the borrower"
    )
