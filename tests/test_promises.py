"""Promises to pay (承诺还款) and waivers or settlements (息费减免, 一次性结清), on the
time-skipping server with the real activities: what a collector and a supervisor see in
the status Query and what the database keeps."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from db.models import AuditEvent, PromiseToPay, WaiverRequest
from domain.models import (
    CloseRequest,
    DebtUpdate,
    HardshipHold,
    PaymentPosted,
    PromiseRequest,
    WaiverDecision,
    WaiverProposal,
)
from tests.harness import Harness, assert_replays, running_worker
from tests.test_workflow_paths import (
    DEBT,
    SHANGHAI,
    plan_for,
    propose,
    rejected,
    sign,
    tasks,
    to_field_visit,
    to_follow_up,
    visit,
)
from workflows.collection import LoanCollectionWorkflow as WF


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as harness:
        yield harness


async def promise(
    h: Harness, handle: WorkflowHandle, amount_fen: int, days: int, source: str = "CALL"
):
    today = (await h.now()).astimezone(SHANGHAI).date()
    request = PromiseRequest(amount_fen, today + timedelta(days=days), source, "QX01-C01")
    return await handle.execute_update(WF.record_promise, request)


def promise_rows(h: Harness) -> list[tuple[int, str, int]]:
    with h.sessions() as session:
        rows = session.scalars(select(PromiseToPay).order_by(PromiseToPay.id))
        return [(r.seq, r.status, r.paid_fen) for r in rows]


async def close(handle: WorkflowHandle) -> None:
    await handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "test over", "qa"))
    assert (await handle.result()).outcome == "CANCELLED"


# ---------------------------------------------------------------- promises


async def test_a_promise_kept_in_parts_pauses_the_visit_and_the_case_goes_on(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    accepted = await promise(h, handle, 300_000, days=5)
    assert "promise 1 recorded" in accepted.message
    status = await h.until(handle, lambda s: s.next_action == "promise 1 due", "promise wait")
    assert [(p.seq, p.status) for p in status.promises] == [(1, "OPEN")]
    # One open promise at a time; and never more than is owed, nor too far ahead.
    for amount, days, reason in [
        (100_000, 3, "still open"),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await promise(h, handle, amount, days)
        assert reason in rejected(e)
    await h.advance(3)
    await h.pay(handle, 100_000)
    await h.advance(1.5)
    await h.pay(handle, 200_000)  # on the promise's last day: 300,000 paid since it
    status = await h.until(
        handle,
        lambda s: s.promises[-1].status == "KEPT" and s.next_action == "visit report",
        "promise kept, the visit goes on",
    )
    assert status.stage == "FIELD_VISIT" and status.counters.promises_kept == 1
    assert status.promises[-1].paid_fen == 300_000
    # The visit's 7-day deadline paused for the promise: no reminder went out meanwhile,
    # and the report is due 7 days after the visit began plus the promise's 4.5 days.
    assert "VISIT_REMINDER" not in tasks(h, spec.loan_no)
    assert status.next_action_at - await h.now() > timedelta(days=6)
    assert promise_rows(h) == [(1, "KEPT", 300_000)]
    await close(handle)
    await assert_replays(handle)


async def test_a_broken_promise_is_counted_and_sends_the_case_back_to_a_visit(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await visit(h, handle, "PROMISED_TO_PAY")
    await h.at_stage(handle, "NEGOTIATION")
    for amount, days, reason in [
        (DEBT + 1, 3, "amount_fen: 10,000.01 yuan is more than is owed"),
        (0, 3, "amount_fen: a promise is of a positive amount"),
        (100_000, 15, "at most 14 days ahead"),
        (100_000, -1, "due_date:"),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await promise(h, handle, amount, days, "VISIT")
        assert reason in rejected(e), rejected(e)
    await promise(h, handle, 400_000, days=2, source="VISIT")
    await h.pay(handle, 100_000)
    # Past the end of the promise's date (the borrower's midnight after it), within the
    # day's grace: half a day after that midnight, whatever the time of day the test runs.
    due = (await h.status(handle)).promises[-1].due_date
    midnight = datetime.combine(due + timedelta(days=1), time(0), SHANGHAI)
    await h.advance((midnight + timedelta(hours=12) - await h.now()) / timedelta(days=1))
    status = await h.status(handle)
    assert status.stage == "NEGOTIATION" and status.promises[-1].status == "OPEN"
    await h.advance(1)  # the grace for late payment files is over
    status = await h.at_stage(handle, "FIELD_VISIT")
    assert [(p.status, p.paid_fen) for p in status.promises] == [("BROKEN", 100_000)]
    # Its own counter: missed installments of a plan count apart.
    assert status.counters.promises_broken == 1 and status.counters.broken_promises == 0
    assert any("promise 1 broken" in e.detail for e in status.history if e.kind == "stage")
    assert promise_rows(h) == [(1, "BROKEN", 100_000)]
    with h.sessions() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.loan_no == spec.loan_no)
        )
        assert {"PROMISE_OPEN", "PROMISE_BROKEN"} <= set(actions)
    await close(handle)
    await assert_replays(handle)


async def test_paying_the_whole_debt_before_the_promised_date_keeps_it_and_closes(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    await h.until(handle, lambda s: s.stage == "INITIAL_CONTACT" and s.counters.sms_sent, "notice")
    await promise(h, handle, 500_000, days=10, source="SMS")
    await h.advance(1)
    await h.pay(handle, DEBT)
    result = await handle.result()
    assert result.outcome == "PAID_IN_FULL"
    assert promise_rows(h) == [(1, "KEPT", DEBT)]
    await assert_replays(handle)


async def test_a_payment_dated_on_the_due_date_and_posted_next_morning_keeps_it(
    h: Harness,
) -> None:
    """Judged by the payment's own date, after a grace for payment files that come late."""
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    today = (await h.now()).astimezone(SHANGHAI).date()
    due = today + timedelta(days=2)
    await handle.execute_update(WF.record_promise, PromiseRequest(300_000, due, "CALL", "QX01-C01"))
    await h.until(handle, lambda s: s.next_action == "promise 1 due", "promise wait")
    next_morning = datetime.combine(due + timedelta(days=1), time(9, 0), SHANGHAI)
    await h.advance((next_morning - await h.now()).total_seconds() / 86400)
    assert (await h.status(handle)).promises[-1].status == "OPEN"  # within the grace
    paid_at = datetime.combine(due, time(15, 0), SHANGHAI)  # at the counter, on the date
    await handle.signal(WF.payment_posted, PaymentPosted(uuid.uuid4().hex, 300_000, paid_at))
    status = await h.until(handle, lambda s: s.promises[-1].status != "OPEN", "resolved")
    assert status.promises[-1].status == "KEPT" and status.counters.promises_broken == 0
    assert status.stage == "FIELD_VISIT"
    # A payment dated after the promised date does not keep the next one.
    await promise(h, handle, 100_000, days=0)
    tomorrow = datetime.combine(
        (await h.now()).astimezone(SHANGHAI).date() + timedelta(days=1), time(10), SHANGHAI
    )
    await handle.signal(WF.payment_posted, PaymentPosted(uuid.uuid4().hex, 100_000, tomorrow))
    await h.advance(2.5)
    status = await h.until(handle, lambda s: s.promises[-1].status != "OPEN", "resolved")
    assert status.promises[-1].status == "BROKEN"
    await close(handle)
    await assert_replays(handle)


async def test_a_payment_dated_before_the_promise_does_not_count_towards_it(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await promise(h, handle, 300_000, days=5)
    today = (await h.now()).astimezone(SHANGHAI).date()
    yesterday = datetime.combine(today - timedelta(days=1), time(10, 0), SHANGHAI)
    await handle.signal(WF.payment_posted, PaymentPosted(uuid.uuid4().hex, 300_000, yesterday))
    await h.until(handle, lambda s: s.paid_fen == 300_000, "payment counted")
    await h.advance(1)
    status = await h.status(handle)
    assert status.promises[-1].status == "OPEN" and status.promises[-1].counted_fen == 0
    await h.pay(handle, 300_000)  # today's payment keeps it
    status = await h.until(handle, lambda s: s.promises[-1].status != "OPEN", "resolved")
    assert status.promises[-1].status == "KEPT" and status.promises[-1].paid_fen == 300_000
    await close(handle)


async def test_a_hardship_hold_cancels_an_open_promise(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await promise(h, handle, 300_000, days=5)
    await h.until(handle, lambda s: s.next_action == "promise 1 due", "promise wait")
    until = await h.now() + h.day * 30
    await handle.execute_update(WF.hold, HardshipHold(until, "flood", "supervisor-li"))
    status = await h.at_stage(handle, "ON_HOLD")
    assert status.promises[-1].status == "CANCELLED"
    await h.advance(31)
    status = await h.until(handle, lambda s: s.stage != "ON_HOLD", "hold over")
    assert status.counters.promises_broken == 0
    assert [p.status for p in status.promises] == ["CANCELLED"]
    assert promise_rows(h) == [(1, "CANCELLED", 0)]
    await close(handle)
    await assert_replays(handle)


async def test_no_plan_is_proposed_while_a_promise_is_open(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await visit(h, handle, "PROMISED_TO_PAY")
    await h.at_stage(handle, "NEGOTIATION")
    await promise(h, handle, 100_000, days=2, source="VISIT")
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(WF.propose_plan, await plan_for(h, DEBT))
    assert "promise: promise 1" in rejected(e) and "still open" in rejected(e)
    await close(handle)


async def test_a_case_closed_with_an_open_promise_and_a_pending_waiver_closes_them(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await promise(h, handle, 300_000, days=5)
    await handle.execute_update(WF.propose_waiver, waiver(interest_fen=50_000))
    await close(handle)
    assert promise_rows(h) == [(1, "CANCELLED", 0)]
    assert waiver_rows(h) == [(1, "SUPERVISOR", "EXPIRED")]
    await assert_replays(handle)


# ---------------------------------------------------------------- waivers and settlements


def waiver(kind: str = "WAIVER", role: str = "COLLECTOR", **amounts: int) -> WaiverProposal:
    return WaiverProposal(kind, "QX01-C01", role, "flood damaged the harvest", **amounts)


def waiver_rows(h: Harness) -> list[tuple[int, str, str]]:
    with h.sessions() as session:
        rows = session.scalars(select(WaiverRequest).order_by(WaiverRequest.id))
        return [(r.seq, r.level, r.status) for r in rows]


async def test_a_waiver_within_the_collectors_limit_is_approved_at_once(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    accepted = await handle.execute_update(WF.propose_waiver, waiver(penalty_fen=20_000))
    assert "approved (within your limit)" in accepted.message
    status = await h.status(handle)
    assert status.outstanding_fen == DEBT - 20_000 and status.waived_fen == 20_000
    assert status.debt_fen == DEBT - 20_000
    # More penalty than is left is refused (200 yuan of penalty, all waived now).
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(WF.propose_waiver, waiver(penalty_fen=1))
    assert "penalty_fen: only 0.00 yuan of penalty is left" in rejected(e)
    # A plan then covers what remains, and the agreement shows the waiver as its own line.
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    await propose(h, handle, DEBT - 20_000)
    await sign(h, handle)
    html = next((h.data_dir / "agreements").rglob("*.html")).read_text()
    assert "息费减免" in html and "200.00" in html
    assert waiver_rows(h) == [(1, "COLLECTOR", "APPROVED")]
    await close(handle)
    await assert_replays(handle)


@pytest.mark.parametrize("booked", [False, True])
async def test_a_waiver_and_the_next_export(h: Harness, booked: bool) -> None:
    """Until core banking books the waiver the export still carries the full penalty, and the
    case takes the waiver off it; where it books it at once (policy), not a second time."""
    policy = h.policy.with_overrides({"core_books_waivers": booked})
    spec, handle = await h.start(policy)
    await to_field_visit(h, handle)
    await handle.execute_update(WF.propose_waiver, waiver(penalty_fen=20_000))
    today = (await h.now()).astimezone(SHANGHAI).date()
    penalty = 0 if booked else 20_000  # the export's penalty: booked away, or still there
    await handle.signal(WF.debt_updated, DebtUpdate(today, 900_000, 85_000, penalty))
    status = await h.until(handle, lambda s: s.outstanding_fen != DEBT - 20_000, "taken")
    assert status.outstanding_fen == 900_000 + 85_000  # the accrual, without the penalty
    await close(handle)


async def test_a_waiver_beyond_the_collectors_limit_waits_for_a_supervisor(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    accepted = await handle.execute_update(WF.propose_waiver, waiver(interest_fen=80_000))
    assert "awaits a SUPERVISOR" in accepted.message
    assert (await h.status(handle)).outstanding_fen == DEBT  # not yet
    assert "APPROVE_WAIVER" in tasks(h, spec.loan_no)
    for decision, reason in [
        (WaiverDecision(1, True, "QX01-C02", "COLLECTOR"), "role: request 1 needs a SUPERVISOR"),
        (WaiverDecision(2, True, "li", "SUPERVISOR"), "seq: no waiver request 2"),
        (WaiverDecision(1, True, "QX01-C01", "SUPERVISOR"), "by: the proposer"),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await handle.execute_update(WF.decide_waiver, decision)
        assert reason in rejected(e)
    decided = await handle.execute_update(
        WF.decide_waiver, WaiverDecision(1, True, "supervisor-li", "SUPERVISOR", "checked")
    )
    assert "approved" in decided.message
    status = await h.status(handle)
    assert status.outstanding_fen == DEBT - 80_000
    assert [(w.status, w.decided_by) for w in status.waivers] == [("APPROVED", "supervisor-li")]
    assert waiver_rows(h) == [(1, "SUPERVISOR", "APPROVED")]
    await close(handle)
    await assert_replays(handle)


async def test_refused_and_expired_waivers_leave_the_debt(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await handle.execute_update(WF.propose_waiver, waiver(interest_fen=50_000))
    await handle.execute_update(
        WF.decide_waiver, WaiverDecision(1, False, "supervisor-li", "SUPERVISOR", "income ok")
    )
    status = await h.status(handle)
    assert status.waivers[-1].status == "REFUSED" and status.outstanding_fen == DEBT
    await handle.execute_update(WF.propose_waiver, waiver(interest_fen=50_000))
    await h.advance(3.5)  # the policy's 3 days to decide
    status = await h.until(handle, lambda s: s.waivers[-1].status == "EXPIRED", "expired")
    assert status.outstanding_fen == DEBT
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(
            WF.decide_waiver, WaiverDecision(2, True, "supervisor-li", "SUPERVISOR")
        )
    assert "seq: no waiver request 2 awaits a decision" in rejected(e)
    assert waiver_rows(h) == [(1, "SUPERVISOR", "REFUSED"), (2, "SUPERVISOR", "EXPIRED")]
    with h.sessions() as session:
        actions = set(
            session.scalars(select(AuditEvent.action).where(AuditEvent.loan_no == spec.loan_no))
        )
    assert {"WAIVER_PENDING", "WAIVER_REFUSED", "WAIVER_EXPIRED"} <= actions
    await close(handle)
    await assert_replays(handle)


async def test_a_settlement_goes_to_the_branch_head_and_closes_when_paid(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    # Beyond the branch head's principal limit (1,000 yuan): refused outright.
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(WF.propose_waiver, waiver("SETTLEMENT", settle_fen=700_000))
    assert "settle_fen: beyond the branch head's limit" in rejected(e)
    # 8,500 yuan for 10,000: penalty and interest (1,000) and 500 yuan of principal waived.
    accepted = await handle.execute_update(
        WF.propose_waiver, waiver("SETTLEMENT", "SUPERVISOR", settle_fen=850_000)
    )
    assert "awaits a BRANCH_HEAD" in accepted.message
    status = await h.status(handle)
    w = status.waivers[-1]
    assert (w.principal_fen, w.interest_fen, w.penalty_fen) == (50_000, 80_000, 20_000)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(
            WF.decide_waiver, WaiverDecision(1, True, "supervisor-wu", "SUPERVISOR")
        )
    assert "needs a BRANCH_HEAD" in rejected(e)
    await handle.execute_update(
        WF.decide_waiver, WaiverDecision(1, True, "head-zhao", "BRANCH_HEAD")
    )
    # Conditional: nothing is waived until the lump sum is paid.
    status = await h.status(handle)
    assert status.outstanding_fen == DEBT and status.waived_fen == 0
    assert status.waivers[-1].status == "APPROVED" and status.waivers[-1].pay_by is not None
    await h.advance(2)
    await h.pay(handle, 500_000)
    await h.pay(handle, 350_000)
    result = await handle.result()
    assert result.outcome == "PAID_IN_FULL" and result.paid_fen == 850_000
    assert waiver_rows(h) == [(1, "BRANCH_HEAD", "SETTLED")]
    await assert_replays(handle)


async def test_an_unpaid_settlement_lapses_and_the_debt_stays_whole(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await handle.execute_update(
        WF.propose_waiver, waiver("SETTLEMENT", "SUPERVISOR", settle_fen=850_000)
    )
    await handle.execute_update(
        WF.decide_waiver, WaiverDecision(1, True, "head-zhao", "BRANCH_HEAD")
    )
    # While it awaits its lump sum no second request is taken.
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(WF.propose_waiver, waiver(penalty_fen=10_000))
    assert "settlement 1 awaits its lump sum" in rejected(e)
    await h.pay(handle, 300_000)  # part of it only
    await h.advance(14.5)  # the policy's 14 days to pay
    status = await h.until(handle, lambda s: s.waivers[-1].status == "LAPSED", "lapsed")
    assert status.outstanding_fen == DEBT - 300_000 and status.waived_fen == 0
    assert waiver_rows(h) == [(1, "BRANCH_HEAD", "LAPSED")]
    with h.sessions() as session:
        actions = set(
            session.scalars(select(AuditEvent.action).where(AuditEvent.loan_no == spec.loan_no))
        )
    assert {"WAIVER_APPROVED", "WAIVER_LAPSED"} <= actions
    await close(handle)
    await assert_replays(handle)


async def test_the_limits_apply_to_the_total_waived_on_the_case(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    first = await handle.execute_update(WF.propose_waiver, waiver(penalty_fen=20_000))
    assert "approved (within your limit)" in first.message
    # A second 200 yuan makes 400 on the case: beyond the collector's 200.
    second = await handle.execute_update(WF.propose_waiver, waiver(interest_fen=20_000))
    assert "awaits a SUPERVISOR" in second.message
    assert (await h.status(handle)).outstanding_fen == DEBT - 20_000
    await close(handle)


async def test_a_supervisors_own_proposal_needs_a_second_person(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    mine = WaiverProposal("WAIVER", "supervisor-li", "SUPERVISOR", "flood", interest_fen=50_000)
    accepted = await handle.execute_update(WF.propose_waiver, mine)
    assert "awaits a SUPERVISOR" in accepted.message
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(
            WF.decide_waiver, WaiverDecision(1, True, "supervisor-li", "SUPERVISOR")
        )
    assert "by: the proposer" in rejected(e)
    await handle.execute_update(
        WF.decide_waiver, WaiverDecision(1, True, "supervisor-wu", "SUPERVISOR")
    )
    assert (await h.status(handle)).outstanding_fen == DEBT - 50_000
    await close(handle)


async def test_no_waiver_once_a_plan_is_signed(h: Harness) -> None:
    spec, handle = await h.start()
    await to_follow_up(h, handle)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await handle.execute_update(WF.propose_waiver, waiver(penalty_fen=20_000))
    assert "stage: a plan exists" in rejected(e) and "renegotiate" in rejected(e)
    assert (await h.status(handle)).outstanding_fen == DEBT
    await close(handle)


async def test_a_settlement_counts_what_was_paid_first_against_penalty_and_interest(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await h.pay(handle, 100_000)  # the 200 yuan of penalty and 800 of interest, paid
    await h.until(handle, lambda s: s.outstanding_fen == DEBT - 100_000, "paid")
    accepted = await handle.execute_update(
        WF.propose_waiver, waiver("SETTLEMENT", "SUPERVISOR", settle_fen=800_000)
    )
    w = (await h.status(handle)).waivers[-1]
    assert (w.principal_fen, w.interest_fen, w.penalty_fen) == (100_000, 0, 0)
    assert "awaits a BRANCH_HEAD" in accepted.message
    await close(handle)


# ---------------------------------------------------------------- the pure rules


def test_the_approval_level_is_the_lowest_whose_limits_cover_the_waiver() -> None:
    from domain.policy import Policy
    from domain.promises import required_level

    p = Policy()
    assert required_level(0, p.waiver_collector_limit_fen, p) == "COLLECTOR"
    assert required_level(0, p.waiver_collector_limit_fen + 1, p) == "SUPERVISOR"
    assert required_level(0, p.waiver_supervisor_limit_fen + 1, p) == "BRANCH_HEAD"
    assert required_level(1, 0, p) == "BRANCH_HEAD"  # principal: the head's alone
    assert required_level(p.waiver_head_principal_fen + 1, 0, p) is None
    assert required_level(0, p.waiver_head_limit_fen + 1, p) is None


def test_a_decision_after_the_deadline_is_refused() -> None:
    from domain.human_input import Refused
    from domain.models import CaseState, Waiver
    from domain.policy import Policy
    from domain.promises import check_waiver_decision
    from domain.stages import Stage

    now = datetime.now(SHANGHAI)
    s = CaseState("L1", "QX01", Policy(), Stage.FIELD_VISIT, now, now)
    deadline = now + timedelta(days=3)
    s.waivers = [Waiver(1, "WAIVER", 0, 50_000, 0, "SUPERVISOR", "c01", now, deadline, "flood")]
    decision = WaiverDecision(1, True, "supervisor-li", "SUPERVISOR")
    assert check_waiver_decision(s, decision, deadline - timedelta(seconds=1)).seq == 1
    with pytest.raises(Refused, match="deadline"):
        check_waiver_decision(s, decision, deadline)
