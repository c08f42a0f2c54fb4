"""A payment signalled to the case (collection-v4): recorded first, counted only when the
database holds that reference for this loan and this amount, so one bank transfer is never
counted for two loans, whatever route signalled it."""

from __future__ import annotations

from temporalio import workflow

from workflows.case import Case

with workflow.unsafe.imports_passed_through():
    from domain.models import CountedPayment, PaymentPosted, PaymentRecord
    from domain.money import yuan
    from domain.names import Activities as A
    from domain.stages import TaskKind
    from domain.timerules import local_date


async def count_payment(case: Case, payment: PaymentPosted) -> None:
    """Counted at once (a deadline falling while the record is written must see it), taken
    back if the record belongs to another loan; the case does not close as paid in full on
    a payment whose record is not yet confirmed."""
    s = case.s
    s.payment_refs.append(payment.reference)  # taken now: the same reference again is a repeat
    s.paid_fen += payment.amount_fen
    entry = ledger_entry(case, payment)
    s.payments_pending += 1
    case.visibility.publish()
    try:
        ours: bool = await case.act(
            A.RECORD_PAYMENT,
            PaymentRecord(s.loan_no, payment, True, s.paid_fen, case.outstanding()),
            bool,
        )
    finally:
        s.payments_pending -= 1
    if not ours:
        s.paid_fen -= payment.amount_fen
        if entry in s.counted_payments:
            s.counted_payments.remove(entry)
        case.visibility.publish()
        case.note(
            "payment",
            f"payment {payment.reference} is recorded for another loan or amount: not counted",
        )
        await case.task(
            TaskKind.CHECK_CLAIMED_PAYMENT,
            f"payment reference {payment.reference} was signalled to this case but is recorded "
            "for another loan or amount: check the core-banking entry",
            None,
            assignees=[f"supervisor:{s.branch}"],
        )
        return
    case.note("payment", f"{yuan(payment.amount_fen)} yuan ({payment.reference})")


def ledger_entry(case: Case, payment: PaymentPosted) -> CountedPayment:
    """The payment in the case's ledger by its local date: a later export's balances have
    it deducted once their date is past it (workflows/debt.py)."""
    entry = CountedPayment(local_date(payment.paid_at, case.s.policy), payment.amount_fen)
    case.s.counted_payments.append(entry)
    return entry
