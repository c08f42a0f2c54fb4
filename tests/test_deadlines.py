"""README's deadline table, one row at a time, on the time-skipping server (issue 13, item 19).

Each test walks a real case (real activities on SQLite) to the wait it is about, lets time
pass to just before the deadline (nothing happens) and just after it (the next step
happens), and checks what the status Query and the database then say. Durations are policy
days from the server's clock: nothing here depends on the calendar.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from db.models import Agreement, Case, Loan, SmsOutbox, Task
from domain.models import (
    CloseRequest,
    HardshipHold,
    PlannedInstallment,
    PlanProposal,
    SignatureConfirmation,
)
from domain.money import split_evenly
from domain.stages import CLOSED_STAGES
from tests.harness import Harness, eventually, running_worker, through_legal_review
from tests.test_workflow_paths import (
    DEBT,
    propose,
    sign,
    stages,
    to_field_visit,
    to_follow_up,
    visit,
)
from workflows.collection import LoanCollectionWorkflow as WF

GRACE = 5  # policy days after a due date before a promise counts as broken


@pytest.fixture
async def h(env, sqlite_sessions, tmp_path: Path, request) -> AsyncIterator[Harness]:
    if request.config.getoption("--workflow-env") == "local":
        pytest.skip("walks policy days to just before and after each deadline: time-skipping only")
    async with running_worker(env, sqlite_sessions, tmp_path / "data") as harness:
        yield harness


def case_tasks(h: Harness, loan_no: str, kind: str) -> list[Task]:
    with h.sessions() as session:
        return list(
            session.scalars(
                select(Task)
                .join(Case, Case.id == Task.case_id)
                .join(Loan, Loan.id == Case.loan_id)
                .where(Loan.loan_no == loan_no, Task.kind == kind)
                .order_by(Task.id)
            )
        )


async def end(h: Harness, handle: WorkflowHandle) -> None:
    """Close an open case and wait for it (a case terminated mid-task upsets later sleeps)."""
    if (await h.status(handle)).stage not in CLOSED_STAGES:
        await handle.execute_update(WF.close_case, CloseRequest("CANCELLED", "test over", "qa"))
    await handle.result()


async def to_negotiation(h: Harness, handle: WorkflowHandle) -> None:
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")


def refusal(info: pytest.ExceptionInfo[WorkflowUpdateFailedError]) -> str:
    return str(info.value.cause)


# ---------------------------------------------------------------- NEGOTIATION


async def test_no_plan_by_the_negotiation_deadline_sends_the_case_back_to_a_visit(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await to_negotiation(h, handle)
    await h.advance(6.9)  # the deadline is 7 days
    status = await h.status(handle)
    assert status.stage == "NEGOTIATION" and status.counters.failed_negotiations == 0
    await h.advance(0.2)
    status = await h.at_stage(handle, "FIELD_VISIT")
    assert status.counters.failed_negotiations == 1
    assert status.next_action == "visit report"
    assert stages(h, spec.loan_no)[-2:] == ["NEGOTIATION", "FIELD_VISIT"]
    assert any("no plan agreed before the deadline" in e.detail for e in status.history)
    # A new round of visits: a new visit task, attempt 1 of the round.
    visits = await eventually(lambda: case_tasks(h, spec.loan_no, "VISIT")[1:], "second visit")
    assert visits[-1].detail == "visit, attempt 1"
    await end(h, handle)


@pytest.mark.parametrize(
    ("write_off_below_fen", "outcome"),
    [(0, "LEGAL_ESCALATION"), (DEBT + 1, "WRITTEN_OFF")],
    ids=["legal", "written-off"],
)
async def test_failed_negotiations_past_the_policys_limit_are_a_dead_end(
    h: Harness, write_off_below_fen: int, outcome: str
) -> None:
    """With `max_failed_negotiations` 0 the first failure is past the limit, whichever way
    the limit is read (see the next test). A dead end below `write_off_below_fen` is written
    off, else sent to legal escalation."""
    policy = h.policy.with_overrides(
        {"max_failed_negotiations": 0, "write_off_below_fen": write_off_below_fen}
    )
    spec, handle = await h.start(policy)
    await to_field_visit(h, handle)
    await to_negotiation(h, handle)
    # Nobody proposes a plan: time runs to the deadline (a legal review before escalation).
    result = await (
        through_legal_review(h, handle) if outcome == "LEGAL_ESCALATION" else handle.result()
    )
    assert result.outcome == outcome
    assert "no plan agreed before the deadline (1 times)" in result.reason
    assert result.outstanding_fen == DEBT
    if outcome == "WRITTEN_OFF":
        assert "10,000.00 yuan written off" in result.reason
    review = ["LEGAL_REVIEW"] if outcome == "LEGAL_ESCALATION" else []
    assert stages(h, spec.loan_no)[-2 - len(review) :] == ["NEGOTIATION", *review, outcome]


# ---------------------------------------------------------------- AGREEMENT_SIGNING


async def test_unsigned_by_the_signing_deadline_goes_back_to_negotiation_as_a_failure(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await to_negotiation(h, handle)
    await propose(h, handle, DEBT)
    await h.until(handle, lambda s: s.next_action == "signature", "waiting for the signature")
    await h.advance(6.9)  # the deadline is 7 days
    status = await h.status(handle)
    assert status.stage == "AGREEMENT_SIGNING" and status.counters.failed_negotiations == 0
    await h.advance(0.2)
    status = await h.at_stage(handle, "NEGOTIATION")
    assert status.counters.failed_negotiations == 1  # counts as a failed negotiation
    assert status.signed_version is None
    assert stages(h, spec.loan_no)[-2:] == ["AGREEMENT_SIGNING", "NEGOTIATION"]
    assert any("agreement not signed before the deadline" in e.detail for e in status.history)
    # A new negotiation, with its own deadline: a new plan is a new agreement version.
    await propose(h, handle, DEBT, count=2)
    await sign(h, handle)
    status = await h.at_stage(handle, "FOLLOW_UP")
    assert status.plan_number == 2 and status.signed_version == 2
    await end(h, handle)


async def test_a_stale_versions_correct_hash_is_refused_after_a_renegotiation(h: Harness) -> None:
    spec, handle = await h.start()
    first = (await to_follow_up(h, handle)).agreement
    with h.sessions() as session:
        pdf = session.scalar(select(Agreement.pdf_path).where(Agreement.version == 1))
    assert first.version == 1 and hashlib.sha256(Path(pdf).read_bytes()).hexdigest() == first.sha256
    await h.advance(16)  # installment 1 (day 10) unpaid after its grace: renegotiation
    await h.at_stage(handle, "FIELD_VISIT")
    await visit(h, handle, "PROMISED_TO_PAY")
    await h.at_stage(handle, "NEGOTIATION")
    await propose(h, handle, DEBT, count=2)
    status = await h.until(
        handle, lambda s: s.agreement is not None and s.agreement.version == 2, "version 2"
    )
    assert status.agreement.sha256 != first.sha256

    async def confirm(version: int, sha256: str):  # type: ignore[no-untyped-def]
        return await handle.execute_update(
            WF.confirm_signature,
            SignatureConfirmation(version, sha256, status.collectors[0], await h.now(), "村委会"),
        )

    with pytest.raises(WorkflowUpdateFailedError) as e:
        await confirm(1, first.sha256)  # the old paper, correctly hashed
    assert "version: the agreement to sign is version 2, not 1" in refusal(e)
    with pytest.raises(WorkflowUpdateFailedError) as e:
        await confirm(2, first.sha256)  # the old paper's hash, named as the new version
    assert "sha256: does not match agreement version 2" in refusal(e)
    status = await h.status(handle)
    assert status.stage == "AGREEMENT_SIGNING" and status.signed_version is None
    await confirm(2, status.agreement.sha256)
    status = await h.at_stage(handle, "FOLLOW_UP")
    assert status.signed_version == 2
    await end(h, handle)


# ---------------------------------------------------------------- FIELD_VISIT


@pytest.mark.parametrize("outcome", ["NOT_HOME", "MOVED"])
async def test_an_unreached_borrower_gets_a_revisit_after_the_revisit_delay(
    h: Harness, outcome: str
) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    reported_at = await h.now()
    await visit(h, handle, outcome)
    status = await h.until(handle, lambda s: s.next_action == "revisit", "revisit scheduled")
    assert status.stage == "FIELD_VISIT" and status.counters.unreached_visits == 1
    delay = status.next_action_at - reported_at
    assert timedelta(days=3) <= delay < timedelta(days=3, minutes=1), delay
    await h.advance(2.9)
    assert len(case_tasks(h, spec.loan_no, "VISIT")) == 1
    await h.advance(0.2)
    status = await h.until(handle, lambda s: s.next_action == "visit report", "the revisit")
    assert status.stage == "FIELD_VISIT"
    visits = await eventually(lambda: case_tasks(h, spec.loan_no, "VISIT")[1:], "revisit task")
    assert visits[-1].detail == "visit, attempt 2"
    await end(h, handle)


async def test_every_visit_is_by_the_rule_sets_team_even_for_a_low_risk_borrower(
    h: Harness,
) -> None:
    spec, handle = await h.start()  # a low-risk borrower nearby: still a team (cba-2026)
    status = await to_field_visit(h, handle)
    assert not status.team_required and status.team_size == 2 and len(status.collectors) == 2
    visits = await eventually(lambda: case_tasks(h, spec.loan_no, "VISIT"), "visit task")
    assert set(visits[-1].assignees.split(",")) == set(status.collectors)

    async def refused_alone() -> str:
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await visit(h, handle, "MET", collector_ids=status.collectors[:1])
        return refusal(e)

    assert "collector_ids: every visit is made by at least 2 collectors" in await refused_alone()
    await visit(h, handle, "HOSTILE")  # both of them
    status = await h.until(handle, lambda s: s.next_action == "revisit", "revisit scheduled")
    assert status.team_required and status.counters.refusals == 1
    await h.advance(3.2)
    visits = await eventually(lambda: case_tasks(h, spec.loan_no, "VISIT")[1:], "team visit task")
    assert visits[-1].detail == "team visit, attempt 2"
    await visit(h, handle, "MET")
    await h.at_stage(handle, "NEGOTIATION")
    # In NEGOTIATION too, a visit is a team's: of three since the hostile visit (collection-v4).
    assert "at least 3 collectors after a hostile visit" in await refused_alone()
    assert (await h.status(handle)).counters.visits == 2  # the refused reports counted nothing
    await end(h, handle)


# ---------------------------------------------------------------- FOLLOW_UP


async def test_follow_up_makes_a_revisit_task_every_30_days(h: Harness) -> None:
    spec, handle = await h.start()
    await to_field_visit(h, handle)
    await to_negotiation(h, handle)
    now = await h.now()
    # Two installments far off, so that nothing but the revisits happens for 60 days.
    plan = PlanProposal(
        [
            PlannedInstallment(now + h.day * 70 * n, amount)
            for n, amount in enumerate(split_evenly(DEBT, 2), start=1)
        ],
        proposed_by="QX01-C01",
    )
    await handle.execute_update(WF.propose_plan, plan)
    await sign(h, handle)
    await h.at_stage(handle, "FOLLOW_UP")
    signed_at = await h.now()
    await h.advance(29.8)
    assert case_tasks(h, spec.loan_no, "REVISIT") == []
    await h.advance(0.4)
    revisits = await eventually(lambda: case_tasks(h, spec.loan_no, "REVISIT"), "first revisit")
    assert len(revisits) == 1 and revisits[0].detail == "periodic revisit (定期回访)"
    # Each revisit task is due when the next one comes: 30 days on.
    assert abs(revisits[0].due_at - (signed_at + timedelta(days=60))) < timedelta(minutes=5)
    await h.advance(29.6)
    assert len(case_tasks(h, spec.loan_no, "REVISIT")) == 1
    await h.advance(0.4)
    await eventually(lambda: len(case_tasks(h, spec.loan_no, "REVISIT")) == 2, "second revisit")
    status = await h.status(handle)
    assert status.stage == "FOLLOW_UP" and status.counters.broken_promises == 0
    await end(h, handle)


async def test_a_hold_in_follow_up_moves_the_unpaid_installments_by_its_length(
    h: Harness,
) -> None:
    spec, handle = await h.start()
    status = await to_follow_up(h, handle)  # installments due on days 10, 20 and 30
    await h.pay(handle, status.installments[0].amount_fen, reference="BEFORE-HOLD")
    status = await h.until(handle, lambda s: s.installments[0].status == "PAID", "first paid")
    before = [i.due_at for i in status.installments]
    # A 40-day hold: installments 2 and 3 fall due, and their grace passes, during it.
    await handle.execute_update(
        WF.hold, HardshipHold(await h.now() + h.day * 40, "flood (county-wide)", "supervisor-li")
    )
    hold = (await h.at_stage(handle, "ON_HOLD")).hold
    held_for = hold.until - hold.since
    assert before[2] + h.day * GRACE < hold.until  # every deadline passes within the hold
    await h.advance(40.2)
    status = await h.at_stage(handle, "FOLLOW_UP")
    assert stages(h, spec.loan_no)[-3:] == ["FOLLOW_UP", "ON_HOLD", "FOLLOW_UP"]
    after = [i.due_at for i in status.installments]
    assert after[0] == before[0]  # paid: stays where it was
    for old, new in zip(before[1:], after[1:], strict=True):
        assert abs(new - (old + held_for)) < timedelta(minutes=1), (old, new, held_for)
    # What fell due during the hold is no broken promise.
    assert status.counters.broken_promises == 0
    assert [i.status for i in status.installments] == ["PAID", "UPCOMING", "UPCOMING"]
    with h.sessions() as session:
        assert "missed_installment" not in session.scalars(select(SmsOutbox.purpose)).all()
    # The moved date is the new deadline: unpaid after it and its grace, a broken promise.
    until_deadline = after[1] + h.day * GRACE - await h.now()
    await h.advance((until_deadline - h.day * 0.2) / h.day)
    status = await h.status(handle)
    assert status.stage == "FOLLOW_UP" and status.counters.broken_promises == 0
    await h.advance(0.4)
    status = await h.at_stage(handle, "FIELD_VISIT")
    assert status.counters.broken_promises == 1
    await end(h, handle)
