"""Every path of a case: months of it in seconds on the time-skipping server.

The activities are the real ones, on SQLite; what the tests assert is what a supervisor
would see in the status Query and what the database records. Durations are written in
policy days (`h.day`), so `pytest --workflow-env=local` runs the same paths on the dev
server with a policy in seconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from db.models import Agreement, Case, Loan, Payment, SmsOutbox, StageChange, Task
from domain.models import (
    AssessRequest,
    CaseResult,
    CaseStatus,
    CloseRequest,
    HardshipHold,
    LiftHold,
    PlannedInstallment,
    PlanProposal,
    SignatureConfirmation,
    SmsRequest,
    UpdateAccepted,
    VisitReport,
)
from domain.money import split_evenly
from domain.policy import Policy
from service.case_start import start_case
from service.converter import DATA_CONVERTER
from tests.harness import (
    Harness,
    assert_replays,
    eventually,
    run_histories,
    running_worker,
    through_legal_review,
)
from workflows.collection import LoanCollectionWorkflow as WF
from workflows.versions import RUN_EVENTS_BEFORE_NEW_RUN

DEBT = 1_000_000  # 10,000.00 yuan: the harness's default loan
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path, request) -> AsyncIterator[Harness]:
    fast = request.config.getoption("--workflow-env") == "local"
    async with running_worker(env, sqlite_sessions, tmp_path / "data", fast=fast) as harness:
        yield harness


def time_skipping_only(h: Harness) -> None:
    if not h.skips_time:
        pytest.skip("walks wall-clock hours or months: time-skipping server only")


# ---------------------------------------------------------------- helpers a collector would use


def _of_case(h: Harness, loan_no: str, column, model, order) -> list[str]:  # type: ignore[no-untyped-def]
    """One column of a case's rows (stage history, tasks), oldest first."""
    with h.sessions() as session:
        return list(
            session.scalars(
                select(column)
                .join(Case, Case.id == model.case_id)
                .join(Loan, Loan.id == Case.loan_id)
                .where(Loan.loan_no == loan_no)
                .order_by(order)
            )
        )


def stages(h: Harness, loan_no: str) -> list[str]:
    return _of_case(h, loan_no, StageChange.to_stage, StageChange, StageChange.seq)


def tasks(h: Harness, loan_no: str) -> list[str]:
    return _of_case(h, loan_no, Task.kind, Task, Task.id)


async def visit(h: Harness, handle: WorkflowHandle, outcome: str = "MET", **kw) -> UpdateAccepted:
    status = await h.status(handle)
    report = VisitReport(
        outcome=outcome,
        collector_ids=kw.pop("collector_ids", status.collectors),
        visited_at=kw.pop("visited_at", await h.now() - h.day / 1000),
        notes=kw.pop("notes", "talked at the farmhouse"),
    )
    return await handle.execute_update(WF.report_visit, report)


async def plan_for(h: Harness, outstanding: int, count: int = 3) -> PlanProposal:
    """`count` installments, ten policy days apart, covering `outstanding` exactly."""
    now = await h.now()
    return PlanProposal(
        [
            PlannedInstallment(now + h.day * 10 * (n + 1), amount)
            for n, amount in enumerate(split_evenly(outstanding, count))
        ],
        proposed_by="QX01-C01",
    )


async def propose(h: Harness, handle: WorkflowHandle, outstanding: int, count: int = 3):
    return await handle.execute_update(WF.propose_plan, await plan_for(h, outstanding, count))


async def sign(h: Harness, handle: WorkflowHandle, sha256: str | None = None) -> UpdateAccepted:
    status = await h.until(
        handle,
        lambda s: (
            s.stage == "AGREEMENT_SIGNING"
            and s.agreement is not None
            and s.agreement.plan_number == s.plan_number
        ),
        "agreement rendered for the plan",
    )
    return await handle.execute_update(
        WF.confirm_signature,
        SignatureConfirmation(
            version=status.agreement.version,
            sha256=sha256 or status.agreement.sha256,
            collector_id=status.collectors[0],
            signed_at=await h.now(),
            place="石门村村委会",
        ),
    )


async def to_field_visit(h: Harness, handle: WorkflowHandle) -> CaseStatus:
    await h.until(handle, lambda s: s.counters.sms_sent >= 1, "first notice")
    await h.advance(3.2)  # the policy's contact wait
    return await h.at_stage(handle, "FIELD_VISIT")


async def to_follow_up(h: Harness, handle: WorkflowHandle) -> CaseStatus:
    await to_field_visit(h, handle)
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    await propose(h, handle, DEBT)
    await sign(h, handle)
    return await h.at_stage(handle, "FOLLOW_UP")


def value(payload: Any) -> Any:
    """A search attribute's value in a history event (None: unset)."""
    return json.loads(payload.data) if payload.data else None


def rejected(info: pytest.ExceptionInfo[WorkflowUpdateFailedError]) -> str:
    return str(info.value.cause)


# ---------------------------------------------------------------- the paths


async def test_paid_after_first_sms(h: Harness) -> None:
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice sent")
    sent_by = (await h.now()).astimezone(SHANGHAI).date()  # the notice's day, or before
    await h.pay(handle, DEBT)
    result: CaseResult = await handle.result()
    assert result.outcome == "PAID_IN_FULL"
    assert result.paid_fen == DEBT and result.outstanding_fen == 0
    assert stages(h, spec.loan_no) == ["INVESTIGATION", "INITIAL_CONTACT", "PAID_IN_FULL"]
    with h.sessions() as session:
        sms = session.scalars(select(SmsOutbox)).all()
        assert [(m.purpose, m.status) for m in sms] == [
            ("first_notice", "RECORDED"),
            ("paid_in_full", "RECORDED"),  # thanks, sent before the case closes
        ]
        assert "10,000.00元" in sms[0].body
        # 40 days overdue on the day the case opened: exactly 40, unless the borrower's
        # midnight passed between the start and the notice (then one more may be right).
        [days] = re.findall(r"逾期(\d+)天", sms[0].body)
        assert int(days) in range(40, (sent_by - spec.overdue_since).days + 1), (days, sent_by)
        assert sms[0].segments == 2  # Chinese text: UCS-2, 67 characters a part
        assert session.scalar(select(func.count()).select_from(Payment)) == 1
    await assert_replays(handle)


async def test_a_new_case_sends_its_policy_to_the_activities_as_changes(h: Harness) -> None:
    """collection-v6: the assessment's and the SMS's inputs carry the case's policy as its
    changes against a frozen base (not ~2 KB whole), and those rebuild the case's policy."""
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice sent")
    history = await handle.fetch_history()
    inputs = {}
    for e in history.events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            a = e.activity_task_scheduled_event_attributes
            inputs.setdefault(a.activity_type.name, a.input.payloads[0])
    for name, kind in (("assess_case", AssessRequest), ("send_sms", SmsRequest)):
        assert len(inputs[name].data) < 1000, (name, len(inputs[name].data))
        [sent] = DATA_CONVERTER.payload_converter.from_payloads([inputs[name]], [kind])
        assert sent.policy is None and sent.rules.policy() == h.policy
    await handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "test over", "qa"))
    assert (await handle.result()).outcome == "CANCELLED"
    await assert_replays(handle)


async def test_a_new_case_upserts_only_the_search_attributes_that_changed(h: Harness) -> None:
    """collection-v6: each upsert names what changed; merged as the server merges them
    (onto those the case started with), every value is there."""
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "test over", "qa"))
    assert (await handle.result()).outcome == "CANCELLED"
    events = (await handle.fetch_history()).events
    merged = {
        k: json.loads(v.data)
        for k, v in events[
            0
        ].workflow_execution_started_event_attributes.search_attributes.indexed_fields.items()
    }
    upserted = []
    for e in events:
        if e.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes
            upserted.append(set(fields.indexed_fields))
            merged.update({k: value(v) for k, v in fields.indexed_fields.items()})
    assert upserted and all("Branch" not in names for names in upserted)  # set at the start
    assert any("CollectionStage" in names for names in upserted)
    assert any(len(names) < 3 for names in upserted)
    assert merged["CollectionStage"] == "CANCELLED" and merged["Branch"] == spec.branch
    assert merged["CollectorId"] and merged["RiskTier"] and merged["OutstandingFen"] == DEBT
    await assert_replays(handle)


async def test_starting_a_loan_twice_attaches_to_its_case(h: Harness) -> None:
    spec, first = await h.start()
    again = await start_case(h.client, h.task_queue, spec.loan_no, spec.branch, h.policy)
    assert again.id == first.id and again.result_run_id == first.result_run_id
    await first.execute_update(WF.close_case, CloseRequest("CANCELLED", "test over", "qa"))
    assert (await first.result()).outcome == "CANCELLED"


async def test_visit_plan_signature_all_installments_paid(h: Harness) -> None:
    spec, handle = await h.start()
    status = await to_field_visit(h, handle)
    assert status.collectors and status.next_action == "visit report"
    met = await visit(h, handle, "MET")
    assert met.number == 1
    await h.at_stage(handle, "NEGOTIATION")
    accepted = await propose(h, handle, DEBT, count=3)
    assert accepted.number == 1 and "10,000.00 yuan" in accepted.message
    signed = await sign(h, handle)
    assert signed.number == 1
    status = await h.at_stage(handle, "FOLLOW_UP")
    amounts = [i.amount_fen for i in status.installments]
    assert amounts == [333_333, 333_333, 333_334]
    assert [i.status for i in status.installments] == ["UPCOMING"] * 3
    for n, amount in enumerate(amounts, start=1):
        await h.pay(handle, amount, reference=f"PAY-{n}")
        if n < 3:
            status = await h.until(
                handle,
                lambda s, n=n: [i.status for i in s.installments][:n] == ["PAID"] * n,
                f"installment {n} paid",
            )
            assert status.stage == "FOLLOW_UP"
    result = await handle.result()
    assert result.outcome == "PAID_IN_FULL" and result.paid_fen == DEBT
    assert stages(h, spec.loan_no) == [
        "INVESTIGATION",
        "INITIAL_CONTACT",
        "FIELD_VISIT",
        "NEGOTIATION",
        "AGREEMENT_SIGNING",
        "FOLLOW_UP",
        "PAID_IN_FULL",
    ]
    with h.sessions() as session:
        agreement = session.scalar(select(Agreement))
        assert agreement.version == 1 and agreement.signed_place == "石门村村委会"
        assert Path(agreement.html_path).read_text().count("第") >= 3
    await assert_replays(handle)


async def test_installment_reminder_goes_out_before_the_due_date(h: Harness) -> None:
    spec, handle = await h.start()
    await to_follow_up(h, handle)
    await h.advance(8)  # installment 1 falls due on day 10; the reminder leads by 3 days
    await h.until(
        handle,
        lambda s: any(e.detail == "installment_reminder recorded" for e in s.history),
        "reminder sent",
    )
    with h.sessions() as session:
        purposes = session.scalars(select(SmsOutbox.purpose).order_by(SmsOutbox.id)).all()
    # agreement_ready is skipped when the signature comes before it goes out (no longer needed).
    assert [p for p in purposes if p != "agreement_ready"] == [
        "first_notice",
        "visit_notice",
        "installment_reminder",
    ]
    assert purposes.count("agreement_ready") <= 1
    await handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "test over", "qa"))
    await handle.result()


async def test_broken_promise_then_renegotiation_then_paid(h: Harness) -> None:
    spec, handle = await h.start()
    await to_follow_up(h, handle)
    await h.advance(16)  # installment 1 due on day 10, five grace days, nothing paid
    status = await h.at_stage(handle, "FIELD_VISIT")
    assert status.counters.broken_promises == 1 and status.counters.renegotiations == 1
    await visit(h, handle, "PROMISED_TO_PAY")
    await h.at_stage(handle, "NEGOTIATION")
    await propose(h, handle, DEBT, count=2)
    await sign(h, handle)
    status = await h.at_stage(handle, "FOLLOW_UP")
    assert status.plan_number == 2 and status.agreement.version == 2
    await h.pay(handle, DEBT, reference="ALL-AT-ONCE")
    result = await handle.result()
    assert result.outcome == "PAID_IN_FULL"
    with h.sessions() as session:
        versions = session.execute(
            select(Agreement.version, Agreement.signed_at.is_not(None)).order_by(Agreement.version)
        ).all()
        purposes = session.scalars(select(SmsOutbox.purpose)).all()
    assert [tuple(v) for v in versions] == [(1, True), (2, True)]  # version 1 kept
    assert "missed_installment" in purposes
    await assert_replays(handle)


async def test_renegotiations_exhausted_go_to_legal(h: Harness) -> None:
    policy = h.policy.with_overrides({"max_renegotiations": 0})
    spec, handle = await h.start(policy)
    await to_field_visit(h, handle)
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    await propose(h, handle, DEBT)
    await sign(h, handle)
    await h.at_stage(handle, "FOLLOW_UP")
    result = await through_legal_review(h, handle)  # nothing is ever paid
    assert result.outcome == "LEGAL_ESCALATION"
    assert "renegotiations exhausted" in result.reason
    assert stages(h, spec.loan_no)[-3:] == ["FOLLOW_UP", "LEGAL_REVIEW", "LEGAL_ESCALATION"]


async def test_no_contact_ever_is_escalated(h: Harness) -> None:
    spec, handle = await h.start()
    result = await through_legal_review(h, handle)  # no report, no payment, ever
    assert result.outcome == "LEGAL_ESCALATION"
    assert "not reached in 3 attempts" in result.reason
    kinds = tasks(h, spec.loan_no)
    assert kinds.count("VISIT") == 3
    assert kinds.count("VISIT_REMINDER") == 3
    assert kinds.count("SUPERVISOR_ESCALATION") == 3
    # The reminder comes before the escalation, every time.
    assert kinds.index("VISIT_REMINDER") < kinds.index("SUPERVISOR_ESCALATION")
    await assert_replays(handle)


async def test_small_dead_end_is_written_off_when_policy_says_so(h: Harness) -> None:
    policy = h.policy.with_overrides({"write_off_below_fen": 2_000_000, "max_refusals": 0})
    spec, handle = await h.start(policy)
    await to_field_visit(h, handle)
    await visit(h, handle, "REFUSED")
    result = await handle.result()
    assert result.outcome == "WRITTEN_OFF" and "refused 1 times" in result.reason


async def test_hardship_hold_pauses_and_resumes(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    until = await h.now() + h.day * 30
    accepted = await handle.execute_update(
        WF.hold, HardshipHold(until, "flood in 青溪县 (county-wide hold)", "supervisor-li")
    )
    assert "paused" in accepted.message
    status = await h.at_stage(handle, "ON_HOLD")
    assert status.hold.reason.startswith("flood")
    await h.advance(20)  # the visit deadline (7 days) would have passed: nothing happens
    status = await h.status(handle)
    assert status.stage == "ON_HOLD"
    assert "VISIT_REMINDER" not in tasks(h, spec.loan_no)
    await h.advance(11)
    status = await h.at_stage(handle, "FIELD_VISIT")
    assert status.hold is None and status.next_action == "visit report"
    assert stages(h, spec.loan_no)[-2:] == ["ON_HOLD", "FIELD_VISIT"]
    # A hold can also be lifted early.
    await handle.execute_update(WF.hold, HardshipHold(await h.now() + h.day * 30, "ill", "li"))
    await h.at_stage(handle, "ON_HOLD")
    await handle.execute_update(WF.lift_hold, LiftHold("li", "recovered"))
    await h.at_stage(handle, "FIELD_VISIT")
    await h.pay(handle, DEBT)
    assert (await handle.result()).outcome == "PAID_IN_FULL"
    await assert_replays(handle)


async def quiet_now(h: Harness) -> tuple[Policy, datetime, datetime]:
    """A policy whose quiet hours began an hour ago and end in two (borrower local time)."""
    local_now = (await h.now()).astimezone(SHANGHAI)
    start, end = local_now - timedelta(hours=1), local_now + timedelta(hours=2)
    quiet = {"quiet_start": f"{start:%H:%M}", "quiet_end": f"{end:%H:%M}"}
    return h.policy.with_overrides(quiet), start, end


async def test_quiet_hours_defer_the_sms_to_their_end(h: Harness) -> None:
    time_skipping_only(h)
    policy, start, end = await quiet_now(h)
    spec, handle = await h.start(policy)
    status = await h.until(handle, lambda s: s.next_action == "send first_notice SMS", "deferral")
    assert status.next_action_at.astimezone(SHANGHAI).strftime("%H:%M") == f"{end:%H:%M}"
    with h.sessions() as session:
        assert session.scalar(select(func.count()).select_from(SmsOutbox)) == 0
    await h.env.sleep(timedelta(hours=2, minutes=1))
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice after quiet hours")
    with h.sessions() as session:
        sent_at = session.scalar(select(SmsOutbox.sent_at))
    local_sent = sent_at.astimezone(SHANGHAI)
    quiet_end = end.replace(second=0, microsecond=0)
    assert quiet_end <= local_sent < quiet_end + timedelta(minutes=1)
    await h.pay(handle, DEBT)
    await handle.result()


async def test_contact_cap_defers_the_extra_message_to_the_next_day(h: Harness) -> None:
    time_skipping_only(h)
    # The cap is per borrower-local day: start well before midnight (the server's clock
    # runs on from earlier tests), or the hour's wait would cross into a new day.
    local = (await h.now()).astimezone(SHANGHAI)
    if local.hour >= 20:
        morning = (local + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
        await h.env.sleep(morning - local)
    policy = h.policy.with_overrides({"sms_per_day": 1, "contact_wait_seconds": 3600})
    spec, handle = await h.start(policy)
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
    await h.env.sleep(timedelta(hours=1, minutes=1))
    status = await h.until(
        handle, lambda s: s.next_action == "send visit_notice SMS", "visit notice deferred"
    )
    first_day = (await h.now()).astimezone(SHANGHAI).date()
    deferred_to = status.next_action_at.astimezone(SHANGHAI)
    assert deferred_to.date() == first_day + timedelta(days=1)
    assert deferred_to.strftime("%H:%M") == "00:00"  # quiet hours are off in this policy
    await h.pay(handle, DEBT)
    await handle.result()


async def test_duplicate_payment_reference_counts_once(h: Harness) -> None:
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
    await h.pay(handle, 100_000, reference="BANK-0001")
    await h.pay(handle, 100_000, reference="BANK-0001")
    await h.pay(handle, 50_000, reference="BANK-0002")
    status = await h.until(
        handle, lambda s: any("BANK-0002" in e.detail for e in s.history), "payments seen"
    )
    assert status.paid_fen == 150_000 and status.outstanding_fen == DEBT - 150_000
    assert any("already counted" in e.detail for e in status.history)

    def refs() -> list[str]:
        with h.sessions() as session:
            return list(session.scalars(select(Payment.reference).order_by(Payment.reference)))

    await eventually(lambda: len(refs()) >= 2, "payments recorded")
    assert refs() == ["BANK-0001", "BANK-0002"]
    await h.pay(handle, DEBT - 150_000, reference="BANK-0003")
    assert (await handle.result()).paid_fen == DEBT


async def test_invalid_updates_are_rejected_with_their_reason(h: Harness) -> None:
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.counters.sms_sent == 1, "first notice")
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await visit(h, handle, "MET")
    assert "no visit report is expected" in rejected(e)

    status = await to_field_visit(h, handle)
    for outcome, kw, reason in [
        ("SLEEPING", {}, "outcome: 'SLEEPING' is not one of"),
        ("MET", {"collector_ids": ["LS01-C09"]}, "LS01-C09 not assigned to this case"),
        ("MET", {"visited_at": await h.now() + timedelta(days=1)}, "cannot be in the future"),
        ("MET", {"notes": "x" * 2001}, "notes: at most 2000"),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await visit(h, handle, outcome, **kw)
        assert reason in rejected(e)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(WF.hold, HardshipHold(await h.now() - h.day, "x", "li"))
    assert "until: a hold must end in the future" in rejected(e)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(WF.close_case, CloseRequest("PAID_IN_FULL", "no", "li"))
    assert "outcome: must be one of" in rejected(e)
    assert (await h.status(handle)).stage == "FIELD_VISIT"  # nothing changed

    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    short = await plan_for(h, DEBT - 1)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(WF.propose_plan, short)
    assert "must cover the whole debt" in rejected(e)
    too_long = await plan_for(h, DEBT, count=25)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(WF.propose_plan, too_long)
    assert "at most 24" in rejected(e)
    tiny = await plan_for(h, DEBT, count=3)
    tiny.installments[0].amount_fen, tiny.installments[1].amount_fen = 100, DEBT - 200
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(WF.propose_plan, tiny)
    assert "below the minimum installment of 100.00 yuan" in rejected(e)

    await propose(h, handle, DEBT)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await sign(h, handle, sha256="0" * 64)
    assert "sha256: does not match agreement version 1" in rejected(e)
    status = await h.status(handle)
    assert status.stage == "AGREEMENT_SIGNING" and status.signed_version is None
    await sign(h, handle)
    await h.at_stage(handle, "FOLLOW_UP")
    await handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "test over", "qa"))
    assert (await handle.result()).outcome == "CANCELLED"
    await assert_replays(handle)


async def test_reassignment_checks_the_collectors(h: Harness) -> None:
    from domain.models import Reassignment

    spec, handle = await h.start()
    await to_field_visit(h, handle)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(
            WF.reassign,
            Reassignment(["LS01-C01", "QX01-C02"], "supervisor-li", "closer to the village"),
        )
    assert "works for branch LS01" in str(e.value.cause.cause)
    done = await handle.execute_update(
        WF.reassign, Reassignment(["QX01-C03", "QX01-C02"], "supervisor-li", "team visit")
    )
    assert "QX01-C03, QX01-C02" in done.message
    status = await h.status(handle)
    assert status.collectors == ["QX01-C03", "QX01-C02"]
    with h.sessions() as session:
        case = session.scalar(select(Case))
        assert (case.primary_collector, case.second_collector) == ("QX01-C03", "QX01-C02")
    await visit(h, handle, "MET")  # the new team may now report
    await h.at_stage(handle, "NEGOTIATION")
    await h.pay(handle, DEBT)
    await handle.result()


async def test_remote_borrower_gets_a_team_of_two(h: Harness) -> None:
    spec, handle = await h.start(remote=True)
    status = await to_field_visit(h, handle)
    assert status.team_required and len(status.collectors) == 2
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await visit(h, handle, "MET", collector_ids=status.collectors[:1])
    assert "at least 2 collectors" in rejected(e)  # the rule set's team, at every visit
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    await h.pay(handle, DEBT)
    await handle.result()


async def test_a_24_installment_case_keeps_every_run_short(h: Harness) -> None:
    time_skipping_only(h)  # 24 cycles of 12 policy days: five minutes of real seconds
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    amounts = split_evenly(DEBT, 24)
    now = await h.now()
    plan = PlanProposal(
        [PlannedInstallment(now + h.day * 20 * (n + 1), a) for n, a in enumerate(amounts)],
        proposed_by="QX01-C01",
    )
    await handle.execute_update(WF.propose_plan, plan)
    await sign(h, handle)
    await h.at_stage(handle, "FOLLOW_UP")
    for n, amount in enumerate(amounts, start=1):
        await h.advance(12)  # each installment paid a little before it falls due
        await h.pay(handle, amount, reference=f"I-{n:02d}")
        if n < 24:
            await h.until(
                handle, lambda s, n=n: s.installments[n - 1].status == "PAID", f"installment {n}"
            )
    assert (await handle.result()).outcome == "PAID_IN_FULL"
    lengths = [len(history.events) for history in await run_histories(handle)]
    print(f"events per run, last first: {lengths}")
    # A new run once a run's history is long, at an installment-cycle boundary: a run
    # overshoots the bound by at most one cycle (~30 events).
    assert 2 <= len(lengths) <= 4, lengths
    assert max(lengths) < RUN_EVENTS_BEFORE_NEW_RUN + 60, lengths
    await assert_replays(handle)


async def test_paid_at_night_closes_at_once_and_sends_no_thanks_at_night(h: Harness) -> None:
    time_skipping_only(h)
    policy, start, end = await quiet_now(h)
    spec, handle = await h.start(policy)
    await h.until(handle, lambda s: s.next_action == "send first_notice SMS", "deferral")
    await h.pay(handle, DEBT)
    result = await handle.result()
    assert result.outcome == "PAID_IN_FULL"
    assert result.closed_at.astimezone(SHANGHAI) < end  # closing did not wait for morning
    with h.sessions() as session:
        rows = session.execute(select(SmsOutbox.purpose, SmsOutbox.status)).all()
    assert [tuple(r) for r in rows] == [("paid_in_full", "BLOCKED")]
