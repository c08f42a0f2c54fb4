"""A payment signalled to the case (collection-v4): recorded first, counted only when the
database holds that reference for this loan and this amount, so one bank transfer is never
counted for two loans, whatever route signalled it."""

from __future__ import annotations

from temporalio import workflow

from workflows.case import Case

with workflow.unsafe.imports_passed_through():
    from domain.models import PaymentPosted, PaymentRecord
    from domain.money import yuan
    from domain.names import Activities as A
    from domain.stages import TaskKind


async def count_payment(case: Case, payment: PaymentPosted) -> None:
    s = case.s
    s.payment_refs.append(payment.reference)  # taken now: the same reference again is a repeat
    prospective = s.paid_fen + payment.amount_fen
    ours: bool = await case.act(
        A.RECORD_PAYMENT,
        PaymentRecord(s.loan_no, payment, True, prospective, (s.debt_fen or 0) - prospective),
        bool,
    )
    if not ours:
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
    s.paid_fen += payment.amount_fen
    case.note("payment", f"{yuan(payment.amount_fen)} yuan ({payment.reference})")
    case.visibility.publish()
