"""Promises to pay (承诺还款) and waivers or settlements (息费减免, 一次性结清), on the
time-skipping server with the real activities: what a collector and a supervisor see in
the status Query and what the database keeps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from db.models import AuditEvent, PromiseToPay, WaiverRequest
from domain.models import (
    CloseRequest,
    DebtUpdate,
    PromiseRequest,
    WaiverDecision,
    WaiverProposal,
)
from tests.harness import Harness, assert_replays, running_worker
from tests.test_workflow_paths import (
    DEBT,
    SHANGHAI,
    propose,
    rejected,
    sign,
    tasks,
    to_field_visit,
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
    await h.advance(3.1)  # past the end of the promise's date
    status = await h.at_stage(handle, "FIELD_VISIT")
    assert [(p.status, p.paid_fen) for p in status.promises] == [("BROKEN", 100_000)]
    assert status.counters.broken_promises == 1
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
    assert (await h.status(handle)).outstanding_fen == 850_000
    await h.pay(handle, 850_000)
    result = await handle.result()
    assert result.outcome == "PAID_IN_FULL" and result.paid_fen == 850_000
    await assert_replays(handle)


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
