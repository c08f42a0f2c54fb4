"""Repayment plans: the policy bounds a proposal must meet, and a helper to build one."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta

from domain.models import PlannedInstallment, PlanProposal
from domain.money import split_evenly, yuan
from domain.policy import Policy
from domain.timerules import end_of_local_day


class PlanRejected(ValueError):
    """The proposal breaks a rule; the message says which, in words a collector understands."""


def plan_policy(policy: Policy, hardships: list[str]) -> Policy:
    """The plan limits for a household: longer (the policy's hardship limits) once the
    borrower stated a hardship the policy names at a visit, e.g. a disaster."""
    if not set(hardships) & set(policy.longer_plan_hardships):
        return policy
    return dataclasses.replace(
        policy,
        max_installments=max(policy.max_installments, policy.hardship_max_installments),
        max_plan_seconds=max(policy.max_plan_seconds, policy.hardship_max_plan_seconds),
    )


def check_plan(proposal: PlanProposal, outstanding_fen: int, policy: Policy, now: datetime) -> None:
    items = proposal.installments
    if not proposal.proposed_by.strip():
        raise PlanRejected("proposed_by: say who proposes the plan")
    if not items:
        raise PlanRejected("installments: a plan needs at least one installment")
    if len(items) > policy.max_installments:
        raise PlanRejected(
            f"installments: {len(items)} installments, the policy allows at most "
            f"{policy.max_installments}"
        )
    total = 0
    previous: datetime | None = None
    for n, item in enumerate(items, start=1):
        if isinstance(item.amount_fen, bool) or not isinstance(item.amount_fen, int):
            raise PlanRejected(f"installment {n}: amount_fen must be a whole number of fen")
        if item.due_at.tzinfo is None:
            raise PlanRejected(f"installment {n}: due_at must carry a time zone")
        if item.amount_fen <= 0:
            raise PlanRejected(f"installment {n}: amount must be positive")
        is_last = n == len(items)
        # The last installment may be smaller: it carries what remains.
        if not is_last and item.amount_fen < policy.min_installment_fen:
            raise PlanRejected(
                f"installment {n}: {yuan(item.amount_fen)} yuan is below the minimum "
                f"installment of {yuan(policy.min_installment_fen)} yuan"
            )
        if item.due_at <= now:
            raise PlanRejected(f"installment {n}: due date must be in the future")
        if previous is not None and item.due_at <= previous:
            raise PlanRejected(f"installment {n}: due dates must increase")
        if item.due_at - now > timedelta(seconds=policy.max_plan_seconds):
            raise PlanRejected(
                f"installment {n}: the plan may run at most {policy.max_plan_seconds // 86400} days"
            )
        previous = item.due_at
        total += item.amount_fen
    if total != outstanding_fen:
        raise PlanRejected(
            f"installments: the plan totals {yuan(total)} yuan but the outstanding debt is "
            f"{yuan(outstanding_fen)} yuan; a plan must cover the whole debt exactly"
        )


def add_months(day: date, months: int) -> date:
    """Same day of month `months` later, clamped to the month's last day."""
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    for d in (day.day, 30, 29, 28):
        try:
            return day.replace(year=year, month=month, day=d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def monthly_plan(
    total_fen: int,
    count: int,
    first_due: date,
    policy: Policy,
    proposed_by: str,
    down_payment_fen: int = 0,
) -> PlanProposal:
    """An even monthly plan: an optional down payment on `first_due`, then `count` months."""
    items: list[PlannedInstallment] = []
    rest = total_fen
    offset = 0
    if down_payment_fen:
        items.append(PlannedInstallment(end_of_local_day(first_due, policy), down_payment_fen))
        rest -= down_payment_fen
        offset = 1
    for i, amount in enumerate(split_evenly(rest, count)):
        day = add_months(first_due, i + offset)
        items.append(PlannedInstallment(end_of_local_day(day, policy), amount))
    return PlanProposal(items, proposed_by, first_is_down_payment=bool(down_payment_fen))
