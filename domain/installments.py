"""Follow-up arithmetic of a repayment plan: which installments the payments cover, how
each one stands, and what a hardship hold does to the dates. Pure functions of their inputs.

Payments count towards a plan from the amount paid when the plan was accepted
(`Plan.base_paid_fen`); they cover installments in order, whatever each payment's size.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from domain.models import Installment, InstallmentStatus, Plan


def paid_towards(plan: Plan | None, paid_fen: int) -> int:
    """What the borrower paid since the plan was accepted (0 without a plan)."""
    return 0 if plan is None else paid_fen - plan.base_paid_fen


def is_covered(plan: Plan, paid_fen: int, seq: int) -> bool:
    """Whether installments 1…seq are paid in full."""
    needed = sum(i.amount_fen for i in plan.installments if i.seq <= seq)
    return paid_towards(plan, paid_fen) >= needed


def remaining(plan: Plan, paid_fen: int, seq: int) -> int:
    """What is still to pay of installment `seq` (0 when it is covered)."""
    inst = next(i for i in plan.installments if i.seq == seq)
    needed = sum(i.amount_fen for i in plan.installments if i.seq <= seq)
    return max(0, min(inst.amount_fen, needed - paid_towards(plan, paid_fen)))


def first_uncovered(plan: Plan, paid_fen: int) -> Installment | None:
    return next((i for i in plan.installments if not is_covered(plan, paid_fen, i.seq)), None)


def statuses(
    plan: Plan | None, paid_fen: int, now: datetime, reminder_lead: timedelta
) -> list[InstallmentStatus]:
    """Each installment as the borrower and the collector see it now."""
    if plan is None:
        return []
    left = paid_towards(plan, paid_fen)
    result = []
    for inst in plan.installments:
        covered = max(0, min(inst.amount_fen, left))
        left -= inst.amount_fen
        if covered == inst.amount_fen:
            status = "PAID"
        elif now > inst.due_at:
            status = "OVERDUE"
        elif covered > 0:
            status = "PARTLY_PAID"
        elif now >= inst.due_at - reminder_lead:
            status = "DUE"
        else:
            status = "UPCOMING"
        result.append(InstallmentStatus(inst.seq, inst.due_at, inst.amount_fen, covered, status))
    return result


def moved_for_hold(plan: Plan, paid_fen: int, held_for: timedelta) -> Plan:
    """The plan with every unpaid installment moved by the length of a hardship hold:
    installments that fell due during the hold are not broken promises."""
    return dataclasses.replace(
        plan,
        installments=[
            i
            if is_covered(plan, paid_fen, i.seq)
            else dataclasses.replace(i, due_at=i.due_at + held_for)
            for i in plan.installments
        ],
    )
