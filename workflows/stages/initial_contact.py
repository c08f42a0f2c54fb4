"""INITIAL_CONTACT (初次联系): the first notice by SMS and a phone task for the collector,
then a wait for payment; the field visit follows unless the debt is paid meanwhile."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.case import Case
from workflows.contact import send_sms

with workflow.unsafe.imports_passed_through():
    from domain.stages import Stage, TaskKind


WAITING = "field visit unless the debt is paid"  # the next action while the case waits


async def run(case: Case) -> None:
    s = case.s
    if s.phase == "":
        s.phase = "NOTICE"
    if s.phase == "NOTICE":
        notice = await send_sms(
            case,
            "first_notice",
            lambda: {"amount_fen": str(case.outstanding()), "days_past_due": str(case.dpd())},
        )
        if notice.status == "FAILED":
            await case.enter(
                Stage.FIELD_VISIT, f"first notice could not be delivered ({notice.reason})"
            )
            return
        s.phase = "AWAIT_RESPONSE"
        s.phase_due = workflow.now() + timedelta(seconds=s.policy.contact_wait_seconds)
        if not notice.two_way and case.versions.v4():
            # The borrower cannot answer this SMS (a one-way route): call now rather than
            # wait out the reply time for an answer that cannot come.
            case.note("contact", "短信无法回复 the notice cannot be answered by SMS: call now")
            await case.task(
                TaskKind.PHONE_CALL,
                "短信无法回复：请致电借款人 (one-way SMS: call the borrower now)",
                workflow.now(),
                then=(WAITING, s.phase_due),
            )
        else:
            await case.task(
                TaskKind.PHONE_CALL,
                "call the borrower about the overdue loan",
                s.phase_due,
                then=(WAITING, s.phase_due),
            )
    assert s.phase_due is not None
    if await case.wait(lambda: s.sms_undeliverable, s.phase_due, WAITING):
        await case.enter(Stage.FIELD_VISIT, "the first notice was not delivered")
        return
    await case.enter(Stage.FIELD_VISIT, "no payment in full after the first notice")
