"""NEGOTIATION (协商还款): a task to agree a plan, then a wait for the plan proposal (an
Update, checked against the policy's bounds); no plan by the deadline sends the case back to
a visit, and too many failed negotiations make it a dead end."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.case import Case
from workflows.stages import dead_end

with workflow.unsafe.imports_passed_through():
    from domain.money import yuan
    from domain.stages import Stage, TaskKind


async def run(case: Case) -> None:
    s, p = case.s, case.s.policy
    if s.phase == "":
        s.phase = "AWAIT_PLAN"
        s.phase_due = workflow.now() + timedelta(seconds=p.negotiation_deadline_seconds)
        then = ("plan proposal", s.phase_due)  # the wait below (its next action)
        await case.task(TaskKind.NEGOTIATE, "agree a repayment plan", s.phase_due, then=then)
    assert s.phase_due is not None
    if await case.wait(lambda: s.pending_plan is not None, s.phase_due, "plan proposal"):
        plan = s.pending_plan
        assert plan is not None
        s.plan, s.pending_plan = plan, None
        s.agreement, s.signed_version = None, None
        s.last_covered_seq = 0
        await case.enter(
            Stage.AGREEMENT_SIGNING,
            f"plan {plan.number}: {len(plan.installments)} installments, "
            f"{yuan(plan.total_fen)} yuan",
            plan.proposed_by,
        )
        return
    await failed(case, "no plan agreed before the deadline", Stage.FIELD_VISIT)


async def failed(case: Case, why: str, back_to: Stage) -> None:
    """A negotiation that led nowhere: back to `back_to`, or a dead end after too many."""
    s = case.s
    s.counters.failed_negotiations += 1
    if s.counters.failed_negotiations > s.policy.max_failed_negotiations:
        await dead_end.enter(case, f"{why} ({s.counters.failed_negotiations} times)")
    else:
        await case.enter(back_to, why)
