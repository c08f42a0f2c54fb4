"""LEGAL_REVIEW (法务审查, collection-v4): a dead end waits for someone with legal knowledge
(role LEGAL) before legal escalation. The reviewer approves escalation, returns the case to
negotiation with advice for the collectors, or recommends write-off. No decision by the
policy's deadline: the branch head is asked, and again after each further period, until a
decision comes; the case is never closed by a deadline."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.case import Case

with workflow.unsafe.imports_passed_through():
    from domain.money import yuan
    from domain.stages import LegalDecision, Stage, TaskKind


async def run(case: Case) -> None:
    s, p = case.s, case.s.policy
    period = timedelta(seconds=p.legal_review_seconds)
    if s.phase == "":
        s.phase = "AWAIT_DECISION"
        s.phase_due = workflow.now() + period
        await case.task(
            TaskKind.LEGAL_REVIEW,
            f"法务审查 legal review of a dead end ({yuan(case.outstanding() or 0)} yuan "
            "outstanding): approve escalation, return to negotiation with advice, or "
            "recommend write-off",
            s.phase_due,
            assignees=[f"legal:{s.branch}"],
            then=("legal decision", s.phase_due),  # the wait below (its next action)
        )
    while True:
        assert s.phase_due is not None
        if await case.wait(lambda: s.legal_decision is not None, s.phase_due, "legal decision"):
            break
        s.phase = "HEAD_ASKED"
        overdue_since = s.phase_due
        s.phase_due = workflow.now() + period
        await case.task(
            TaskKind.LEGAL_REVIEW_OVERDUE,
            f"no legal decision since {overdue_since.isoformat()}: see that the case is "
            "decided (it stays in legal review until then)",
            s.phase_due,
            assignees=[f"head:{s.branch}", f"legal:{s.branch}"],
            then=("legal decision", s.phase_due),
        )
        case.note("legal", "no legal decision by the deadline: the branch head is asked")
    decision = s.legal_decision
    assert decision is not None
    s.legal_decision = None
    choice = LegalDecision(decision.decision)
    if choice == LegalDecision.APPROVE_ESCALATION:
        await case.enter(
            Stage.LEGAL_ESCALATION,
            f"{s.dead_end_reason}; legal review approved: {decision.reason}",
            decision.by,
        )
    elif choice == LegalDecision.RECOMMEND_WRITE_OFF:
        await case.enter(
            Stage.WRITTEN_OFF,
            f"{s.dead_end_reason}; write-off recommended by legal review: {decision.reason}; "
            f"{yuan(case.outstanding() or 0)} yuan written off",
            decision.by,
        )
    else:
        s.legal_advice = decision.advice
        s.counters.failed_negotiations = 0  # a fresh round of negotiation, on the advice
        await case.enter(
            Stage.NEGOTIATION, f"returned by legal review: {decision.advice}", decision.by
        )
