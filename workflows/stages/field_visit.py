"""FIELD_VISIT (实地走访): a visit task for the collectors (a team where required), then a
wait for their report. No report by the deadline: a reminder, then the branch supervisor,
then the attempt counts as unreached. Too many unreached attempts or refusals: a dead end.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.case import Case
from workflows.contact import send_sms
from workflows.stages import dead_end

with workflow.unsafe.imports_passed_through():
    from domain.case_rules import VisitStep, next_overdue_phase, visit_step
    from domain.models import AssignRequest
    from domain.stages import Stage, TaskKind, VisitOutcome


async def run(case: Case) -> None:
    s, p = case.s, case.s.policy
    while True:
        now = workflow.now()
        if s.phase == "":
            team = case.team_size()
            short = (s.team_size or s.team_required) and len(s.collectors) < team
            # collection-v4: a remote or hostile visit's team is checked again at every
            # attempt, so a collector whose safety training expired meanwhile is replaced.
            if short or ((s.remote or s.hostile or s.hostile_team) and case.versions.v4()):
                await case.assign(AssignRequest(s.loan_no, s.branch, team, keep=list(s.collectors)))
            s.attempt += 1
            s.phase = "AWAIT_REPORT"
            s.phase_due = now + timedelta(seconds=p.visit_deadline_seconds)
            kind = "team visit" if s.team_required else "visit"
            then = ("visit report", s.phase_due)  # the wait below (its next action)
            await case.task(TaskKind.VISIT, f"{kind}, attempt {s.attempt}", s.phase_due, then=then)
            # With collection-v4 a notice a hold interrupted is sent at the next attempt.
            if not s.visit_notice_sent if case.versions.v4() else s.attempt == 1:
                await send_sms(
                    case, "visit_notice", lambda: {"amount_fen": str(case.outstanding())}
                )
                s.visit_notice_sent = True
            continue
        assert s.phase_due is not None
        action = "revisit" if s.phase == "WAIT_REVISIT" else "visit report"
        if await case.wait(lambda: s.pending_visit_outcome is not None, s.phase_due, action):
            outcome = VisitOutcome(s.pending_visit_outcome)
            s.pending_visit_outcome = None
            if await _after_visit(case, outcome):
                return
            continue
        # The deadline passed without a report: climb the ladder.
        s.phase = next_overdue_phase(s.phase)
        if s.phase == "REMINDED":
            s.phase_due = now + timedelta(seconds=p.visit_reminder_grace_seconds)
            then = ("visit report", s.phase_due)
            await case.task(TaskKind.VISIT_REMINDER, "visit report overdue", s.phase_due, then=then)
        elif s.phase == "ESCALATED":
            s.phase_due = now + timedelta(seconds=p.escalation_grace_seconds)
            s.counters.escalations += 1
            await case.task(
                TaskKind.SUPERVISOR_ESCALATION,
                f"no visit report after a reminder (collectors {', '.join(s.collectors)})",
                s.phase_due,
                assignees=[f"supervisor:{s.branch}"],
                then=("visit report", s.phase_due),
            )
        elif s.phase == "UNREACHED":
            if await _count_unreached(case, "no visit report even after escalation"):
                return


async def _after_visit(case: Case, outcome: VisitOutcome) -> bool:
    """Act on a visit report; True when the stage was left."""
    s, p = case.s, case.s.policy
    step = visit_step(outcome)
    if step == VisitStep.NEGOTIATE:
        await case.enter(Stage.NEGOTIATION, f"visit {s.attempt}: {outcome}")
        return True
    if step == VisitStep.UNREACHED:
        return await _count_unreached(case, f"visit {s.attempt}: {outcome}")
    s.round_refusals += 1
    s.counters.refusals += 1
    if outcome == VisitOutcome.HOSTILE and p.team_visit_after_hostile:
        s.team_required = True
    if s.round_refusals > p.max_refusals:
        await dead_end.enter(case, f"refused {s.round_refusals} times (last: {outcome})")
        return True
    _schedule_revisit(case)
    return False


async def _count_unreached(case: Case, why: str) -> bool:
    s = case.s
    s.round_unreached += 1
    s.counters.unreached_visits += 1
    if s.round_unreached >= s.policy.max_unreached_visits:
        await dead_end.enter(case, f"borrower not reached in {s.round_unreached} attempts ({why})")
        return True
    case.note("visit", f"{why}; another attempt follows")
    _schedule_revisit(case)
    return False


def _schedule_revisit(case: Case) -> None:
    s = case.s
    s.phase = "WAIT_REVISIT"
    s.phase_due = workflow.now() + timedelta(seconds=s.policy.revisit_delay_seconds)
