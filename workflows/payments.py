"""A payment signalled to the case (collection-v4): recorded first, counted only when the
database holds that reference for this loan and this amount, so one bank transfer is never
counted for two loans, whatever route signalled it."""

from __future__ import annotations

from temporalio import workflow

from workflows.case import Case

with workflow.unsafe.imports_passed_through():
    from domain.models import CountedPayment, PaymentPosted, PaymentRecord, Promise
    from domain.money import yuan
    from domain.names import Activities as A
    from domain.promises import counts_towards, open_promise
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
    promise = towards_promise(case, entry)
    s.payments_pending += 1
    case.visibility.publish()
    action, action_at, action_stamp = case.row_next_action()  # the wait after the payment
    try:
        ours: bool = await case.act(
            A.RECORD_PAYMENT,
            PaymentRecord(
                s.loan_no,
                payment,
                True,
                s.paid_fen,
                case.outstanding(),
                case.outstanding_at(),
                action,
                action_at,
                action_stamp,
            ),
            bool,
        )
    finally:
        s.payments_pending -= 1
    case.row_written(action, action_at, action_stamp)
    if not ours:
        s.paid_fen -= payment.amount_fen
        if entry in s.counted_payments:
            s.counted_payments.remove(entry)
        if promise is not None and promise.status == "OPEN":
            promise.counted_fen -= entry.amount_fen
        if booked(case, entry):  # the debt holds it back as booked: take that back too
            shift_debt(case, -entry.amount_fen)
        case.visibility.publish()
        case.note(
            "payment",
            f"payment {payment.reference} is recorded for another loan or amount: not counted",
        )
        # collection-v5: the case row's outstanding comes back with the task (a payment
        # counted meanwhile wrote an amount that had this one deducted).
        await case.task(
            TaskKind.CHECK_CLAIMED_PAYMENT,
            f"payment reference {payment.reference} was signalled to this case but is recorded "
            "for another loan or amount: check the core-banking entry",
            None,
            assignees=[f"supervisor:{s.branch}"],
            with_outstanding=True,
        )
        return
    case.note("payment", f"{yuan(payment.amount_fen)} yuan ({payment.reference})")


def ledger_entry(case: Case, payment: PaymentPosted) -> CountedPayment:
    """The payment in the case's ledger by its local date: a later export's balances have
    it deducted once their date is past it (workflows/debt.py). A payment dated before the
    export the case last took is already deducted from the debt the case holds: counting it
    against that debt as well would count it twice (a counter payment the day before a daily
    run whose payment file comes after the export), so the debt takes it back."""
    entry = CountedPayment(local_date(payment.paid_at, case.s.policy), payment.amount_fen)
    case.s.counted_payments.append(entry)
    if booked(case, entry):
        shift_debt(case, entry.amount_fen)
    return entry


def towards_promise(case: Case, entry: CountedPayment) -> Promise | None:
    """The open promise this payment counts towards (by its own date), counted there."""
    s = case.s
    promise = open_promise(s)
    if promise is None or not counts_towards(promise, entry.paid_on, s.policy):
        return None
    promise.counted_fen += entry.amount_fen
    return promise


def booked(case: Case, entry: CountedPayment) -> bool:
    """Whether the export the case last took has this payment deducted already."""
    as_of = case.s.debt_as_of
    return as_of is not None and entry.paid_on < as_of


def shift_debt(case: Case, amount_fen: int) -> None:
    """The debt (and its interest line: which part of a payment the core system booked on
    interest is not known) by `amount_fen`, for a payment the export has booked."""
    s = case.s
    if s.debt_fen is not None:
        s.debt_fen += amount_fen
        s.interest_fen = (s.interest_fen or 0) + amount_fen
