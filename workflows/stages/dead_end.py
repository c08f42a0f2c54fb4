"""A dead end: the case cannot be collected by visits and plans any more. Written off below
the policy's amount, else sent to legal escalation: with collection-v4 through a legal
review first (workflows/stages/legal_review.py)."""

from __future__ import annotations

from temporalio import workflow

from workflows.case import Case

with workflow.unsafe.imports_passed_through():
    from domain.case_rules import dead_end_stage
    from domain.money import yuan
    from domain.stages import Stage


async def enter(case: Case, why: str) -> None:
    outstanding = case.outstanding() or 0
    stage = dead_end_stage(outstanding, case.s.policy)
    if stage == Stage.WRITTEN_OFF:
        await case.enter(stage, f"{why}; {yuan(outstanding)} yuan written off")
    elif case.versions.v4():
        case.s.dead_end_reason = why
        await case.enter(Stage.LEGAL_REVIEW, why)
    else:
        await case.enter(stage, why)
