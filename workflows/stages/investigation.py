"""INVESTIGATION (催收前调查): read the loan and the borrower's situation, assess the risk
tier and strategy, assign collectors, then make the first contact."""

from __future__ import annotations

from temporalio import workflow

from workflows import debt
from workflows.case import Case, Interrupted

with workflow.unsafe.imports_passed_through():
    from domain.models import Assessment, AssessRequest, AssignRequest, CaseFacts
    from domain.names import Activities as A
    from domain.stages import Stage


async def run(case: Case) -> None:
    s = case.s
    facts: CaseFacts = await case.act(A.LOAD_CASE, s.loan_no, CaseFacts)
    s.debt_fen = facts.debt_fen
    s.principal_fen, s.interest_fen = facts.principal_fen, facts.interest_fen
    s.penalty_fen = facts.penalty_fen
    s.overdue_since = facts.overdue_since
    s.remote, s.hostile, s.has_phone = facts.remote, facts.hostile, facts.has_phone
    s.opted_out = s.opted_out or facts.sms_opted_out
    if s.debt_update_pending is not None:  # an export came while the loan was being read
        pending, s.debt_update_pending = s.debt_update_pending, None
        await debt.take(case, pending)
    assessment: Assessment = await case.act(
        A.ASSESS_CASE, AssessRequest(facts, s.policy, workflow.now()), Assessment
    )
    s.risk_tier, s.strategy = assessment.risk_tier, assessment.strategy
    s.team_required = assessment.team_required
    if case.versions.v4() and assessment.strategy_version:
        # The strategy file's treatment, kept for the case's life (a new file never
        # switches a running case).
        s.strategy, s.strategy_version = assessment.treatment, assessment.strategy_version
        s.segment, s.strategy_arm = assessment.segment, assessment.arm
        s.policy = s.policy.with_overrides(assessment.policy_overrides)
        s.offer_promises = assessment.offer_promises
        s.offer_settlements = assessment.offer_settlements
        case.note(
            "strategy",
            f"strategy {s.strategy_version}: segment {s.segment}, {s.strategy_arm} "
            f"treatment {s.strategy}",
        )
    if s.generation:  # a collection-v4 case: the rule set's team at every visit
        s.team_size = max(s.policy.visit_team_size, 2 if s.team_required else 1)
    case.note("assessment", f"{s.risk_tier} / {s.strategy}: " + "; ".join(assessment.reasons))
    if not s.collectors:
        await case.assign(AssignRequest(s.loan_no, s.branch, case.team_size()))
    if case.interrupted():
        raise Interrupted()
    await case.enter(
        Stage.INITIAL_CONTACT, f"risk {s.risk_tier}, strategy {s.strategy}: {assessment.goal}"
    )
