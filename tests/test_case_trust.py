"""Issue 13's workflow defects, each on the time-skipping server with the real activities
(collection-v4): a case started again keeps its own records; a reminder that waited for
the morning is not sent once paid and quotes what remains; a hold pauses the round of visits
without resetting it; the agreement's lines add up; a signature racing its deadline."""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from temporalio import activity
from temporalio.worker import Worker

from activities.cases import CaseActivities
from db.models import Case, Loan, SmsOutbox, StageChange, Task
from domain.models import (
    HardshipHold,
    LiftHold,
    PlannedInstallment,
    PlanProposal,
    SignatureRecord,
)
from domain.money import split_evenly, yuan
from domain.names import Activities as A
from domain.names import workflow_id
from domain.timerules import end_of_local_day
from service.case_start import start_case
from service.worker_factory import activities, build_worker
from tests.harness import (
    Harness,
    assert_replays,
    eventually,
    running_worker,
    through_legal_review,
)
from tests.test_workflow_paths import (
    DEBT,
    propose,
    sign,
    stages,
    to_field_visit,
    visit,
)
from workflows.collection import LoanCollectionWorkflow as WF

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path, request) -> AsyncIterator[Harness]:
    if request.config.getoption("--workflow-env") == "local":
        pytest.skip("walks policy days: time-skipping server only")
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as harness:
        yield harness


def outbox(h: Harness, loan_no: str) -> list[SmsOutbox]:
    with h.sessions() as session:
        return list(
            session.scalars(
                select(SmsOutbox)
                .join(Case, Case.id == SmsOutbox.case_id)
                .join(Loan, Loan.id == Case.loan_id)
                .where(Loan.loan_no == loan_no)
                .order_by(SmsOutbox.id)
            )
        )


async def test_a_case_started_again_after_termination_keeps_its_own_records(h: Harness) -> None:
    spec, first = await h.start()
    await h.until(first, lambda s: s.next_action.startswith("field visit"), "first notice")
    await first.terminate("started by mistake with the wrong policy")
    again = await start_case(h.client, h.task_queue, spec.loan_no, spec.branch, h.policy)
    h.started.append(again)
    assert again.result_run_id != first.result_run_id
    await h.until(again, lambda s: s.next_action.startswith("field visit"), "the phone task")
    notices = [m for m in outbox(h, spec.loan_no) if m.purpose == "first_notice"]
    assert [m.status for m in notices] == ["RECORDED", "RECORDED"]  # not skipped as a retry
    with h.sessions() as session:
        tasks = session.scalars(select(Task.kind).where(Task.kind == "PHONE_CALL")).all()
        case = session.scalar(select(Case).join(Loan).where(Loan.loan_no == spec.loan_no))
        assert case is not None
        generations = session.scalars(
            select(StageChange.generation).where(StageChange.case_id == case.id)
        ).all()
    assert len(tasks) == 2
    assert stages(h, spec.loan_no).count("INITIAL_CONTACT") == 2
    assert len(set(generations)) == 2 and "" not in generations
    assert case.stage == "INITIAL_CONTACT" and case.last_seq == 2  # the new run's projection
    await h.pay(again, DEBT)
    assert (await again.result()).outcome == "PAID_IN_FULL"
    await assert_replays(again)


async def signed_with_evening_installments(h: Harness) -> tuple[str, object, datetime]:
    """A case in FOLLOW_UP under the default quiet hours (21:00-08:00), whose installments
    fall due at the end of a local day: each reminder's moment (3 days before) is at night."""
    policy = h.policy.with_overrides({"quiet_start": "21:00", "quiet_end": "08:00"})
    local = (await h.now()).astimezone(SHANGHAI)  # start at 09:00: the day's SMS go at once
    nine = datetime.combine(local.date() + timedelta(days=1), time(9, 0), tzinfo=SHANGHAI)
    await h.env.sleep(nine - local)
    spec, handle = await h.start(policy)
    await to_field_visit(h, handle)
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    today = (await h.now()).astimezone(SHANGHAI).date()
    dues = [end_of_local_day(today + timedelta(days=10 * (n + 1)), policy) for n in range(2)]
    proposal = PlanProposal(
        [PlannedInstallment(d, a) for d, a in zip(dues, split_evenly(DEBT, 2), strict=True)],
        proposed_by="QX01-C01",
    )
    await handle.execute_update(WF.propose_plan, proposal)
    await sign(h, handle)
    await h.at_stage(handle, "FOLLOW_UP")
    remind_at = dues[0] - timedelta(days=3)
    await h.env.sleep(remind_at - await h.now() + timedelta(minutes=30))
    status = await h.until(
        handle, lambda s: s.next_action == "send installment_reminder SMS", "reminder waits"
    )
    assert status.next_action_at.astimezone(SHANGHAI).time() == time(8, 0)
    return spec.loan_no, handle, dues[0]


async def test_a_reminder_that_waited_for_the_morning_is_not_sent_once_paid(h: Harness) -> None:
    loan_no, handle, _ = await signed_with_evening_installments(h)
    await h.pay(handle, DEBT // 2)  # the first installment, at night
    await h.until(handle, lambda s: s.installments[0].status == "PAID", "installment paid")
    await h.env.sleep(timedelta(hours=12))
    status = await h.status(handle)
    assert status.next_action == "installment 2 due"
    assert "installment_reminder" not in [m.purpose for m in outbox(h, loan_no)]
    assert any("no longer needed" in e.detail for e in status.history)
    await h.pay(handle, DEBT - DEBT // 2)
    await handle.result()
    await assert_replays(handle)


async def test_a_reminder_quotes_what_remains_of_a_partly_paid_installment(h: Harness) -> None:
    loan_no, handle, _ = await signed_with_evening_installments(h)
    await h.pay(handle, 100_000)  # 1,000.00 of the 5,000.00 installment, at night
    await h.until(handle, lambda s: s.paid_fen == 100_000, "payment counted")
    await h.env.sleep(timedelta(hours=12))
    # The reminder itself, not a count of texts: the agreement_ready text is skipped when the
    # signature comes first, so the number of texts sent before it varies.
    await h.until(
        handle,
        lambda s: any(e.detail == "installment_reminder recorded" for e in s.history),
        "the reminder at 08:00",
    )
    reminder = [m for m in outbox(h, loan_no) if m.purpose == "installment_reminder"]
    assert len(reminder) == 1
    assert yuan(DEBT // 2 - 100_000) in reminder[0].body  # 4,000.00, not the whole 5,000.00
    assert yuan(DEBT // 2) not in reminder[0].body
    await h.pay(handle, DEBT - 100_000)
    await handle.result()


async def test_a_hold_pauses_the_round_of_visits_without_resetting_it(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    for _ in range(2):  # two of the policy's three unreached attempts
        await visit(h, handle, "NOT_HOME")
        await h.until(handle, lambda s: s.next_action == "revisit", "revisit scheduled")
    until = await h.now() + h.day * 5
    await handle.execute_update(WF.hold, HardshipHold(until, "flood", "supervisor-li"))
    await h.at_stage(handle, "ON_HOLD")
    await handle.execute_update(WF.lift_hold, LiftHold("supervisor-li", "water receded"))
    await h.at_stage(handle, "FIELD_VISIT")
    await visit(h, handle, "NOT_HOME")
    result = await through_legal_review(h, handle)
    assert result.outcome == "LEGAL_ESCALATION"
    assert "not reached in 3 attempts (visit" in result.reason and "NOT_HOME)" in result.reason
    notices = [m for m in outbox(h, spec.loan_no) if m.purpose == "visit_notice"]
    assert len(notices) == 1  # the hold did not send the visit notice again
    await assert_replays(handle)


def amounts(text: str, label: str) -> int:
    """The fen on the agreement's line `label` (its first figure in yuan)."""
    match = re.search(re.escape(label) + r"\s+([\d,]+\.\d\d)", text)
    assert match, f"{label} not in the agreement's text"
    return int(match.group(1).replace(",", "").replace(".", ""))


async def test_the_agreement_lines_add_up_to_what_the_plan_covers(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await h.pay(handle, 123_456)  # paid before the plan
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    with h.sessions.begin() as session:  # tomorrow's export: more penalty, after the assessment
        session.execute(update(Loan).where(Loan.loan_no == spec.loan_no).values(penalty_fen=99_999))
    await propose(h, handle, DEBT - 123_456)
    status = await h.until(handle, lambda s: s.agreement is not None, "agreement rendered")
    pdf = Path(status.agreement.path)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    principal, interest = amounts(text, "尚欠本金"), amounts(text, "尚欠利息")
    penalty, debt = amounts(text, "罚息"), amounts(text, "欠款合计")
    paid, due = amounts(text, "本协议签订前已还"), amounts(text, "本协议应还金额")
    assert (principal, interest, penalty) == (900_000, 80_000, 20_000)  # as assessed
    assert principal + interest + penalty == debt == DEBT
    assert paid == 123_456 and debt - paid == due == DEBT - 123_456
    assert amounts(text, "合计") in (debt, due)  # the first 合计 is the debt's line
    await h.pay(handle, DEBT)
    await handle.result()


async def test_a_signature_racing_its_deadline_is_the_truth(
    env, sqlite_sessions, tmp_path: Path
) -> None:
    """The signature's record is slow to write; the deadline passes meanwhile. The caller
    hears "signed" and the case is in FOLLOW_UP: the answer and the case agree."""
    entered, release = threading.Event(), threading.Event()
    real = CaseActivities(sqlite_sessions)

    @activity.defn(name=A.RECORD_SIGNATURE)
    def slow_record_signature(record: SignatureRecord) -> None:
        entered.set()
        release.wait(30)
        real.record_signature(record)

    task_queue = f"tq-{uuid.uuid4()}"
    acts = [
        a
        for a in activities(sqlite_sessions, tmp_path / "data")
        if getattr(a, "__name__", "") != "record_signature"
    ]
    executor = ThreadPoolExecutor(max_workers=8)
    worker = Worker(
        env.client,
        task_queue=task_queue,
        workflows=[WF],
        activities=[*acts, slow_record_signature],
        activity_executor=executor,
    )
    # Rendering and sending on their own task queues (issue 17), by the usual workers.
    others = build_worker(
        env.client, task_queue, sqlite_sessions, tmp_path / "data", roles=["render", "sms"]
    )
    async with running_worker(env, sqlite_sessions, tmp_path / "unused") as base, worker, others:
        h = Harness(
            env, env.client, task_queue, sqlite_sessions, tmp_path / "data", base.day, base.policy
        )
        # Seconds to sign: the time-skipping server cannot skip while an activity runs.
        spec, handle = await h.start(h.policy.with_overrides({"signature_deadline_seconds": 3}))
        await to_field_visit(h, handle)
        await visit(h, handle, "MET")
        await h.at_stage(handle, "NEGOTIATION")
        await propose(h, handle, DEBT)
        signing = asyncio.create_task(sign(h, handle))
        await asyncio.to_thread(entered.wait, 20)
        await asyncio.sleep(4)  # the deadline passes while the record is being written
        release.set()
        accepted = await signing
        status = await h.until(handle, lambda s: s.stage != "AGREEMENT_SIGNING", "moved on")
        assert "signed" in accepted.message
        assert status.stage == "FOLLOW_UP" and status.counters.failed_negotiations == 0
        await h.pay(handle, DEBT)
        assert (await handle.result()).outcome == "PAID_IN_FULL"
        await assert_replays(handle)


async def test_a_later_export_moving_a_loan_moves_its_case(h: Harness, tmp_path: Path) -> None:
    from feeds.loans import intake

    today = (await h.now()).astimezone(SHANGHAI).date()
    since = (today - timedelta(days=40)).isoformat()
    header = "贷款编号,网点代码,身份证号,姓名,手机号,贷款金额,未还本金,欠息,罚息,逾期起始日,村,偏远"

    def export(branch: str) -> Path:
        path = tmp_path / f"export-{branch}.csv"
        row = (
            f"MV-0001,{branch},522401198001011234,王建国,13912345678,"
            f"20000,9000,800,200,{since},石门,否"
        )
        path.write_text(f"{header}\n{row}\n", encoding="utf-8")
        return path

    await intake(export("QX01"), h.sessions, h.client, h.task_queue, h.policy, today)
    handle = h.client.get_workflow_handle(workflow_id("MV-0001"))
    first = await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", "case running")
    assert first.branch == "QX01" and all(c.startswith("QX01-") for c in first.collectors)
    report = await intake(export("QX02"), h.sessions, h.client, h.task_queue, h.policy, today)
    assert report.moved == ["MV-0001: QX01 → QX02"]
    moved = await h.until(
        handle, lambda s: s.collectors and s.collectors[0].startswith("QX02-"), "case moved"
    )
    assert moved.branch == "QX02" and all(c.startswith("QX02-") for c in moved.collectors)
    with h.sessions() as session:
        case = session.scalar(select(Case).join(Loan).where(Loan.loan_no == "MV-0001"))
        assert case is not None and case.branch_code == "QX02"
        assert case.primary_collector == moved.collectors[0]
    again = await intake(export("QX02"), h.sessions, h.client, h.task_queue, h.policy, today)
    assert again.moved == []  # the case is where its loan is: nothing to tell it
    await h.pay(handle, 1_000_000)
    await handle.result()


async def test_a_reference_recorded_for_another_loan_is_not_counted_again(h: Harness) -> None:
    """Whatever route signals it, one bank transfer counts for one loan only."""
    a_spec, a = await h.start()
    b_spec, b = await h.start()
    for handle in (a, b):
        await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT", "contact")
    await h.pay(a, 100_000, reference="REF-ONE-TRANSFER")
    await h.until(  # the note follows the payment's record: A's record is written
        a, lambda s: any("REF-ONE-TRANSFER" in e.detail for e in s.history), "recorded for A"
    )
    await h.pay(b, 100_000, reference="REF-ONE-TRANSFER")
    status = await h.until(
        b, lambda s: any("not counted" in e.detail for e in s.history), "refused for loan B"
    )
    assert status.paid_fen == 0

    def checked() -> bool:  # the supervisor's task follows the note
        with h.sessions() as session:
            q = select(Task.detail).where(Task.kind == "CHECK_CLAIMED_PAYMENT")
            return any("REF-ONE-TRANSFER" in d for d in session.scalars(q))

    await eventually(checked, "the supervisor's task")
    for handle in (a, b):
        await h.pay(handle, DEBT * 2)
        await handle.result()
