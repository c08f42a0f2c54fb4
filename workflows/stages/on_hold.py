"""ON_HOLD: a hardship hold (a flood in the county, an illness) pauses collection until its
date; the case then resumes the stage it left, with unpaid installments moved by the hold's
length so that what fell due meanwhile is no broken promise."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

from workflows.case import Case

with workflow.unsafe.imports_passed_through():
    from domain.installments import is_covered, moved_for_hold
    from domain.stages import Stage


def expected(case: Case) -> tuple[str, datetime] | None:
    """collection-v6: the wait `run` starts next (the hold's end), as it would now."""
    s = case.s
    if s.hold is None or workflow.now() >= s.hold.until:
        return None
    return "hardship hold ends", s.hold.until


async def run(case: Case) -> None:
    s = case.s
    while s.hold is not None and workflow.now() < s.hold.until:
        until = s.hold.until

        def changed(until: datetime = until) -> bool:
            return s.hold is None or s.hold.until != until

        await case.wait(changed, until, "hardship hold ends")
    hold = s.hold
    s.hold = None
    resume = s.resume_stage or Stage.INVESTIGATION
    if hold is not None and resume == Stage.FOLLOW_UP and s.plan is not None:
        held_for = workflow.now() - hold.since
        s.plan = moved_for_hold(s.plan, s.paid_fen, held_for)
        if s.next_revisit_at is not None:
            s.next_revisit_at += held_for
        plan = s.plan
        s.reminded_seqs = [q for q in s.reminded_seqs if is_covered(plan, s.paid_fen, q)]
        case.note("plan", f"unpaid installments moved by {held_for.days} days for the hold")
    await case.enter(resume, "hardship hold ended")
